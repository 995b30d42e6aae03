"""N-MNIST (Orchard et al., 2015) in its official extracted layout, with Tonic's interface."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sdt3_event.datasets._common import EventDataset, require_folder
from sdt3_event.datasets.cifar10dvs import stratified_split

from sdt3_event.events.schema import EventFormatError

NMNIST_CLASSES = (
    "0 - zero",
    "1 - one",
    "2 - two",
    "3 - three",
    "4 - four",
    "5 - five",
    "6 - six",
    "7 - seven",
    "8 - eight",
    "9 - nine",
)
FIRST_SACCADE_US = 100_000
"""The first of the three saccades ends here (Tonic's ``first_saccade_only`` rule)."""

_SPLITS = ("train", "val", "test")
_FOLDERS = {"train": "Train", "val": "Train", "test": "Test"}


def nmnist_folder(save_to: str | os.PathLike) -> Path:
    """The folder that holds ``Train/`` and ``Test/``: ``save_to`` itself when it has one of
    them, else Tonic's ``save_to/NMNIST``."""
    root = Path(save_to)
    if (root / "Train").is_dir() or (root / "Test").is_dir():
        return root
    return root / "NMNIST"


class NMNIST(EventDataset):
    """N-MNIST: MNIST digits recorded by an ATIS sensor (34x34) moved in three saccades.

    Tonic's ``tonic.datasets.NMNIST`` interface (``train``, ``first_saccade_only``,
    ``sensor_size``, ``classes``, ``transform`` / ``target_transform`` / ``transforms``, samples
    ``(events, label)``), reading the official extracted layout with
    :func:`sdt3_event.events.io.read_events` (``EVENT_DTYPE``)::

        <save_to>/Train/<digit>/<index>.bin      (or <save_to>/NMNIST/Train/..., Tonic's place)
        <save_to>/Test/<digit>/<index>.bin

    Args:
        save_to: the data root.
        train: the ``Train`` folder (True) or the ``Test`` folder (False).
        first_saccade_only: keep the events of the first saccade (``t < 100 ms``) only.
        transform: applied to the events; target_transform: to the label; transforms: to both.
        split: overrides ``train``: ``"train"``, ``"val"`` (a seeded stratified share
            ``val_fraction`` of ``Train``, for choosing hyper-parameters) or ``"test"``. With
            ``val_fraction > 0``, ``"train"`` leaves the validation recordings out.
        val_fraction: share of every class of ``Train`` in the ``"val"`` split.
        seed: split seed (the same seed gives the same split on any machine).
        download: fetch, verify and extract the official archives when the folder is missing.

    The arguments up to ``transforms`` are Tonic's, in Tonic's order (Tonic's ``stabilize`` aside);
    the ones this class adds (``split``, ``val_fraction``, ``seed``, ``download``) are keyword-only.

    Raises:
        FileNotFoundError: the ``Train``/``Test`` folder is missing (and ``download`` is False).
        ValueError: a bad split, a digit folder without recordings, or an unknown folder.
    """

    classes = list(NMNIST_CLASSES)
    sensor_size = (34, 34, 2)

    def __init__(
        self,
        save_to: str | os.PathLike,
        train: bool = True,
        first_saccade_only: bool = False,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        transforms: Callable | None = None,
        *,
        split: str | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
        download: bool = False,
    ) -> None:
        split = split if split is not None else ("train" if train else "test")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if split == "val" and not 0 < val_fraction < 1:
            raise ValueError(f"split='val' needs 0 < val_fraction < 1, got {val_fraction}")
        self.split = split
        self.train = split != "test"
        self.first_saccade_only = bool(first_saccade_only)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.transform = transform
        self.target_transform = target_transform
        self.transforms = transforms
        self.location_on_system = str(nmnist_folder(save_to))
        folder = Path(self.location_on_system) / _FOLDERS[split]
        root = Path(self.location_on_system).parent
        require_folder(folder, "nmnist", "N-MNIST", root, download)
        files, targets = _scan(folder)
        if split != "test" and self.val_fraction > 0:
            keep_train, keep_val = stratified_split(targets, self.val_fraction, self.seed)
            keep = keep_val if split == "val" else keep_train
            files = [files[i] for i in keep]
            targets = [targets[i] for i in keep]
        self.data = [str(f) for f in files]
        self.targets = targets

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def load(self, index: int):
        from sdt3_event.events.io import read_events

        path = self.data[index]
        try:
            events, _ = read_events(path, self.sensor_size)
        except EventFormatError as exc:
            # the reader's own advice (its Python arguments, live's flags) does not apply to a
            # data set: keep what is wrong, and say what to do here
            problem = str(exc).split("; ", 1)[0]
            raise EventFormatError(
                f"{problem}; N-MNIST recordings are 34x34 ATIS .bin files: copy this one again "
                f"from the official archive or remove it from {Path(path).parent} (recordings "
                f"from another sensor belong in a folder data set, which reads each file's own "
                f"sensor size)"
            ) from exc
        if self.first_saccade_only:
            events = events[events["t"] < FIRST_SACCADE_US]
        return events

    DESCRIBE = ("split", "n", "val_fraction", "first_saccade_only")

    def describe(self) -> dict:
        return {**super().describe(), "root": self.location_on_system}


def _scan(folder: Path) -> tuple[list[Path], list[int]]:
    """``.bin`` files and labels of a ``Train``/``Test`` folder, digit by digit, sorted.

    Raises:
        ValueError: a missing or empty digit folder, or a folder that is not a digit.
    """
    digits = {str(d) for d in range(10)}
    extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in digits)
    if extra:
        raise ValueError(
            f"{folder}: unknown folders {extra}; N-MNIST has one folder per digit, 0 to 9"
        )
    files: list[Path] = []
    targets: list[int] = []
    for digit in range(10):
        found = sorted((folder / str(digit)).glob("*.bin"))
        if not found:
            raise ValueError(
                f"{folder / str(digit)}: no .bin recordings for digit {digit}; the data set is "
                "incomplete (extract the official archive again, or run `sdt3-event data "
                "download nmnist`)"
            )
        files += found
        targets += [digit] * len(found)
    return files, targets
