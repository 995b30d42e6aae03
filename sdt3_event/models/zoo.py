"""Official pretrained weights as timm-style tags: ``create_model("sdt3_10m.in1k", pretrained=True)``.

Every checkpoint the BICLab repositories publish has a tag ``<architecture>.<tag>`` recording its
source URL and document, the architecture arguments it needs (``D``, ``kd``, ``T``), its data
contract (input size, mean/std), the file's expected sha256/size where known and the ImageNet top-1
the official tables give for that file. Facts read from (repository @ commit, file):

* V3 Base (``Train_Base.md``) and Large (``Train_Large.md``), Spike-Driven-Transformer-V3 @ 00fcd1f.
  The ``83M_1x8_384`` entry there has an empty link and is not listed; the DVS folder publishes no
  weights.
* V2 55M (README and issue #5: one Drive *folder* with the T=4 KD checkpoint and its training log),
  Spike-Driven-Transformer-V2 @ 35f245f.
* V1 ImageNet table (README), Spike-Driven-Transformer @ 3faa822.

No sha256 or size is published for any of them, so those tags check the downloaded file by a strict
key/shape load into the tag's architecture (and refuse HTML or non-checkpoint bodies); a tag that
records a digest also checks it. The Large READMEs do not say whether a file holds the distillation
head, so those tags take ``kd`` from the file (``head_kd.*`` present or not).

:func:`build_pretrained` is what :func:`sdt3_event.registry.create_model` calls when a tag or a
``pretrained=`` source is given; ``pretrained`` may be ``True`` (the name's tag or the architecture's
default tag), a tag (``"in1k_1x8"`` or ``"sdt3_83m.in1k_1x8"``), a local path, an ``http(s)://``
URL (cached by URL) or ``hf-hub:org/repo[/file]`` (needs ``huggingface_hub``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdt3_event.hub import (
    DownloadError,
    ProgressFn,
    cache_dir,
    download_file,
    looks_like_checkpoint,
)
from sdt3_event.models._builder import IMAGENET_MEAN, IMAGENET_STD, MODEL_ENTRIES, entry_name

logger = logging.getLogger(__name__)

HF_PREFIX = "hf-hub:"
_V3 = "BICLab/Spike-Driven-Transformer-V3@00fcd1f"
_V2 = "BICLab/Spike-Driven-Transformer-V2@35f245f"
_V1 = "BICLab/Spike-Driven-Transformer@3faa822"


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view"


@dataclass(frozen=True)
class PretrainedTag:
    """One released checkpoint.

    Attributes:
        name: ``<architecture>.<tag>``, e.g. ``sdt3_83m.in1k_1x8``.
        url: the official download link (a Google Drive file or folder).
        source: the repository, commit and document the link comes from.
        official_file: what the document calls the file (``"83M_1x8"``, ``"10M"``, ...).
        kwargs: ``create_model`` arguments the weights need (``D``, ``T``, ``kd``).
        kd_from_file: ``kd`` is read from the file (``head_kd.*`` present) because the documents
            do not say.
        input_size: ``(C, H, W)`` the model was trained on.
        mean, std: input normalisation.
        top1: ImageNet-1k top-1 (%) the official table gives for this file; None when none does.
        sha256, size: the expected digest / byte count; None when unpublished (then only the strict
            key/shape load checks the file).
        notes: anything else a user should know.
    """

    name: str
    url: str
    source: str
    official_file: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    kd_from_file: bool = False
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    top1: float | None = None
    sha256: str | None = None
    size: int | None = None
    notes: str = ""

    @property
    def architecture(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"

    @property
    def cache_path(self) -> Path:
        """Where the file lives once downloaded (``$SDT3_EVENT_CACHE/weights/<name>.pth``)."""
        return cache_dir() / "weights" / self.filename

    @property
    def integrity(self) -> str:
        """How a download is checked, in words."""
        if self.sha256:
            return f"sha256 {self.sha256} + strict load"
        if self.size:
            return f"size {self.size} bytes + strict load"
        return "sha256/size unpublished: strict key/shape load only"


_TAGS: dict[str, PretrainedTag] = {}
_DEFAULT: dict[str, str] = {}


def register_pretrained(tag: PretrainedTag) -> PretrainedTag:
    """Add a tag; the first tag of an architecture becomes its default.

    Raises:
        ValueError: the name lacks a ``.tag`` part or is already taken.
    """
    if "." not in tag.name:
        raise ValueError(f"a pretrained tag is '<architecture>.<tag>', got {tag.name!r}")
    if tag.name in _TAGS:
        raise ValueError(f"pretrained tag {tag.name!r} is already registered")
    _TAGS[tag.name] = tag
    _DEFAULT.setdefault(tag.architecture, tag.name)
    return tag


def list_pretrained(pattern: str = "*") -> list[str]:
    """Registered tag names matching a shell-style pattern, in registration order."""
    return [n for n in _TAGS if fnmatch.fnmatch(n, pattern)]


def get_pretrained(name: str) -> PretrainedTag:
    """The tag called ``name`` (an official alias may stand for the architecture).

    Raises:
        KeyError: unknown tag, with close matches and the architecture's tags.
    """
    if name in _TAGS:
        return _TAGS[name]
    arch, _, tag = name.partition(".")
    canonical = f"{entry_name(arch)}.{tag}"  # the package import declared every family
    if canonical in _TAGS:
        return _TAGS[canonical]
    import difflib

    close = difflib.get_close_matches(name, list(_TAGS), n=4, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(
        f"unknown pretrained tag {name!r}.{hint} `sdt3-event weights list` shows all "
        f"{len(_TAGS)} tags."
    )


def default_tag(architecture: str) -> PretrainedTag | None:
    """The tag ``pretrained=True`` loads for an architecture (None when it has no weights)."""
    name = _DEFAULT.get(architecture)
    return _TAGS[name] if name else None


def tags_of(architecture: str) -> list[str]:
    return [n for n, t in _TAGS.items() if t.architecture == architecture]


# --------------------------------------------------------------------------------------------------
# download and verification


def _kd_in(state_dict_or_ckpt: Any) -> bool:
    from sdt3_event.models.pretrained import extract_state_dict

    sd, _, _ = extract_state_dict(state_dict_or_ckpt)
    return any(k.startswith("head_kd.") for k in sd)


def tag_kwargs(tag: PretrainedTag, raw: Any | None = None) -> dict[str, Any]:
    """The ``create_model`` arguments of a tag; ``kd`` comes from ``raw`` for kd-from-file tags."""
    kwargs = dict(tag.kwargs)
    if tag.kd_from_file and raw is not None:
        kwargs["kd"] = _kd_in(raw)
    return kwargs


def verify_pretrained(tag: PretrainedTag, path: str | os.PathLike | None = None):
    """Strict key/shape load of a file into the tag's architecture (digest/size checked first).

    Args:
        tag: the tag.
        path: the file (default: the tag's cache path).

    Returns:
        The :class:`~sdt3_event.models.pretrained.LoadReport` of the exact load.

    Raises:
        FileNotFoundError: no such file.
        DownloadError: wrong digest or size.
        CheckpointMismatchError, ValueError: the file does not fit (other variant, other D).
    """
    from sdt3_event.hub import file_sha256
    from sdt3_event.models.pretrained import load_pretrained, read_checkpoint

    path = Path(path) if path is not None else tag.cache_path
    if not path.is_file():
        raise FileNotFoundError(f"{tag.name} is not downloaded: {path} does not exist")
    if tag.sha256 and file_sha256(path) != tag.sha256:
        raise DownloadError(f"{path}: sha256 differs from the recorded {tag.sha256}")
    if not tag.sha256 and tag.size and path.stat().st_size != tag.size:
        raise DownloadError(f"{path}: {path.stat().st_size} bytes, expected {tag.size}")
    raw = read_checkpoint(path)
    model = MODEL_ENTRIES[tag.architecture][0](**tag_kwargs(tag, raw))
    return load_pretrained(
        model, raw, strict=True, adapt_stem=False, reinit_head=False, source=str(path)
    )


def download_pretrained(
    tag: PretrainedTag | str, *, progress: ProgressFn | None = None, force: bool = False
) -> Path:
    """The tag's file in the cache, downloading and verifying it first when absent.

    A cached file is returned without any request. A download that fails any check (HTML body,
    digest/size, strict load into the architecture) is removed.

    Raises:
        DownloadError: offline, refused body, or a file that does not fit (one-line message that
            names the URL and the path where a manually downloaded file should go).
    """
    tag = get_pretrained(tag) if isinstance(tag, str) else tag
    dest = tag.cache_path
    if dest.is_file() and not force:
        return dest

    def check(part: Path) -> None:
        try:
            verify_pretrained(tag, part)
        except Exception as exc:  # a pickle / zip / mismatch error: the file is refused either way
            msg = " ".join(str(exc).replace(str(part), "the file").split())
            raise DownloadError(
                f"{tag.url} gave a file that is not {tag.name} ({msg[:400]}); it was removed"
            ) from None

    logger.info("downloading %s from %s", tag.name, tag.url)
    return download_file(
        tag.url,
        dest,
        sha256=tag.sha256,
        size=tag.size,
        looks_valid=looks_like_checkpoint,
        verify=check,
        progress=progress,
    )


def _url_file(url: str, progress: ProgressFn | None) -> Path:
    name = Path(urllib.parse.urlsplit(url).path).name or "checkpoint.pth"
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    dest = cache_dir() / "url" / f"{key}-{name}"
    if dest.is_file():
        return dest
    return download_file(url, dest, looks_valid=looks_like_checkpoint, progress=progress)


def _hf_file(spec: str) -> Path:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            f"pretrained={spec!r} needs huggingface_hub: pip install 'sdt3-event[hub]'"
        ) from None
    rest = spec[len(HF_PREFIX) :]
    parts = rest.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(
            f"pretrained={spec!r}: expected 'hf-hub:org/repo' or 'hf-hub:org/repo/file'"
        )
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    repo_id, _, revision = repo_id.partition("@")
    try:
        if filename is None:
            files = huggingface_hub.list_repo_files(repo_id, revision=revision or None)
            found = [f for f in files if f.endswith((".pth", ".pt", ".bin"))]
            if len(found) != 1:
                raise ValueError(
                    f"pretrained={spec!r}: the repository holds {len(found)} checkpoint files "
                    f"({', '.join(found) or 'none'}); name one: hf-hub:{repo_id}/<file>"
                )
            filename = found[0]
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision or None))
    except ValueError:
        raise
    except Exception as exc:
        raise DownloadError(
            f"cannot fetch {filename or 'a checkpoint'} from Hugging Face repo {repo_id}: "
            + " ".join(str(exc).split())[:300]
        ) from None


def resolve_source(
    architecture: str,
    pretrained: bool | str,
    tag: PretrainedTag | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Path, PretrainedTag | None]:
    """The local file a ``pretrained=`` value names (downloading it), and its tag if it has one.

    Raises:
        FileNotFoundError: a string that is neither a file, a URL, ``hf-hub:`` nor a tag (the
            message lists the architecture's tags).
        ValueError: a tag of another architecture.
        DownloadError, ImportError: see :func:`download_pretrained` / the ``hub`` extra.
    """
    if pretrained is True:
        tag = tag or default_tag(architecture)
        if tag is None:
            raise FileNotFoundError(
                f"{architecture} has no official pretrained weights; pass a checkpoint path "
                f"(architectures with weights: {', '.join(sorted(_DEFAULT))})"
            )
        return download_pretrained(tag, progress=progress), tag
    spec = str(pretrained)
    if spec.startswith(HF_PREFIX):
        return _hf_file(spec), None
    if spec.startswith(("http://", "https://")):
        return _url_file(spec, progress), None
    if Path(spec).expanduser().is_file():
        return Path(spec).expanduser(), None
    named = _lookup(architecture, spec)
    if named is not None:
        if named.architecture != architecture:
            raise ValueError(
                f"pretrained tag {named.name!r} holds {named.architecture}, not {architecture}; "
                f"use create_model({named.name!r}, pretrained=True)"
            )
        return download_pretrained(named, progress=progress), named
    tags = tags_of(architecture)
    raise FileNotFoundError(
        f"pretrained={spec!r} is not a file, an http(s) URL, 'hf-hub:org/repo' or a tag"
        + (f" of {architecture} (its tags: {', '.join(tags)})" if tags else "")
    )


def _lookup(architecture: str, spec: str) -> PretrainedTag | None:
    for candidate in (spec, f"{architecture}.{spec}"):
        try:
            return get_pretrained(candidate)
        except KeyError:
            continue
    return None


def is_pretrained_source(architecture: str, spec: str) -> bool:
    """True when ``spec`` is something ``pretrained=`` can load (file, URL, hf-hub or tag)."""
    return (
        spec.startswith((HF_PREFIX, "http://", "https://"))
        or Path(spec).expanduser().is_file()
        or _lookup(architecture, spec) is not None
    )


def build_pretrained(
    factory: Callable[..., Any],
    architecture: str,
    tag_name: str | None,
    pretrained: bool | str | None,
    overrides: dict[str, Any],
    progress: ProgressFn | None = None,
):
    """Build ``architecture`` with its tag's arguments and load the weights ``pretrained`` names.

    Used by :func:`sdt3_event.registry.create_model`; user ``overrides`` win over tag arguments
    (a D that contradicts a ``1xD`` file then raises at load).
    """
    from sdt3_event.models.pretrained import load_pretrained, read_checkpoint

    tag = get_pretrained(f"{architecture}.{tag_name}") if tag_name else None
    path = raw = None
    if pretrained is not None and pretrained is not False:
        path, found = resolve_source(architecture, pretrained, tag, progress)
        tag = found or tag
        raw = read_checkpoint(path)
    kwargs = {**(tag_kwargs(tag, raw) if tag else {}), **overrides}
    model = factory(**kwargs)
    if tag is not None and isinstance(getattr(model, "pretrained_cfg", None), dict):
        model.pretrained_cfg.update(
            tag=tag.name,
            url=tag.url,
            top1=tag.top1,
            mean=tag.mean,
            std=tag.std,
            input_size=(model.pretrained_cfg["input_size"][0], *tag.input_size[1:]),
        )
    if raw is not None:
        report = load_pretrained(model, raw, source=str(path))
        logger.info("%s", report)
    return model


# --------------------------------------------------------------------------------------------------
# the official releases

for _size, _top1, _id in (
    ("5m", None, "1LMkOTPehDNpQE79bvB7jFTf6UzDjpAHQ"),
    ("10m", 78.5, "1pHrampLjyE1kLr-4DS1WgSdnCVPzL6Tq"),
    ("19m", 79.8, "1pSGCOzrZNgHDxQXAp-Uelx61snIbQC1H"),
):
    register_pretrained(
        PretrainedTag(
            name=f"sdt3_{_size}.in1k",
            url=_drive(_id),
            source=f"{_V3} SDT_V3/Classification/Model_Base/Train_Base.md",
            official_file={"5m": "5.1M", "10m": "10M", "19m": "19M"}[_size],
            kwargs={"D": 4},
            top1=_top1,
            notes="T=1, D=4 (1x4); top-1 from the README abstract"
            if _top1
            else "T=1, D=4 (1x4); the repository gives no top-1 for this file",
        )
    )

for _arch, _file, _D, _res, _id in (
    ("sdt3_83m", "83M_1x4", 4, 224, "1f9pFflYcMacnYJc2u8cHcgMqdibv8wAO"),
    ("sdt3_83m", "83M_1x8", 8, 224, "1sh4F9LWFbKIgIVa2u0QaixBWIcbDZ7h_"),
    ("sdt3_171m", "171M_1x4", 4, 224, "1sJAjirbjVaB7gLSybvy2Xz2wwQl6gZk7"),
    ("sdt3_171m", "171M_1x8", 8, 224, "18bcS2jQD41JyoJAW9lhZOkTgUb79uShf"),
    ("sdt3_171m", "171M_1x8_384", 8, 384, "1ooNGJRTi869e0ApZm8Oc84Mq02uXXyA8"),
):
    register_pretrained(
        PretrainedTag(
            name=f"{_arch}.in1k_1x{_D}" + ("_384" if _res == 384 else ""),
            url=_drive(_id),
            source=f"{_V3} SDT_V3/Classification/Model_Large/Train_Large.md",
            official_file=_file,
            kwargs={"D": _D},
            kd_from_file=True,
            input_size=(3, _res, _res),
            notes=f"T=1 x D={_D}; MAE pre-trained then fine-tuned; the paper's best "
            + ("83M: 84.0" if _arch == "sdt3_83m" else "173M: 86.2")
            + " % is not tied to a file",
        )
    )

register_pretrained(
    PretrainedTag(
        name="sdt2_55m.in1k_kd_t4",
        url="https://drive.google.com/drive/folders/12JcIRG8BF6JcgPsXIetSS14udtHXeSSx",
        source=f"{_V2} README.md (issue #5: the 55M-kd checkpoint and its training log)",
        official_file="55M-kd (the folder's checkpoint file)",
        kwargs={"kd": True, "T": 4},
        top1=80.0,
        notes="LIF, T=4, fine-tuned from T=1 with hard distillation from CAFormer-B36",
    )
)

for _depth, _dim, _top1, _id in (
    (8, 384, 72.28, "10oH_zkwB4FDtFLgmZ_lI8e0tFjRzrXyD"),
    (6, 512, 74.11, "1hsShpFBKYpMK2TmpuoyBFORcLAuMHrx7"),
    (8, 512, 74.57, "1n59WNSBgP2VyAW2nfJX2Wvx5rgNJEMXI"),
    (10, 512, 74.66, "1l-c3QY5r4IFmYUmGPZXRHP_W7iC1sdP8"),
    (8, 768, 77.07, "1R-MaeFV8d2Y0pIGBSjklOGWhaF8dLHf4"),
):
    register_pretrained(
        PretrainedTag(
            name=f"sdt1_{_depth}_{_dim}.in1k",
            url=_drive(_id),
            source=f"{_V1} README.md (Results on ImageNet-1K)",
            official_file=f"{_depth} layers x {_dim} channels, T=4",
            kwargs={"T": 4},
            top1=_top1,
            notes="LIF, T=4",
        )
    )


__all__ = [
    "PretrainedTag",
    "build_pretrained",
    "default_tag",
    "download_pretrained",
    "get_pretrained",
    "is_pretrained_source",
    "list_pretrained",
    "register_pretrained",
    "resolve_source",
    "tag_kwargs",
    "tags_of",
    "verify_pretrained",
]
