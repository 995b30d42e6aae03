"""Download, verify and extract the public event data sets.

The resources (URLs and checksums) are the ones Tonic and SpikingJelly use:

- CIFAR10-DVS: Tonic's AEDAT 4.0 conversion on figshare (one zip of ten per-class zips).
- DVS Gesture: Tonic's preprocessed train / test archives on figshare (``.npy`` per gesture).
- N-MNIST: the authors' ``train.zip`` / ``test.zip`` on Mendeley Data (the files Tonic fetches).
- HARDVS: published only on Baidu Netdisk (no direct links), so it is downloaded by hand; the
  checksums of its label lists and event archive let :func:`verify` check what the user fetched.

Downloads go through :func:`sdt3_event.hub.download_file`: a hidden part file renamed after the
checksum matches, so an interrupted or corrupt download never looks complete. Extraction refuses archive members that would escape the
target folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdt3_event.hub import ProgressFn, download_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    """One file of a data set.

    Attributes:
        filename: name on disk (relative to the data set folder).
        url: where to get it (a web page for manual downloads).
        md5: its MD5 checksum (hex).
        extract: unpack it after download (zip / tar / tar.gz).
        manual: cannot be fetched automatically; the user downloads it from ``url``.
    """

    filename: str
    url: str
    md5: str
    extract: bool = True
    manual: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    """A downloadable data set: its folder under the root and its resources."""

    name: str
    folder: str
    resources: tuple[Resource, ...]
    note: str = ""


_HARDVS_PAGE = "https://github.com/Event-AHU/HARDVS"

DATASETS: dict[str, DatasetInfo] = {
    "cifar10dvs": DatasetInfo(
        "cifar10dvs",
        "CIFAR10DVS",
        (
            Resource(
                "CIFAR10DVS.zip",
                "https://figshare.com/ndownloader/files/38023437",
                "ce3a4a0682dc0943703bd8f749a7701c",
            ),
        ),
        "Tonic's AEDAT 4.0 conversion of CIFAR10-DVS (10 x 1000 recordings, 128x128).",
    ),
    "dvsgesture": DatasetInfo(
        "dvsgesture",
        "DVSGesture",
        (
            Resource(
                "ibmGestureTrain.tar.gz",
                "https://figshare.com/ndownloader/files/38022171",
                "3a8f0d4120a166bac7591f77409cb105",
            ),
            Resource(
                "ibmGestureTest.tar.gz",
                "https://figshare.com/ndownloader/files/38020584",
                "56070e45dadaa85fff82e0fbfbc06de5",
            ),
        ),
        "Tonic's preprocessed DVS128 Gesture: one .npy per gesture, users 1-23 train, 24-29 test.",
    ),
    "nmnist": DatasetInfo(
        "nmnist",
        "NMNIST",
        (
            Resource(
                "train.zip",
                "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
                "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
                "20959b8e626244a1b502305a9e6e2031",
            ),
            Resource(
                "test.zip",
                "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
                "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
                "69ca8762b2fe404d9b9bad1103e97832",
            ),
        ),
        "The official N-MNIST release (Orchard et al., 2015) on Mendeley Data: Train/ (60,000) and "
        "Test/ (10,000) folders of 34x34 ATIS .bin recordings, one folder per digit.",
    ),
    "dvsgestureraw": DatasetInfo(
        "dvsgestureraw",
        "",
        (
            Resource(
                "DvsGesture.tar.gz",
                "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794",
                "8a5c71fb11e24e5ca5b11866ca6c00a1",
                True,
                True,
            ),
        ),
        "The original IBM release (AEDAT 3.1 + label CSVs) is on IBM Box and needs a browser: "
        "save DvsGesture.tar.gz into the root, then run `sdt3-event data download dvsgestureraw` "
        "to verify and extract it (read it with DVSGestureRaw).",
    ),
    "hardvs": DatasetInfo(
        "hardvs",
        "HARDVS",
        (
            Resource(
                "MINI_HARDVS_files.zip",
                _HARDVS_PAGE,
                "9c4cc0d9ba043faa17f6f1a9e9aff982",
                True,
                True,
            ),
            Resource(
                "train_label.txt", _HARDVS_PAGE, "0d642b6e6871034f151b2649a89d8d3c", False, True
            ),
            Resource(
                "val_label.txt", _HARDVS_PAGE, "cd2cebcba80e4552102bbacf2b5df812", False, True
            ),
            Resource(
                "test_label.txt", _HARDVS_PAGE, "5b664af5843f9b476a9c22626f7f5a59", False, True
            ),
        ),
        "HARDVS is distributed on Baidu Netdisk only (see "
        f"{_HARDVS_PAGE}): the .npz events ('Compact Event file') at "
        "https://pan.baidu.com/s/1iw214Aj5ugN-arhuxjmfOw?pwd=1234 and the PNG rawframes "
        "('Event Images') at https://pan.baidu.com/s/1OhlhOBHY91W2SwE6oWjDwA?pwd=1234 "
        "(extraction code 1234). Download the files listed here into the folder, then run "
        "`sdt3-event data download hardvs` again to verify and extract them.",
    ),
}


class ChecksumError(RuntimeError):
    """A file's checksum does not match the expected one."""


def file_md5(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: str | os.PathLike, md5: str) -> None:
    """Raise unless ``path`` exists and has checksum ``md5``.

    Raises:
        FileNotFoundError: the file is missing.
        ChecksumError: the checksum differs (the message names the file and both sums).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    got = file_md5(path)
    if got != md5.lower():
        raise ChecksumError(
            f"{path}: md5 {got} does not match the expected {md5}; delete it and download again"
        )


def download_url(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    *,
    progress: ProgressFn | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` with :func:`sdt3_event.hub.download_file` (atomic, resumed).

    Args:
        url: ``http(s)://`` or ``file://`` URL.
        dest: destination file.
        md5: expected checksum; a mismatch deletes the download and raises.
        progress: called with ``(bytes_done, bytes_total or None)`` after every chunk.
        timeout: socket timeout in seconds.

    Returns:
        ``dest``.

    Raises:
        ChecksumError: the downloaded file has the wrong checksum.
        OSError: network or file errors (:class:`sdt3_event.hub.DownloadError`, one line).
    """
    verify = (lambda part: check_md5(part, md5)) if md5 is not None else None
    return download_file(url, dest, verify=verify, progress=progress, timeout=timeout)


def _safe_target(root: Path, name: str, archive: Path) -> Path:
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{archive}: member {name!r} would be written outside {root}; refusing")
    return target


def _extract_member(
    root: Path, archive: Path, name: str, kind: str, open_member: Callable, files: list[Path]
) -> None:
    """Write one member (``kind`` ``"dir"`` or ``"file"``; anything else is skipped with a
    warning) below ``root``, appending a written file to ``files``."""
    target = _safe_target(root, name, archive)
    if kind == "dir":
        target.mkdir(parents=True, exist_ok=True)
        return
    if kind != "file":
        logger.warning("%s: skipping non-regular member %s", archive, name)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_member() as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    files.append(target)


def extract_archive(archive: str | os.PathLike, to: str | os.PathLike) -> list[Path]:
    """Extract a zip, tar, tar.gz / tgz or tar.bz2 archive into ``to``.

    Returns:
        The extracted regular files.

    Raises:
        ValueError: an unsupported archive or a member that would escape ``to``.
        zipfile.BadZipFile / tarfile.TarError: a corrupt archive (message names it).
    """
    archive, to = Path(archive), Path(to)
    to.mkdir(parents=True, exist_ok=True)
    root = to.resolve()
    files: list[Path] = []
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    kind = "dir" if info.is_dir() else "file"
                    opener = lambda info=info: zf.open(info)  # noqa: E731
                    _extract_member(root, archive, info.filename, kind, opener, files)
        except zipfile.BadZipFile as exc:
            raise zipfile.BadZipFile(f"{archive}: corrupt zip archive ({exc})") from exc
        return files
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError:
        is_tar = False
    if not is_tar:
        raise ValueError(f"{archive}: not a zip or tar archive; cannot extract it")
    try:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                kind = "dir" if member.isdir() else "file" if member.isfile() else "other"
                opener = lambda member=member: tf.extractfile(member)  # noqa: E731
                _extract_member(root, archive, member.name, kind, opener, files)
    except tarfile.TarError as exc:
        raise tarfile.TarError(f"{archive}: corrupt tar archive ({exc})") from exc
    return files


def dataset_info(name: str) -> DatasetInfo:
    """Look up a downloadable data set by name (case-insensitive, ``-``/``_`` ignored).

    Raises:
        KeyError: unknown name, listing the known ones.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[key]


@dataclass(frozen=True)
class FileStatus:
    """The verification result of one resource."""

    resource: Resource
    path: Path
    ok: bool
    reason: str


def verify(name: str, root: str | os.PathLike) -> list[FileStatus]:
    """Check every resource of a data set under ``root/<folder>`` against its checksum."""
    info = dataset_info(name)
    folder = Path(root) / info.folder
    out = []
    for res in info.resources:
        path = folder / res.filename
        if not path.is_file():
            reason = "missing" + (f" (download it by hand from {res.url})" if res.manual else "")
            out.append(FileStatus(res, path, False, reason))
            continue
        got = file_md5(path)
        ok = got == res.md5
        out.append(FileStatus(res, path, ok, "ok" if ok else f"md5 {got} != {res.md5}"))
    return out


def _extract_resource(info: DatasetInfo, res: Resource, folder: Path) -> None:
    archive = folder / res.filename
    logger.info("extracting %s", archive)
    files = extract_archive(archive, folder)
    if info.name == "cifar10dvs":
        # The outer zip holds one zip per class; each unpacks into its class folder.
        for inner in sorted(f for f in files if f.suffix == ".zip"):
            extract_archive(inner, folder)
            inner.unlink()
    if info.name == "hardvs":
        # MINI_HARDVS_files.zip holds action_XXX.zip files; each unpacks to action_XXX/.
        for inner in sorted(f for f in files if f.suffix == ".zip"):
            extract_archive(inner, folder / inner.stem)
            inner.unlink()
    (folder / f".{res.filename}.extracted").write_text(res.md5 + "\n")


def download_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    progress_factory: Callable[[Resource], ProgressFn | None] | None = None,
    extract: bool = True,
) -> Path:
    """Download (or, for manual data sets, find), verify and extract a data set.

    Files already present with the right checksum are not fetched again; archives are extracted
    once (a marker file remembers it).

    Args:
        name: a key of :data:`DATASETS`.
        root: the data root; the data set goes to ``root/<folder>``.
        progress_factory: returns a progress callback for each resource.
        extract: unpack the archives.

    Returns:
        The data set folder.

    Raises:
        FileNotFoundError: a manual resource is missing (the message says where to get it).
        ChecksumError: a file with the wrong checksum.
    """
    info = dataset_info(name)
    folder = Path(root) / info.folder
    folder.mkdir(parents=True, exist_ok=True)
    for res in info.resources:
        path = folder / res.filename
        if path.is_file() and file_md5(path) == res.md5:
            logger.info("%s present and verified", path)
        elif res.manual:
            raise FileNotFoundError(
                f"{path} is missing or has the wrong checksum; {info.name} cannot be downloaded "
                f"automatically. {info.note}"
            )
        else:
            logger.info("downloading %s -> %s", res.url, path)
            progress = progress_factory(res) if progress_factory else None
            download_url(res.url, path, res.md5, progress=progress)
        marker = folder / f".{res.filename}.extracted"
        if (
            extract
            and res.extract
            and not (marker.is_file() and marker.read_text().strip() == res.md5)
        ):
            _extract_resource(info, res, folder)
    return folder
