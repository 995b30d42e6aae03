"""NIR export of the convolutional part of an SDT model (``sdt3-event export CKPT --nir OUT.nir``).

`NIR <https://neuroir.org>`_ is the exchange format of neuromorphic simulators and hardware
(Lava, Norse, snnTorch, Sinabs, Rockpool, SpiNNaker2 ...). :func:`export_nir` writes the MetaFormer
conv stages of an SDT-V3 model (:data:`~sdt3_event.models._builder.CONV_STAGES`: the stem, the
ConvBlocks and the downsamplings, up to ``downsample3``) as one NIR graph:

* each convolution with its BatchNorm folded in becomes a ``Conv2d`` (bias = the folded shift);
* each multi-level neuron ``round(clamp(u, 0, D)) / norm`` is expanded into ``D`` ``Threshold``
  nodes, the ``k``-th firing where ``u > k - 1/2``, summed by a ``Scale(1 / norm)`` node: the
  integer count as ``D`` binary spikes, which is what the spike-driven executor computes. The
  expansion equals the quantiser except exactly on a tie ``u = k - 1/2``;
* each residual sum is a ``Scale`` node of ones with two incoming edges (NIR sums the edges that
  converge on a node).

The V3 neuron is stateless from one time bin to the next (spec §2.3), so the graph is run once per
frame of the ``(T, P, H, W)`` input; its output is the real-valued residual stream that enters the
first attention stage, ``(C2, H/16, W/16)`` per frame.

What NIR cannot express is refused with a message that says why (:class:`NirExportError`):

* the attention stages (``block3``, ``block4``): spike-driven self-attention multiplies two spike
  tensors (``Q Kᵀ V``), and NIR has no node for a product of two signals;
* NIR's ``IF`` neuron resets to a fixed potential, so multi-step ``TemporalIF`` neurons (soft
  reset, a membrane carried over time bins) and the V2 LIF neurons have no NIR equivalent;
* models without MetaFormer conv stages (SDT V1) and layers of other types.

:func:`run_nir_graph` is a small reference interpreter for the nodes written here (PyTorch ops),
used by the export check and the tests; any NIR-capable simulator can load the file instead.
``nir`` (on PyPI, with h5py) is part of the ``[deploy]`` extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event._files import temp_beside
from sdt3_event.layers.neurons import MultiSpike, TemporalIF
from sdt3_event.layers.sdt3_blocks import MetaFormerConvBlock, SepConvSpike, SpikeDownsample
from sdt3_event.models._builder import CONV_STAGES

__all__ = [
    "export_nir",
    "run_nir_graph",
    "forward_stages",
    "NirExportError",
    "NirReport",
    "NIR_PRECISIONS",
]

NIR_PRECISIONS = {"float32": np.float32, "float64": np.float64}
_META_KEY = "sdt3_event"
# why the stages after the conv part cannot go to NIR
_ATTENTION = (
    "is spike-driven self-attention, which multiplies two spike tensors (Q·Kᵀ·V); NIR has no "
    "node for a product of two signals"
)


class NirExportError(ValueError):
    """The model, or the part asked for, has something NIR cannot express.

    Attributes:
        argument: the :func:`export_nir` argument at fault (``"upto"``), or None for the model.
    """

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


@dataclass(frozen=True)
class NirReport:
    """What :func:`export_nir` wrote.

    Attributes:
        path: the ``.nir`` file.
        stages: the exported stages, in order (names from ``CONV_STAGES``).
        input_shape: ``(P, H, W)`` of one frame.
        output_shape: ``(C, h, w)`` of the graph's output per frame.
        ops: NIR node type -> count.
    """

    path: Path
    stages: tuple[str, ...]
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    ops: dict[str, int]


def _require_nir():
    try:
        import nir
    except ImportError as exc:
        raise ImportError(
            "NIR export needs the nir package: pip install 'sdt3-event[deploy]' (or pip install nir)"
        ) from exc
    return nir


class _GraphBuilder:
    """Nodes and edges of a NIR graph, with the shape ``(C, H, W)`` of each node's output."""

    def __init__(self, nir, dtype) -> None:
        self.nir, self.dtype = nir, dtype
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}

    def add(self, name: str, node, shape, *sources: str) -> str:
        self.nodes[name] = node
        self.shapes[name] = tuple(int(v) for v in shape)
        self.edges += [(src, name) for src in sources]
        return name

    def conv_bn(self, name: str, src: str, conv: nn.Module, bn: nn.Module) -> str:
        """``BN(conv(x))`` as one ``Conv2d``, the BatchNorm folded in float64."""
        if type(conv) is not nn.Conv2d or type(bn) is not nn.BatchNorm2d:
            raise NirExportError(
                f"{name}: only Conv2d followed by BatchNorm2d can be written to NIR, found "
                f"{type(conv).__name__} / {type(bn).__name__}"
            )
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise NirExportError(f"{name}: only zero padding given in pixels is supported")
        w = conv.weight.detach().double()
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0])
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        weight = (w * scale[:, None, None, None]).numpy().astype(self.dtype)
        bias = ((b - bn.running_mean.double()) * scale + bn.bias.detach().double()).numpy()
        _, h, w_in = self.shapes[src]
        node = self.nir.Conv2d(
            input_shape=(h, w_in),
            weight=weight,
            stride=tuple(conv.stride),
            padding=tuple(conv.padding),
            dilation=tuple(conv.dilation),
            groups=conv.groups,
            bias=bias.astype(self.dtype),
        )
        # nir sizes a conv's input from weight.shape[1] = C_in / groups: give a depthwise conv its
        # real channel count, or the graph's type check rejects the edge into it
        node.input_type = {"input": np.array([conv.in_channels, h, w_in])}
        return self.add(name, node, node.output_type["output"], src)

    def neuron(self, name: str, src: str, sn: nn.Module) -> str:
        """``round(clamp(u, 0, D)) / norm`` as ``D`` thresholds at ``k - 1/2`` summed by a Scale."""
        if isinstance(sn, TemporalIF) or not isinstance(sn, MultiSpike):
            why = (
                "a multi-step TemporalIF neuron carries its membrane over time bins with a soft "
                "reset, and NIR's IF resets to a fixed potential"
                if isinstance(sn, TemporalIF)
                else f"{type(sn).__name__} is not the stateless multi-level quantiser of SDT-V3"
            )
            raise NirExportError(f"{name}: {why}; only neuron='quant' models export to NIR")
        shape = self.shapes[src]
        thresholds = [
            self.add(
                f"{name}.t{k}",
                self.nir.Threshold(threshold=np.full(shape, k - 0.5, self.dtype)),
                shape,
                src,
            )
            for k in range(1, sn.D + 1)
        ]
        scale = self.nir.Scale(scale=np.full(shape, 1.0 / sn.norm, self.dtype))
        return self.add(name, scale, shape, *thresholds)

    def residual(self, name: str, a: str, b: str) -> str:
        shape = self.shapes[a]
        return self.add(name, self.nir.Scale(scale=np.ones(shape, self.dtype)), shape, a, b)


def _stage_modules(model: nn.Module, stages: tuple[str, ...]) -> Iterator[tuple[str, nn.Module]]:
    for stage in stages:
        modules = getattr(model, stage)
        if isinstance(modules, nn.ModuleList):
            yield from ((f"{stage}.{i}", m) for i, m in enumerate(modules))
        else:
            yield stage, modules


def forward_stages(model: nn.Module, x: torch.Tensor, stages: tuple[str, ...]) -> torch.Tensor:
    """PyTorch's output of ``stages`` (a prefix of ``CONV_STAGES``), what the NIR graph computes.

    Shape:
        ``(T, B, P, H, W)`` -> ``(T, B, C, h, w)``.
    """
    for _, module in _stage_modules(model, stages):
        x = module(x)
    return x


def _write_block(g: _GraphBuilder, name: str, module: nn.Module, src: str) -> str:
    if isinstance(module, SpikeDownsample):
        if module.encode_spike is not None:
            src = g.neuron(f"{name}.encode_spike", src, module.encode_spike)
        return g.conv_bn(name, src, module.encode_conv, module.encode_bn)
    if isinstance(module, MetaFormerConvBlock) and isinstance(module.Conv, SepConvSpike):
        sep = module.Conv
        y = g.neuron(f"{name}.Conv.spike1", src, sep.spike1)
        y = g.conv_bn(f"{name}.Conv.pwconv1", y, *sep.pwconv1)
        y = g.neuron(f"{name}.Conv.spike2", y, sep.spike2)
        y = g.conv_bn(f"{name}.Conv.dwconv", y, *sep.dwconv)
        y = g.neuron(f"{name}.Conv.spike3", y, sep.spike3)
        y = g.conv_bn(f"{name}.Conv.pwconv2", y, *sep.pwconv2)
        x = g.residual(f"{name}.add1", src, y)
        first, second = (getattr(module, n) for n in module.NEURON_NAMES)
        y = g.neuron(f"{name}.{module.NEURON_NAMES[0]}", x, first)
        y = g.conv_bn(f"{name}.conv1", y, module.conv1, module.bn1)
        y = g.neuron(f"{name}.{module.NEURON_NAMES[1]}", y, second)
        y = g.conv_bn(f"{name}.conv2", y, module.conv2, module.bn2)
        return g.residual(f"{name}.add2", x, y)
    raise NirExportError(
        f"{name} ({type(module).__name__}) has no NIR form here: only the SDT-V3 conv stages "
        "(SpikeDownsample, and MetaFormer conv blocks with the spike separable conv) export"
    )


def _stages_upto(model: nn.Module, upto: str | None) -> tuple[str, ...]:
    missing = [s for s in CONV_STAGES if not hasattr(model, s)]
    if missing:
        raise NirExportError(
            f"{type(model).__name__} has no MetaFormer conv stages ({', '.join(missing)} missing): "
            "NIR export covers the SDT-V3 conv part (stem, ConvBlocks, downsamplings)"
        )
    if upto is None or upto == CONV_STAGES[-1]:
        return CONV_STAGES
    if upto in CONV_STAGES:
        return CONV_STAGES[: CONV_STAGES.index(upto) + 1]
    children = [name for name, _ in model.named_children()]
    if upto in children:
        raise NirExportError(
            f"{upto!r} lies after the conv part, and block3 {_ATTENTION}: "
            f"export up to {CONV_STAGES[-1]!r} and run the rest in PyTorch or ONNX",
            "upto",
        )
    raise NirExportError(
        f"{upto!r} is not a conv stage; choose from {', '.join(CONV_STAGES)}", "upto"
    )


def export_nir(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: tuple[int, int, int],
    *,
    upto: str | None = None,
    precision: str = "float32",
    metadata: dict[str, Any] | None = None,
) -> NirReport:
    """Write the conv part of ``model`` (eval mode) as a NIR graph, per frame.

    The file is written beside ``path`` and renamed into place, so a failed export leaves nothing.

    Args:
        model: an SDT-V3 model with stateless (``neuron="quant"``) neurons.
        path: the ``.nir`` file to write.
        input_shape: ``(P, H, W)`` of one input frame (the data contract's frame).
        upto: the last conv stage to export (default ``downsample3``, the whole conv part).
        precision: ``"float32"`` or ``"float64"`` parameters (BatchNorm is folded in float64).
        metadata: extra entries for the graph's metadata (e.g. the data contract).

    Returns:
        a :class:`NirReport`.

    Raises:
        ImportError: ``nir`` is missing (names the ``[deploy]`` extra).
        NirExportError: a stage NIR cannot express (attention, stateful neurons, other layers).
        ValueError: an unknown ``precision`` or a bad ``input_shape``.
    """
    if precision not in NIR_PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(NIR_PRECISIONS)}, got {precision!r}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (P, H, W) of positive sizes, got {input_shape}")
    nir = _require_nir()
    stages = _stages_upto(model, upto)
    model = model.to("cpu").eval()
    g = _GraphBuilder(nir, NIR_PRECISIONS[precision])
    src = g.add("input", nir.Input(input_type={"input": np.array(input_shape)}), input_shape)
    for name, module in _stage_modules(model, stages):
        src = _write_block(g, name, module, src)
    out_shape = g.shapes[src]
    g.add("output", nir.Output(output_type={"output": np.array(out_shape)}), out_shape, src)
    meta = {
        "stages": list(stages),
        "time": "stateless per time bin: run the graph once per frame of (T, P, H, W)",
        "output": f"the residual stream entering {'block3' if stages == CONV_STAGES else 'the next stage'}",
        **(metadata or {}),
    }
    graph = nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata={_META_KEY: json.dumps(meta)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    os.close(fd)  # the writer opens the file by name
    try:
        nir.write(str(tmp), graph)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    ops: dict[str, int] = {}
    for node in g.nodes.values():
        ops[type(node).__name__] = ops.get(type(node).__name__, 0) + 1
    return NirReport(
        path=path,
        stages=stages,
        input_shape=tuple(int(v) for v in input_shape),
        output_shape=out_shape,
        ops=ops,
    )


def run_nir_graph(graph, frames: torch.Tensor) -> torch.Tensor:
    """Run a NIR graph of the nodes :func:`export_nir` writes, frame by frame (stateless).

    Args:
        graph: a ``nir.NIRGraph`` (e.g. ``nir.read(path)``) with one input and one output.
        frames: ``(N, P, H, W)``; the parameters are cast to its dtype.

    Returns:
        ``(N, C, h, w)``, the output node's value.

    Raises:
        NirExportError: a node type this interpreter does not know.
    """
    nir = _require_nir()
    incoming: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        incoming[dst].append(src)
    values: dict[str, torch.Tensor] = {}

    def as_tensor(a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=frames.dtype)

    pending = list(graph.nodes)
    while pending:
        ready = [n for n in pending if all(s in values for s in incoming[n])]
        if not ready:
            raise NirExportError("the graph has a cycle; run_nir_graph runs feed-forward graphs")
        for name in ready:
            node = graph.nodes[name]
            x = frames if isinstance(node, nir.Input) else sum(values[s] for s in incoming[name])
            if isinstance(node, nir.Conv2d):
                x = F.conv2d(
                    x,
                    as_tensor(node.weight),
                    as_tensor(node.bias),
                    tuple(node.stride),
                    tuple(node.padding),
                    tuple(node.dilation),
                    int(node.groups),
                )
            elif isinstance(node, nir.Threshold):
                x = (x > as_tensor(node.threshold)).to(frames.dtype)
            elif isinstance(node, nir.Scale):
                x = x * as_tensor(node.scale)
            elif not isinstance(node, nir.Input | nir.Output):
                raise NirExportError(f"{name}: run_nir_graph does not know {type(node).__name__}")
            values[name] = x
        pending = [n for n in pending if n not in values]
    (out,) = [values[n] for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    return out
