"""Load official (and own) checkpoints into the project's models, safely and without silent gaps.

:func:`load_pretrained` reads every container layout the official SDT repositories release:

* a raw ``state_dict``;
* ``{"model": ...}`` (Base/Large ``save_model``), ``{"model": ..., "model_ema": ...}`` (DVS; the EMA
  copy wraps the DDP model, so its keys start with ``module.``), ``{"state_dict": ...}``;
* keys prefixed by ``module.`` (DDP) and/or ``_orig_mod.`` (``torch.compile``);
* pickled ``argparse.Namespace`` training args -- files are read with ``torch.load(weights_only=True)``
  and only ``argparse.Namespace`` is allow-listed; nothing else is unpickled;
* BatchNorm ``num_batches_tracked`` entries may be missing (kept from the model, reported).

ImageNet -> events adaptation (when the model's input channels differ from the checkpoint's):
the stem conv weight ``[C, 3, k, k]`` becomes ``[C, P, k, k]`` with every polarity channel set to
``mean_rgb(W) · 3 / P``. A uniform input ``u`` on all channels then gives the same response
(``Σ_c W_c u = 3·mean(W)·u = Σ_p W'_p u``), so the pretrained BN statistics stay valid. A classifier
whose class count differs keeps the model's fresh initialisation. Every adapted / re-initialised /
filled key is listed in the returned :class:`LoadReport`; any other shape difference, missing key or
unexpected key raises (``strict=True``), naming the keys and both shapes.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

CONTAINER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")
STRIP_PREFIXES = ("module.", "_orig_mod.")
_SAFE_GLOBALS = [argparse.Namespace]


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (other variant, other D, missing or unexpected keys)."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, key by key.

    Attributes:
        source: file path or ``"<state_dict>"``.
        container: the top-level key the weights came from (``None`` for a raw state_dict).
        stripped_prefixes: prefixes removed from the keys.
        loaded: number of tensors copied unchanged.
        adapted: ``{key: description}`` of tensors transformed to fit (stem channel adaptation).
        reinitialized: keys left at the model's initialisation (classifier with another class count).
        filled: ``num_batches_tracked`` keys absent from the checkpoint (kept from the model).
        missing: model keys absent from the checkpoint (non-empty only with ``strict=False``).
        unexpected: checkpoint keys the model lacks (non-empty only with ``strict=False``).
        dropped: checkpoint keys the model's ``checkpoint_filter_fn`` removed on purpose (e.g. the
            MAE decoder when an MAE checkpoint initialises a classifier).
    """

    source: str
    container: str | None = None
    stripped_prefixes: list[str] = field(default_factory=list)
    loaded: int = 0
    adapted: dict[str, str] = field(default_factory=dict)
    reinitialized: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """True when every tensor was loaded unchanged and nothing was missing or unexpected."""
        return not (
            self.adapted or self.reinitialized or self.missing or self.unexpected or self.dropped
        )

    def __str__(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.source}"]
        if self.container:
            parts.append(f"container {self.container!r}")
        for name in ("adapted", "reinitialized", "filled", "missing", "unexpected", "dropped"):
            value = getattr(self, name)
            if isinstance(value, dict):
                value = [f"{k} ({v})" for k, v in value.items()]
            if value:
                parts.append(f"{name}: {', '.join(value)}")
        return "; ".join(parts)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``, allow-listing only ``argparse.Namespace``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file needs other pickled classes (the message names them); it is never
            unpickled with arbitrary code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc):
            raise ValueError(
                f"{path} contains pickled objects beyond tensors and argparse.Namespace; refusing to "
                f"unpickle them. Re-save only its state_dict (torch.save(ckpt['model'], ...)) from a "
                f"trusted environment. Details: {exc}"
            ) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path} is not a readable PyTorch file (truncated, or not a checkpoint?): {first}"
        ) from exc


def extract_state_dict(
    obj: Any, use_ema: bool = False
) -> tuple[dict[str, torch.Tensor], str | None, list[str]]:
    """Find the weights in a checkpoint object and strip ``module.`` / ``_orig_mod.`` prefixes.

    Returns:
        ``(state_dict, container key or None, stripped prefixes)``.

    Raises:
        CheckpointMismatchError: no state_dict found (the message lists the top-level keys).
    """
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(
            f"checkpoint is a {type(obj).__name__}, not a dict of tensors"
        )
    order = ("model_ema", "state_dict_ema", *CONTAINER_KEYS) if use_ema else CONTAINER_KEYS
    container = None
    if not _is_state_dict(obj):
        for key in order:
            if key in obj and isinstance(obj[key], Mapping) and _is_state_dict(obj[key]):
                container = key
                obj = obj[key]
                break
        else:
            raise CheckpointMismatchError(
                f"no state_dict found in checkpoint; top-level keys: {sorted(map(str, obj))}; "
                f"expected a raw state_dict or one of {CONTAINER_KEYS}"
            )
    sd = dict(obj)
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                stripped.append(prefix)
                changed = True
    return sd, container, stripped


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _stem_key(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("first_conv"):
        return f"{cfg['first_conv']}.weight"
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            return f"{name}.weight"
    return None


def _classifier_prefixes(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ("head", "head_kd")
    if isinstance(names, str):
        names = (names,)
    mods = dict(model.named_modules())
    return [n for n in names if isinstance(mods.get(n), nn.Linear)]


def adapt_stem_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB stem ``[C, c_in, k, k]`` -> ``[C, in_chans, k, k]``: each channel = ``mean · c_in / in_chans``.

    The summed response to a uniform input is preserved.
    """
    c_in = weight.shape[1]
    mean = weight.float().mean(dim=1, keepdim=True)  # (C, 1, k, k)
    return (mean * (c_in / in_chans)).expand(-1, in_chans, *weight.shape[2:]).to(weight.dtype)


def d_from_checkpoint_name(path: str | Path) -> int | None:
    """D encoded in an official Large checkpoint name (``83M_1x8.pth`` -> 8), else None."""
    m = re.search(r"(?:^|[^0-9])1x([0-9]+)(?:[^0-9]|$)", Path(path).name)
    return int(m.group(1)) if m else None


def _check_D(model: nn.Module, source: str, raw: Any) -> None:
    D_model = (getattr(model, "model_config", None) or {}).get("D")
    if D_model is None:
        return
    D_ckpt = None
    how = ""
    if isinstance(raw, Mapping):
        conf = raw.get("model_config")
        if isinstance(conf, Mapping) and "D" in conf:
            D_ckpt, how = int(conf["D"]), "its model_config"
    if D_ckpt is None and source != "<state_dict>":
        D_ckpt = d_from_checkpoint_name(source)
        how = "its file name (official 1xD naming: T=1 time step x D levels)"
    if D_ckpt is not None and D_ckpt != D_model:
        raise CheckpointMismatchError(
            f"{source} was trained with D={D_ckpt} (from {how}) but the model has D={D_model}; "
            f"build it with create_model(..., D={D_ckpt})"
        )


def _variant_of(obj: Any) -> str:
    """``"model 'sdt3_micro'"`` for a model or a checkpoint that names its model, else a generic
    phrase (a bare state_dict does not say which variant it is)."""
    name = None
    if isinstance(obj, nn.Module):
        name = (getattr(obj, "pretrained_cfg", None) or {}).get("architecture")
        return f"model {name!r}" if name else f"a {type(obj).__name__}"
    if isinstance(obj, Mapping):
        name = obj.get("model_name")
        args = obj.get("args")
        if name is None and args is not None:
            name = getattr(args, "model", None)
    return f"the weights of model {name!r}" if name else "the weights of another variant"


def load_pretrained(
    model: nn.Module,
    path_or_state_dict: str | Path | Mapping[str, Any],
    strict: bool = True,
    use_ema: bool = False,
    adapt_stem: bool = True,
    reinit_head: bool = True,
    source: str | None = None,
) -> LoadReport:
    """Load a checkpoint into ``model`` and report exactly what was done.

    A model may define ``checkpoint_filter_fn(state_dict) -> state_dict`` (timm style) to drop keys
    it deliberately does not use; they are listed in ``LoadReport.dropped``.

    Args:
        model: the target model (built with the intended ``in_chans`` / ``num_classes`` / ``D``).
        path_or_state_dict: a file in any official container layout, or an in-memory checkpoint.
        strict: raise on missing or unexpected keys (with ``False`` they are logged and reported).
            Shape differences other than the stem/head adaptations always raise.
        use_ema: prefer ``model_ema`` over ``model`` when both exist (DVS checkpoints).
        adapt_stem: allow the RGB -> P-channel stem adaptation.
        reinit_head: allow re-initialising a classifier whose class count differs.
        source: the file an in-memory checkpoint was read from (named in the report and errors,
            and its ``1xD`` name checked against the model's D).

    Returns:
        A :class:`LoadReport`.

    Raises:
        CheckpointMismatchError: shapes differ (keys and both shapes named), keys are missing or
            unexpected under ``strict``, or the checkpoint's D differs from the model's.
        FileNotFoundError, ValueError: unreadable file (see :func:`read_checkpoint`).
    """
    if isinstance(path_or_state_dict, (str, Path)):
        source = str(path_or_state_dict)
        raw = read_checkpoint(path_or_state_dict)
    else:
        source, raw = source or "<state_dict>", path_or_state_dict
    _check_D(model, source, raw)
    sd, container, stripped = extract_state_dict(raw, use_ema=use_ema)
    report = LoadReport(source=source, container=container, stripped_prefixes=stripped)
    filter_fn = getattr(model, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        kept = filter_fn(sd)
        report.dropped = sorted(set(sd) - set(kept))
        sd = kept

    target = model.state_dict()
    stem = _stem_key(model)
    heads = _classifier_prefixes(model)
    new_sd: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in sd.items():
        if key not in target:
            report.unexpected.append(key)
            continue
        want = target[key].shape
        if value.shape == want:
            new_sd[key] = value
            report.loaded += 1
            continue
        if (
            adapt_stem
            and key == stem
            and value.dim() == 4
            and value.shape[0] == want[0]
            and value.shape[2:] == want[2:]
        ):
            new_sd[key] = adapt_stem_weight(value, want[1])
            report.adapted[key] = (
                f"{tuple(value.shape)} -> {tuple(want)}: mean over {value.shape[1]} input channels "
                f"x {value.shape[1]}/{want[1]} per channel"
            )
            continue
        head = next((h for h in heads if key in (f"{h}.weight", f"{h}.bias")), None)
        if reinit_head and head is not None and value.shape[1:] == want[1:]:
            report.reinitialized.append(key)
            continue
        mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(want)}")
    if mismatched:
        raise CheckpointMismatchError(
            f"{source} holds {_variant_of(raw)}, not {_variant_of(model)}: "
            f"{len(mismatched)} of {len(target)} tensors differ, the first is {mismatched[0]}"
        )
    for key in target:
        if key in new_sd or key in report.reinitialized:
            continue
        if key.endswith("num_batches_tracked"):
            report.filled.append(key)
        else:
            report.missing.append(key)
        new_sd[key] = target[key]
    if strict and (report.missing or report.unexpected):
        firsts = [
            f"{len(keys)} {what} key(s)" + (f" (first {keys[0]!r})" if keys else "")
            for what, keys in (("missing", report.missing), ("unexpected", report.unexpected))
        ]
        raise CheckpointMismatchError(
            f"{source} holds {_variant_of(raw)}, not {_variant_of(model)}: {', '.join(firsts)}; "
            "pass strict=False to load the rest (the report lists them)"
        )
    for key in report.reinitialized:
        new_sd[key] = target[key]
    model.load_state_dict(new_sd, strict=True)
    if report.missing or report.unexpected:
        logger.warning("partial load: %s", report)
    elif report.adapted or report.reinitialized:
        logger.info("adapted load: %s", report)
    return report
