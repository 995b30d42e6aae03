"""Synaptic operations and energy per inference, by the spiking-transformer papers' convention.

Convention (stated in every report, :data:`CONVENTION`)::

    E = E_MAC · MACs(real-valued layers) + E_AC · SOPs
    E_MAC = 4.6 pJ, E_AC = 0.9 pJ (32-bit float ops, 45 nm CMOS; Horowitz, ISSCC 2014)

The papers count the first (encoding) layer as MAC operations ("FLOPs" = multiply-accumulates) and
every spike-fed layer as synaptic accumulates. The Large models' main head sees non-spiked features
(spec §2.5, §7 #11); it is counted as MACs too, and listed.

SOPs are counted exactly from the integer spike counts ``a ∈ 0..D`` that each op receives (one
accumulate per spike per synapse, i.e. per unit of ``a``, as in the spike-driven executor):

* conv / linear: ``Σ_outputs Σ_synapses a`` (zero padding contributes nothing), which equals
  ``mean(a) × MACs`` away from borders;
* attention, linear order ``Q·(Kᵀ·V)``: ``Σ_n (Σ_i a_K[n,i])(Σ_j a_V[n,j])`` for ``Kᵀ·V`` plus
  ``d_v · Σ a_Q`` for ``Q·(KV)``; quadratic order ``(Q·Kᵀ)·V``: ``Σ_i (Σ_n a_Q[n,i])(Σ_m a_K[m,i])``
  plus ``N · Σ a_V``.

All numbers are per sample (all ``T`` time steps included): totals divided by the batch size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.layers.snn import reset_net
from sdt3_event.spikes._hooks import ForwardHooks
from sdt3_event.spikes.firing import FiringRecorder
from sdt3_event.spikes.graph import LINEAR_TYPES, SpikeGraph, trace_spike_graph

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
CONVENTION = (
    "E = E_MAC x MACs(real-valued layers: the encoding layer, plus any head fed non-spiked "
    "features) + E_AC x SOPs(spike-fed layers and attention products), E_MAC = 4.6 pJ, "
    "E_AC = 0.9 pJ (45 nm, 32-bit float; Horowitz 2014), as in the Spike-Driven Transformer papers. "
    "SOPs are counted exactly from the integer spike counts (one accumulate per spike per synapse); "
    "per sample, all T time steps included."
)


@dataclass
class LayerOps:
    """Operation counts of one op, summed over the batches seen (divide by ``samples``)."""

    name: str
    kind: str  # "mac" | "ac" | "attention"
    macs: float = 0.0
    sops: float = 0.0
    input_count_sum: float = 0.0
    input_numel: int = 0

    @property
    def input_rate(self) -> float | None:
        """Mean integer spike count of the op's input (None for MAC layers)."""
        if self.kind == "mac" or not self.input_numel:
            return None
        return self.input_count_sum / self.input_numel


def _synapse_sum(op: nn.Module, a: torch.Tensor) -> float:
    """``Σ_outputs Σ_synapses a`` for a conv / linear receiving counts ``a``."""
    if isinstance(op, nn.Linear):
        return float(a.sum()) * op.out_features
    # Summing over the output channels of a group gives (out/groups) x the synapse sum of an
    # all-ones kernel over every input channel.
    ones = torch.ones(1, a.shape[1], *op.weight.shape[2:], dtype=a.dtype, device=a.device)
    if isinstance(op, nn.Conv2d):
        taps = F.conv2d(a, ones, None, op.stride, op.padding, op.dilation)  # (B, 1, H', W')
    else:
        taps = F.conv1d(a, ones, None, op.stride, op.padding, op.dilation)  # (B, 1, L')
    return float(taps.sum()) * (op.out_channels // op.groups)


def _macs(op: nn.Module, output: torch.Tensor) -> float:
    """Dense multiply-accumulates of one call: output elements × synapses per output."""
    if isinstance(op, nn.Linear):
        return float(output.numel()) * op.in_features
    return float(output.numel()) * float(op.weight[0].numel())


class OpCounter(ForwardHooks):
    """Context manager counting MACs and SOPs of a model's ops while it runs.

    Args:
        model: the integer model (not the executor; counts are identical and it is faster).
        graph: from :func:`trace_spike_graph`; traced on the first batch when ``None``.
    """

    def __init__(self, model: nn.Module, graph: SpikeGraph) -> None:
        self.model = model
        self.graph = graph
        self.layers: dict[str, LayerOps] = {}
        self.samples = 0
        self._levels: dict[str, tuple[int, float]] = {
            n: (m.D, m.norm) for n, m in model.named_modules() if isinstance(m, MultiSpike)
        }

    def _counts(self, neuron: str, x: torch.Tensor) -> torch.Tensor:
        D, norm = self._levels[neuron]
        return torch.round(x.detach().double() * norm).clamp_(0, D)

    def attach(self) -> None:
        g = self.graph
        for name, m in self.model.named_modules():
            if isinstance(m, LINEAR_TYPES) and (name in g.spike_fed or name in g.dense):
                kind = "ac" if name in g.spike_fed else "mac"
                self.layers[name] = LayerOps(name, kind)
                self.keep(m.register_forward_hook(self._linear_hook(name, m)))
            elif isinstance(m, SpikeMatMulAttention) and name in g.attention:
                self.layers[name] = LayerOps(name, "attention")
                self.keep(m.register_forward_hook(self._attention_hook(name, m)))

    def _linear_hook(self, name: str, op: nn.Module):
        def hook(mod, inputs, output):
            rec = self.layers[name]
            rec.macs += _macs(op, output)
            if rec.kind == "ac":
                a = self._counts(self.graph.spike_fed[name], inputs[0])
                rec.sops += _synapse_sum(op, a)
                rec.input_count_sum += float(a.sum())
                rec.input_numel += a.numel()

        return hook

    def _attention_hook(self, name: str, attn: SpikeMatMulAttention):
        def hook(mod, inputs, output):
            rec = self.layers[name]
            nq, nk, nv = self.graph.attention[name]
            q, k, v = (self._counts(n, t) for n, t in zip((nq, nk, nv), inputs[:3], strict=True))
            N, d, dv = q.shape[-2], q.shape[-1], v.shape[-1]
            heads = q[..., 0, 0].numel()  # T·B·h
            if attn.order == "linear":
                rec.macs += 2.0 * heads * N * d * dv
                kv = (k.sum(-1) * v.sum(-1)).sum()  # Σ_n (Σ_i k)(Σ_j v)
                rec.sops += float(kv) + dv * float(q.sum())
            else:
                rec.macs += heads * N * N * (d + dv)
                qk = (q.sum(-2) * k.sum(-2)).sum()  # Σ_i (Σ_n q)(Σ_m k)
                rec.sops += float(qk) + N * float(v.sum())
            for t in (q, k, v):
                rec.input_count_sum += float(t.sum())
                rec.input_numel += t.numel()

        return hook


@dataclass
class EnergyReport:
    """Per-sample operation counts, energy and firing statistics.

    Attributes:
        samples: samples measured.
        layers: per op: ``name, kind, macs, sops, input_rate`` (per sample).
        mac_ops: MACs of the real-valued layers; sops: synaptic operations.
        ann_macs: the ops of the same network run densely as an ANN (every op a MAC).
        firing: :meth:`FiringRecorder.to_dict`.
        convention, e_mac_pj, e_ac_pj: the energy per MAC and per AC the energies are priced at.

    The energies (``energy_mac_pj``, ``energy_ac_pj``, their total ``energy_pj`` and
    ``ann_energy_pj``) are properties: the counts priced by the convention.
    """

    samples: int
    layers: list[dict[str, Any]]
    mac_ops: float
    sops: float
    ann_macs: float
    firing: dict[str, Any] = field(default_factory=dict)
    convention: str = CONVENTION
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ

    @property
    def energy_mac_pj(self) -> float:
        return self.mac_ops * self.e_mac_pj

    @property
    def energy_ac_pj(self) -> float:
        return self.sops * self.e_ac_pj

    @property
    def energy_pj(self) -> float:
        return self.energy_mac_pj + self.energy_ac_pj

    @property
    def ann_energy_pj(self) -> float:
        return self.ann_macs * self.e_mac_pj

    @property
    def energy_mj(self) -> float:
        return self.energy_pj * 1e-9

    def to_dict(self) -> dict[str, Any]:
        return {
            "convention": self.convention,
            "e_mac_pj": self.e_mac_pj,
            "e_ac_pj": self.e_ac_pj,
            "samples": self.samples,
            "mac_ops": self.mac_ops,
            "sops": self.sops,
            "energy_mac_pj": self.energy_mac_pj,
            "energy_ac_pj": self.energy_ac_pj,
            "energy_pj": self.energy_pj,
            "energy_mj": self.energy_mj,
            "ann_macs": self.ann_macs,
            "ann_energy_pj": self.ann_energy_pj,
            "layers": self.layers,
            "firing": self.firing,
        }


def energy_from_counts(
    layers: Iterable[LayerOps],
    samples: int,
    firing: dict[str, Any] | None = None,
    e_mac_pj: float = E_MAC_PJ,
    e_ac_pj: float = E_AC_PJ,
) -> EnergyReport:
    """Apply the convention to accumulated :class:`LayerOps` (totals over ``samples``)."""
    if samples <= 0:
        raise ValueError("no samples were measured")
    rows = []
    mac_ops = sops = ann = 0.0
    for rec in layers:
        macs, s = rec.macs / samples, rec.sops / samples
        ann += macs
        if rec.kind == "mac":
            mac_ops += macs
            s = 0.0
        else:
            sops += s
        rows.append(
            {
                "name": rec.name,
                "kind": rec.kind,
                "macs": macs,
                "sops": s,
                "input_rate": rec.input_rate,
                "energy_pj": macs * e_mac_pj if rec.kind == "mac" else s * e_ac_pj,
            }
        )
    return EnergyReport(
        samples=samples,
        layers=rows,
        mac_ops=mac_ops,
        sops=sops,
        ann_macs=ann,
        firing=firing or {},
        e_mac_pj=e_mac_pj,
        e_ac_pj=e_ac_pj,
    )


@torch.no_grad()
def estimate_energy(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    graph: SpikeGraph | None = None,
    max_batches: int | None = None,
) -> EnergyReport:
    """Run ``model`` (eval mode) over ``batches`` and report ops, energy and firing per sample.

    Args:
        model: an integer-activation SDT model.
        batches: input tensors ``(B, T, P, H, W)`` (or ``(frames, label)`` pairs).
        graph: the traced spike graph; traced on the first batch when ``None``.
        max_batches: stop after this many batches.

    Raises:
        ValueError: no batches.
    """
    was_training = model.training
    model.eval()
    counter = recorder = None
    samples = 0
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x.to(next(model.parameters()).device).float()
            if counter is None:
                graph = graph or trace_spike_graph(model, x[:2])
                counter = OpCounter(model, graph).__enter__()
                recorder = FiringRecorder(model).__enter__()
            model(x)
            reset_net(model)
            samples += x.shape[0]
    finally:
        if counter is not None:
            counter.__exit__(None, None, None)
            recorder.__exit__(None, None, None)
        model.train(was_training)
    if counter is None:
        raise ValueError("no input batches were given")
    return energy_from_counts(counter.layers.values(), samples, recorder.to_dict())
