"""ONNX deployment: export the integer model, run it with onnxruntime.

:func:`export_onnx` writes the model as it computes in PyTorch (integer spike counts): each
multi-level neuron becomes ``Clip(0, D) -> Round -> Div(norm)`` (``Floor(x + 0.5)`` for half-up
rounding), convolutions and batch norms stay separate ops. The batch axis is always dynamic; the
time axis ``T`` too when the model's neurons are stateless (``neuron="quant"``); a model with
multi-step ``TemporalIF`` neurons unrolls its time loop, so its ``T`` is fixed. The file's metadata
carries the data contract, the model name and config, so ``live --runtime onnx`` preprocesses
exactly as training did.

:class:`OnnxModel` wraps an onnxruntime CPU session as a module ``frames -> logits``. By default
graph optimisations are off: onnxruntime's Conv+BatchNorm fusion changes float rounding just
enough to move a few spike counts across a rounding boundary, which breaks the 1e-4 parity with
PyTorch; ``optimize=True`` turns them on (faster, logits within about 1 %).

onnxruntime and onnx are the optional extra ``[deploy]``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sdt3_event.events.contract import DataContract

log = logging.getLogger(__name__)

__all__ = ["export_onnx", "OnnxModel", "load_onnx_model", "ExportReport", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
_META_KEY = "sdt3_event"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(
            f"ONNX deployment needs {module}: pip install 'sdt3-event[deploy]' "
            "(onnx and onnxruntime)"
        ) from exc


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``.onnx`` file.
        dynamic_time: whether ``T`` is a dynamic axis.
        ops: op type -> count in the graph.
    """

    path: Path
    dynamic_time: bool
    ops: dict[str, int]


def _stateful(model: nn.Module) -> bool:
    from sdt3_event.layers.neurons import TemporalIF

    return any(isinstance(m, TemporalIF) for m in model.modules())


def export_onnx(
    model: nn.Module,
    contract: DataContract,
    path: str | os.PathLike,
    *,
    model_name: str = "",
    model_config: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
) -> ExportReport:
    """Export ``model`` (eval mode, on the CPU) to ONNX with input ``frames (B, T, P, H, W)`` and
    output ``logits (B, classes)``.

    The file is written beside ``path`` and renamed into place, so a failed export leaves nothing.

    Args:
        model: a classifier taking ``(B, T, P, H, W)`` frames.
        contract: its data contract (stored in the metadata, gives the example input's shape).
        path: the ``.onnx`` file to write.
        model_name, model_config: stored in the metadata.
        opset: ONNX opset.

    Raises:
        ImportError: onnx is missing (names the ``[deploy]`` extra).
    """
    onnx = _require("onnx")
    path = Path(path)
    model = model.to("cpu").eval()
    dynamic_time = not _stateful(model)
    example = torch.zeros(2, *contract.frame_shape)  # (B, T, P, H, W); B = 2 keeps B symbolic
    axes = {"frames": {0: "batch"}, "logits": {0: "batch"}}
    if dynamic_time:
        axes["frames"][1] = "T"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer warns about every Python-level branch on shapes; they are intended
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["frames"],
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        graph = onnx.load(str(tmp))
        meta = {
            "model_name": model_name,
            "model_config": model_config or dict(getattr(model, "model_config", None) or {}),
            "data_contract": contract.to_dict(),
            "dynamic_time": dynamic_time,
        }
        entry = graph.metadata_props.add()
        entry.key, entry.value = _META_KEY, json.dumps(meta)
        onnx.save(graph, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    ops: dict[str, int] = {}
    for node in graph.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ExportReport(path=path, dynamic_time=dynamic_time, ops=ops)


class OnnxModel(nn.Module):
    """An onnxruntime CPU session as a module: ``frames (B, T, P, H, W) -> logits (B, classes)``.

    Args:
        path: an ``.onnx`` file from :func:`export_onnx`.
        threads: intra-op threads (``None``: onnxruntime's default).
        optimize: onnxruntime graph optimisations (see the module docstring).

    Attributes:
        contract: the data contract from the file's metadata.
        model_name: the exported model's name.
        meta: the whole metadata entry.

    Raises:
        ImportError: onnxruntime is missing.
        ValueError: the file has no sdt3-event metadata or cannot be loaded.
    """

    def __init__(
        self, path: str | os.PathLike, threads: int | None = None, optimize: bool = False
    ) -> None:
        super().__init__()
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: not a loadable ONNX model ({exc})") from exc
        raw = self.session.get_modelmeta().custom_metadata_map.get(_META_KEY)
        if raw is None:
            raise ValueError(
                f"{path} was not exported by sdt3-event (no data contract in its metadata); "
                "export it with: sdt3-event export CKPT --onnx OUT.onnx"
            )
        self.meta = json.loads(raw)
        self.contract = DataContract.from_dict(dict(self.meta["data_contract"]))
        self.model_name = str(self.meta.get("model_name", ""))
        self.path = Path(path)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run(["logits"], {"frames": x})
        return torch.from_numpy(np.asarray(logits))


def load_onnx_model(path: str | os.PathLike, threads: int | None = None, optimize: bool = False):
    """:class:`~sdt3_event.checkpoint.LoadedModel` for an exported ``.onnx`` file.

    Raises:
        FileNotFoundError: no such file.
        ImportError: onnxruntime is missing.
        ValueError: not an sdt3-event ONNX export.
    """
    from sdt3_event.checkpoint import LoadedModel

    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    model = OnnxModel(path, threads=threads, optimize=optimize)
    return LoadedModel(
        model=model, model_name=model.model_name, contract=model.contract, meta=model.meta
    )
