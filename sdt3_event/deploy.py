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

``precision="float64"`` exports the model in double precision, with every convolution written as
an ``Einsum`` over its shifted inputs (im2col) (onnxruntime's CPU provider has no
float64 ``Conv``). Compared with the PyTorch model in float64 (``model.double()``) the logits then
agree to 1e-4 relative on real, trained weights (measured: equal on the demo model); in float32 the
two runtimes' convolutions sum in different orders, a few pre-activations cross a rounding boundary
of the quantiser and the logits differ by about 1 %. It is several times slower
(``bench/bench_deploy.py``): it is the reference export, float32 the fast one.

onnxruntime and onnx are the optional extra ``[deploy]``.
"""

from __future__ import annotations

import contextlib
import copy
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
import torch.nn.functional as F

from sdt3_event._files import temp_beside
from sdt3_event.events.contract import DataContract

log = logging.getLogger(__name__)

__all__ = [
    "export_onnx",
    "OnnxModel",
    "load_onnx_model",
    "ExportReport",
    "DEFAULT_OPSET",
    "PRECISIONS",
]

DEFAULT_OPSET = 17
_META_KEY = "sdt3_event"
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


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


def _conv_as_einsums(x, weight, bias, stride, padding, groups) -> torch.Tensor:
    """``F.conv2d`` (zero padding, no dilation) as one grouped contraction of its shifted inputs
    (im2col), ops that onnxruntime's CPU provider runs in float64 (Pad, Slice, Concat, Einsum).

    Shape:
        x ``(B, C, H, W)``, weight ``(Co, C / groups, kh, kw)`` -> ``(B, Co, Ho, Wo)``.
    """
    (ph, pw), (sh, sw) = padding, stride
    x = F.pad(x, (pw, pw, ph, ph))
    b, c, h, w = x.shape
    co, cg, kh, kw = weight.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    xg = x.reshape(b, groups, c // groups, h, w)  # (B, G, C / G, H, W)
    wg = weight.reshape(groups, co // groups, cg, kh, kw)  # (G, Co / G, C / G, kh, kw)
    shifted = [
        xg[:, :, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = torch.stack(shifted, 3)  # (B, G, C / G, kh * kw, Ho, Wo)
    out = torch.einsum("bgckhw,gock->bgohw", patches, wg.reshape(groups, co // groups, cg, -1))
    out = out.reshape(b, co, ho, wo)  # (B, Co, Ho, Wo)
    return out if bias is None else out + bias.reshape(1, co, 1, 1)


def _conv2d_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return _conv_as_einsums(x, self.weight, self.bias, self.stride, self.padding, self.groups)


def _conv1d_forward(self: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    y = _conv_as_einsums(
        x.unsqueeze(-1),  # (B, C, L, 1)
        self.weight.unsqueeze(-1),
        self.bias,
        (self.stride[0], 1),
        (self.padding[0], 0),
        self.groups,
    )
    return y.squeeze(-1)  # (B, Co, L)


@contextlib.contextmanager
def _convolutions_as_einsums(model: nn.Module):
    """Trace the model's ``Conv1d`` / ``Conv2d`` as :func:`_conv_as_einsums` (float64 export).

    Raises:
        ValueError: a convolution with dilation or non-zero padding modes.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d) and (
            any(d != 1 for d in m.dilation)
            or m.padding_mode != "zeros"
            or isinstance(m.padding, str)
        ):
            raise ValueError(f"precision='float64' cannot export this convolution: {m}")
    saved = nn.Conv2d.forward, nn.Conv1d.forward
    nn.Conv2d.forward, nn.Conv1d.forward = _conv2d_forward, _conv1d_forward
    try:
        yield
    finally:
        nn.Conv2d.forward, nn.Conv1d.forward = saved


def export_onnx(
    model: nn.Module,
    contract: DataContract,
    path: str | os.PathLike,
    *,
    model_name: str = "",
    model_config: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    precision: str = "float32",
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
        precision: ``"float32"`` or ``"float64"`` (the graph's and its input's dtype; see the
            module docstring). ``model`` itself is not changed.

    Raises:
        ImportError: onnx is missing (names the ``[deploy]`` extra).
        ValueError: an unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    onnx = _require("onnx")
    path = Path(path)
    model = model.to("cpu").eval()
    tracing = contextlib.nullcontext()
    if precision == "float64":
        model = copy.deepcopy(model).double()
        tracing = _convolutions_as_einsums(model)
    dynamic_time = not _stateful(model)
    # (B, T, P, H, W); B = 2 keeps B symbolic
    example = torch.zeros(2, *contract.frame_shape, dtype=PRECISIONS[precision])
    axes = {"frames": {0: "batch"}, "logits": {0: "batch"}}
    if dynamic_time:
        axes["frames"][1] = "T"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    os.close(fd)  # the writer opens the file by name
    try:
        with torch.no_grad(), warnings.catch_warnings(), tracing:
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
            "precision": precision,
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
        precision: ``"float32"`` or ``"float64"``, as exported.

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
        self.precision = str(self.meta.get("precision", "float32"))
        self.path = Path(path)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Logits in the file's precision (float64 for a ``precision="float64"`` export)."""
        x = frames.detach().to("cpu", PRECISIONS[self.precision]).contiguous().numpy()
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
