"""Self-describing checkpoints: atomic writes, ``weights_only`` reads, model rebuilding.

A checkpoint written by the engine is a plain dict of tensors and primitives (no pickled classes), so
:func:`torch.load` with ``weights_only=True`` reads it. It carries everything needed to rebuild and use
the model without the config file that trained it:

=================  ===============================================================================
key                content
=================  ===============================================================================
``format``         ``"sdt3-event/checkpoint"``; ``format_version`` is :data:`FORMAT_VERSION`
``model_name``     registered model name (``create_model`` argument)
``model_config``   ``create_model`` keyword arguments, ``D`` included
``model``          ``state_dict`` of the trained model (no ``module.`` prefix)
``model_ema``      ``state_dict`` of the EMA model, or ``None``
``optimizer``      optimizer ``state_dict`` (``None`` in exported checkpoints)
``scaler``         AMP grad-scaler ``state_dict`` or ``None``
``scheduler``      LR scheduler ``state_dict`` or ``None``
``epoch``          number of completed epochs
``step``           number of completed optimizer steps
``rng``            RNG states (see :func:`capture_rng_state`)
``data_contract``  :meth:`DataContract.to_dict`
``config``         the resolved experiment config (nested dict)
``metrics``        the last evaluation metrics, ``best_acc1`` etc.
=================  ===============================================================================
"""

from __future__ import annotations

import errno
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sdt3_event._files import temp_beside
from sdt3_event.assets import BUNDLED_MODELS
from sdt3_event.events.contract import DataContract

logger = logging.getLogger(__name__)

FORMAT = "sdt3-event/checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model_name", "model_config", "model", "data_contract")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or applied; the message says why and what to do."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically.

    The payload goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed
    over ``path`` with :func:`os.replace`. A failure at any point (a full disk, an interrupt) leaves
    the previous file at ``path`` untouched and removes the temporary file.

    Args:
        path: destination; parent folders are created.
        payload: the checkpoint dict (see the module docstring). ``format``/``format_version`` are
            filled in when missing.

    Returns:
        The destination path.

    Raises:
        CheckpointError: the file could not be written (the message names the cause, e.g. a full
            disk); the previous checkpoint at ``path`` is still intact.
    """
    path = Path(path)
    payload = dict(payload)
    payload.setdefault("format", FORMAT)
    payload.setdefault("format_version", FORMAT_VERSION)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the checkpoint folder {path.parent}: {exc}") from exc
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            cause = "the disk is full" if exc.errno == errno.ENOSPC else str(exc)
            raise CheckpointError(
                f"could not write checkpoint {path}: {cause}. Nothing was written; the previous "
                f"file (if any) is intact. Free space or choose another output folder."
            ) from exc
        raise
    _fsync_dir(path.parent)
    logger.debug("saved checkpoint %s", path)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refuse_pretrained_tag(name: str) -> None:
    """Say why a pretrained tag (``sdt3_10m.in1k``) is not an event classifier checkpoint."""
    if "." not in name or "/" in name:
        return
    from sdt3_event.models.zoo import get_pretrained

    try:
        tag = get_pretrained(name)
    except KeyError:
        return
    C, H, W = tag.input_size
    raise CheckpointError(
        f"{tag.name} is an ImageNet classifier (1000 classes, {C}x{H}x{W} images), not an event "
        f"classifier: its head does not fit event classes and it carries no data contract. "
        f"Fine-tune it first (sdt3-event train -c configs/finetune_gesture_sdt3_10m.yaml) and "
        f"pass the run's checkpoints/best.pt."
    )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read an sdt3-event checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not a PyTorch file, is not an sdt3-event checkpoint (e.g. an
            official ``.pth`` or a bare ``state_dict``), or has a newer format version.
    """
    from sdt3_event.models.pretrained import read_checkpoint

    path = Path(path)
    if not path.is_file():
        _refuse_pretrained_tag(str(path))
        raise FileNotFoundError(
            f"checkpoint not found: {path} (no such file, and not a bundled model: "
            f"{', '.join(BUNDLED_MODELS)})"
        )
    try:
        payload = read_checkpoint(path, map_location=map_location)
    except ValueError as exc:  # unreadable, or pickles more than tensors and argparse.Namespace
        raise CheckpointError(str(exc)) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an sdt3-event checkpoint (no 'format': {FORMAT!r} entry). A bare "
            f"state_dict or an official checkpoint loads with create_model(name, pretrained=path)."
        )
    version = payload.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, newer than this sdt3-event reads "
            f"({FORMAT_VERSION}); upgrade sdt3-event."
        )
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks the checkpoint entries {missing}")
    return payload


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, in eval mode.

    Attributes:
        model: the network (EMA weights when requested and present).
        model_name: its registered name.
        contract: the data contract it was trained with.
        meta: the rest of the checkpoint (epoch, step, metrics, config, ``weights``: "ema"|"model").
    """

    model: nn.Module
    model_name: str
    contract: DataContract
    meta: dict[str, Any] = field(default_factory=dict)


def load_model_from_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    use_ema: bool = True,
    expected_model: str | None = None,
    arch: str | None = None,
) -> LoadedModel:
    """Rebuild the model stored in a checkpoint.

    Args:
        path: an sdt3-event checkpoint, or with ``arch`` also a bare state_dict or an official
            checkpoint.
        device: where to put the model.
        use_ema: prefer the EMA weights when the checkpoint has them.
        expected_model: when given, the checkpoint must hold this model (name or official alias).
        arch: the registered model for a checkpoint that does not name one. Its weights must fit
            exactly (no stem or head adaptation), and the data contract is the model's default
            input (:func:`default_contract`). For an sdt3-event checkpoint it acts like
            ``expected_model``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a checkpoint, a different model than ``expected_model``, a model name
            that is not registered, or weights that do not fit the model.
    """
    from sdt3_event.registry import create_model, resolve_name

    if arch is not None:
        resolve_name(arch)  # an unknown name raises here, with close matches
        expected_model = expected_model or arch
    try:
        payload = load_checkpoint(path)
    except CheckpointError:
        if arch is None:
            raise
        return _load_foreign(path, arch, device, use_ema)
    name = payload["model_name"]
    if expected_model is not None:
        try:
            same = resolve_name(expected_model) == resolve_name(name)
        except KeyError:
            same = expected_model == name
        if not same:
            raise CheckpointError(
                f"{path} holds model {name!r}, not {expected_model!r}; pass a checkpoint of "
                f"{expected_model!r} or build {name!r} instead."
            )
    try:
        model = create_model(name, **dict(payload["model_config"]))
    except KeyError as exc:
        raise CheckpointError(
            f"{path} holds model {name!r}, which this installation does not know: {exc}"
        ) from exc
    weights = "model"
    state = payload["model"]
    if use_ema and payload.get("model_ema") is not None:
        state, weights = payload["model_ema"], "ema"
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the weights in {path} do not fit model {name!r} with config "
            f"{payload['model_config']}: {str(exc).splitlines()[0]}"
        ) from exc
    model.to(device).eval()
    contract = DataContract.from_dict(dict(payload["data_contract"]))
    meta = {
        k: v
        for k, v in payload.items()
        if k not in ("model", "model_ema", "optimizer", "scaler", "scheduler", "rng")
    }
    meta["weights"] = weights
    return LoadedModel(model=model, model_name=name, contract=contract, meta=meta)


def default_contract(model: nn.Module) -> DataContract:
    """The data contract a registered model implies on its own: its default input size and ``T``,
    a sensor of that size, whole clips, and class names ``"0"``, ``"1"``, ..."""
    conf = getattr(model, "model_config", None) or {}
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    p, h, w = pcfg.get("input_size", (conf.get("in_chans", 2), 224, 224))
    n_classes = int(conf.get("num_classes", 0) or 0)
    return DataContract(
        sensor_size=(w, h, p),
        input_size=(h, w),
        n_time_bins=int(conf.get("T", 1) or 1),
        class_names=tuple(str(i) for i in range(n_classes)),
    )


def _load_foreign(path, arch: str, device, use_ema: bool) -> LoadedModel:
    """A bare state_dict or an official checkpoint loaded into ``create_model(arch)``."""
    from sdt3_event.models.pretrained import load_pretrained
    from sdt3_event.registry import create_model, resolve_name

    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    model = create_model(arch)
    try:
        report = load_pretrained(model, path, use_ema=use_ema, adapt_stem=False, reinit_head=False)
    except ValueError as exc:  # CheckpointMismatchError or an unreadable file
        raise CheckpointError(str(exc)) from exc
    model.to(device).eval()
    meta = {"weights": report.container or "state_dict", "source": str(path)}
    return LoadedModel(model, resolve_name(arch), default_contract(model), meta)


def capture_rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch (CPU and CUDA) as ``weights_only``-safe values."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def export_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, use_ema: bool | None = None
) -> Path:
    """Write an inference-only copy of a training checkpoint (atomically).

    Keeps the model name/config, data contract, resolved config and metrics; drops the optimizer,
    scaler, scheduler and RNG states, and keeps a single set of weights (stored as ``model``).

    Args:
        src: a training checkpoint.
        dst: where to write the export.
        use_ema: take the EMA weights; ``None`` takes them when present.

    Raises:
        CheckpointError: ``src`` is not a checkpoint, or ``use_ema`` without EMA weights.
    """
    payload = load_checkpoint(src)
    ema = payload.get("model_ema")
    if use_ema and ema is None:
        raise CheckpointError(f"{src} has no EMA weights to export")
    weights = ema if (use_ema or use_ema is None) and ema is not None else payload["model"]
    out = {
        k: payload[k]
        for k in (
            "model_name",
            "model_config",
            "data_contract",
            "config",
            "metrics",
            "epoch",
            "step",
        )
        if k in payload
    }
    out.update(model=weights, model_ema=None, optimizer=None, scaler=None, scheduler=None, rng=None)
    return save_checkpoint(dst, out)
