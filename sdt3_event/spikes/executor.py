"""Spike-driven execution of integer-activation SDT-V3 models.

A trained V3 model emits integer spike counts ``a ∈ {0..D}`` (divided by ``norm``) and every neuron
output feeds a conv / linear or the attention product directly (spec §2.4, §2.5). For such an op
``W·(a/norm) = (1/norm)·Σ_{d=1..D} W·s_d`` with binary planes ``s_d = [a ≥ d]`` (fire in the first
``a`` of ``D`` virtual steps). :func:`to_spike_driven` rewrites a copy of the model accordingly:

* every spike-fed ``Conv1d``/``Conv2d``/``Linear`` becomes :class:`SpikeDrivenLinear`: it expands its
  input into ``D`` binary planes, runs the op on each plane without bias (on binary input the op only
  adds up the weights of active synapses: accumulate, no multiply) and sums them;
* every :class:`~sdt3_event.layers.attention.SpikeMatMulAttention` becomes
  :class:`SpikeDrivenAttention`: ``Kᵀ·V`` is a sum over plane pairs of binary matrix products
  (AND + count), then each binary ``Q`` plane selects and adds rows of the integer ``Kᵀ·V``;
* the Large model's ``RepConv`` (two linear conv+BN pairs with no neuron between) is folded into one
  1×1 conv first, so its second conv no longer multiplies real values.

Real-valued (MAC) ops stay as they are: the encoding stem and, in the Large models, the main head
(which the official code feeds the non-spiked pooled features). The logits equal the integer
model's up to float rounding (exactly, in float64, for all practical purposes).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.spikes.graph import LINEAR_TYPES, SpikeGraph, trace_spike_graph

_COUNT_TOL = 1e-3


def spike_planes(x: torch.Tensor, D: int, norm: float) -> torch.Tensor:
    """Expand spike values ``a / norm`` into ``D`` binary planes ``[a ≥ d]``, ``d = 1..D``.

    Shape:
        ``x (*S)`` -> ``(D, *S)`` with values in {0, 1}, in ``x``'s dtype.

    Raises:
        ValueError: ``x·norm`` is not an integer in ``[0, D]`` (the input is not a spike tensor of
            this neuron).
    """
    a = x.detach() * norm
    counts = torch.round(a)
    if x.numel() and (
        float((a - counts).abs().max()) > _COUNT_TOL
        or float(counts.min()) < 0
        or float(counts.max()) > D
    ):
        raise ValueError(
            f"input is not a spike tensor with D={D}, norm={norm:g}: values x·norm range "
            f"[{float(a.min()):.4g}, {float(a.max()):.4g}] or are not integers"
        )
    levels = torch.arange(1, D + 1, device=x.device, dtype=counts.dtype)
    levels = levels.view(D, *([1] * x.dim()))  # (D, 1, ..., 1)
    return (counts.unsqueeze(0) >= levels).to(x.dtype)  # (D, *S)


class SpikeDrivenLinear(nn.Module):
    """A conv / linear layer executed on ``D`` binary spike planes and accumulated.

    Args:
        op: the original ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Linear`` (weights shared, not copied).
        D: spike levels of the feeding neuron.
        norm: its output divisor.

    Shape:
        as ``op``.
    """

    def __init__(self, op: nn.Module, D: int, norm: float) -> None:
        super().__init__()
        if not isinstance(op, LINEAR_TYPES):
            raise TypeError(
                f"SpikeDrivenLinear wraps Conv1d/Conv2d/Linear, got {type(op).__name__}"
            )
        self.op = op
        self.D = int(D)
        self.norm = float(norm)

    def _no_bias(self, x: torch.Tensor) -> torch.Tensor:
        op = self.op
        if isinstance(op, nn.Linear):
            return F.linear(x, op.weight)
        if isinstance(op, nn.Conv2d):
            return F.conv2d(x, op.weight, None, op.stride, op.padding, op.dilation, op.groups)
        return F.conv1d(x, op.weight, None, op.stride, op.padding, op.dilation, op.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = spike_planes(x, self.D, self.norm)  # (D, B', C, ...)
        if isinstance(self.op, nn.Linear):
            acc = self._no_bias(planes)  # (D, ..., out)
        else:
            y = self._no_bias(planes.flatten(0, 1))  # (D·B', out, ...)
            acc = y.view(self.D, *x.shape[:1], *y.shape[1:])  # (D, B', out, ...)
        out = acc.sum(0) / self.norm
        if self.op.bias is not None:
            shape = [1] * out.dim()
            shape[-1 if isinstance(self.op, nn.Linear) else 1] = -1
            out = out + self.op.bias.view(shape)
        return out

    def extra_repr(self) -> str:
        return f"D={self.D}, norm={self.norm:g}"


class SpikeDrivenAttention(nn.Module):
    """``scale·Q·Kᵀ·V`` on binary planes of the integer ``Q``, ``K``, ``V``.

    Linear order (default): ``KV = Σ_{j,l} K_jᵀ·V_l`` (binary × binary: AND and count), then
    ``Y = Σ_i Q_i·KV`` (a binary ``Q_i`` selects rows of ``KV`` to add). Quadratic (official) order:
    ``A = Σ_{i,j} Q_i·K_jᵀ``, ``Y = Σ_l A·V_l``. Finally ``Y·scale/(norm_q·norm_k·norm_v)``.

    Shape:
        q, k ``(..., N, d)``, v ``(..., N, d_v)`` -> ``(..., N, d_v)``.
    """

    def __init__(self, attn: SpikeMatMulAttention, levels: tuple[tuple[int, float], ...]) -> None:
        super().__init__()
        self.scale = attn.scale
        self.order = attn.order
        self.levels = tuple((int(D), float(n)) for D, n in levels)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        (dq, nq), (dk, nk), (dv, nv) = self.levels
        qs = spike_planes(q, dq, nq)  # (Dq, ..., N, d)
        ks = spike_planes(k, dk, nk)  # (Dk, ..., N, d)
        vs = spike_planes(v, dv, nv)  # (Dv, ..., N, d_v)
        if self.order == "linear":
            kv = torch.zeros(
                *k.shape[:-2], k.shape[-1], v.shape[-1], dtype=q.dtype, device=q.device
            )
            for kj in ks:
                for vl in vs:
                    kv = kv + kj.transpose(-2, -1) @ vl  # (..., d, d_v) integer counts
            y = sum(qi @ kv for qi in qs)  # (..., N, d_v)
        else:
            a = sum(qi @ kj.transpose(-2, -1) for qi in qs for kj in ks)  # (..., N, N)
            y = sum(a @ vl for vl in vs)  # (..., N, d_v)
        return y * (self.scale / (nq * nk * nv))

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}, order={self.order}, levels={self.levels}"


def _fold_rep_convs(model: nn.Module) -> int:
    """Fold every Large ``RepConv1d`` (conv+BN -> conv+BN, linear) into one 1×1 ``Conv1d`` + bias
    (eval-mode BN statistics). Returns the number folded."""
    from sdt3_event.layers.sdt3_large_blocks import RepConv1d

    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, RepConv1d)]
    for name, rep in targets:
        (c1, bn1), (c2, bn2) = rep.conv1, rep.conv2

        def affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
            g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            return g, bn.bias - bn.running_mean * g

        g1, b1 = affine(bn1)
        g2, b2 = affine(bn2)
        w1 = c1.weight[:, :, 0] * g1[:, None]  # (hidden, cin)
        w2 = c2.weight[:, :, 0] * g2[:, None]  # (cout, hidden)
        folded = nn.Conv1d(c1.in_channels, c2.out_channels, 1, bias=True)
        folded = folded.to(device=c1.weight.device, dtype=c1.weight.dtype)
        with torch.no_grad():
            folded.weight.copy_((w2 @ w1)[:, :, None])  # (cout, cin, 1)
            folded.bias.copy_(w2 @ b1 + b2)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, folded)
    return len(targets)


def _levels(model: nn.Module, neuron: str) -> tuple[int, float]:
    m = model.get_submodule(neuron)
    assert isinstance(m, MultiSpike)
    return m.D, m.norm


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


@torch.no_grad()
def to_spike_driven(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """A spike-driven executor of ``model`` (a converted deep copy, in eval mode).

    Args:
        model: a trained integer-activation model (any SDT-V3 classifier).
        example: an input used once to trace which op consumes which neuron; default a small
            random event batch (:func:`~sdt3_event.spikes.graph.default_example`).

    Returns:
        The executor; ``executor.spike_graph`` is the traced :class:`SpikeGraph` and
        ``executor.mac_layers`` the ops that still multiply real values.

    Raises:
        ValueError: a neuron output that does not feed a linear op directly.
    """
    executor = copy.deepcopy(model).eval()
    _fold_rep_convs(executor)
    graph: SpikeGraph = trace_spike_graph(executor, example)
    for op_name, neuron in graph.spike_fed.items():
        op = executor.get_submodule(op_name)
        _replace(executor, op_name, SpikeDrivenLinear(op, *_levels(executor, neuron)))
    for attn_name, neurons in graph.attention.items():
        attn = executor.get_submodule(attn_name)
        levels = tuple(_levels(executor, n) for n in neurons)
        _replace(executor, attn_name, SpikeDrivenAttention(attn, levels))
    executor.spike_graph = graph
    executor.mac_layers = list(graph.dense)
    return executor
