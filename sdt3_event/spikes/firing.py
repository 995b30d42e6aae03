"""Firing statistics of spiking models: per-neuron mean spike counts and spike-level histograms.

:class:`FiringRecorder` hooks every :class:`~sdt3_event.layers.neurons.MultiSpike` neuron (any
subclass) and accumulates, over all calls while it is active, the integer spike counts
``a = round(output · norm)`` in ``0..D``. It normalises by the actual number of elements seen (the
official ``firing_num_dvs.py`` divides by a hard-coded batch count, spec §7 #20).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.spikes._hooks import ForwardHooks


@dataclass
class NeuronStats:
    """Accumulated statistics of one neuron module.

    Attributes:
        D: spike levels.
        numel: neuron-time-step elements seen.
        count_sum: sum of the integer spike counts.
        nonzero: elements with at least one spike.
        levels: elements at each level ``0..D``.
    """

    D: int
    numel: int = 0
    count_sum: float = 0.0
    nonzero: int = 0
    levels: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Mean integer spike count per neuron and time step (the firing rate, in spikes)."""
        return self.count_sum / self.numel if self.numel else 0.0

    @property
    def nonzero_rate(self) -> float:
        """Fraction of neuron-time-steps that fire at all."""
        return self.nonzero / self.numel if self.numel else 0.0

    @property
    def level_fractions(self) -> list[float]:
        return [n / self.numel if self.numel else 0.0 for n in self.levels]


def stage_of(name: str) -> str:
    """Stage key of a module name: its top-level attribute (``block3.2.attn.q_spike`` -> ``block3``)."""
    return name.split(".", 1)[0]


class FiringRecorder(ForwardHooks):
    """Context manager recording firing statistics of every neuron in ``model``.

    Example::

        with FiringRecorder(model) as rec:
            model(frames)
        rec.rates()        # {"ConvBlock1_1.0.Conv.spike1": 0.21, ...}
        rec.stage_rates()  # {"ConvBlock1_1": 0.18, "block3": 0.05, ...}

    Shape:
        any neuron output shape; statistics are over all its elements.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.stats: dict[str, NeuronStats] = {}

    def attach(self) -> None:
        for name, m in self.model.named_modules():
            if isinstance(m, MultiSpike):
                self.stats.setdefault(name, NeuronStats(D=m.D, levels=[0] * (m.D + 1)))
                self.keep(m.register_forward_hook(self._hook(name, m)))

    def _hook(self, name: str, neuron: MultiSpike):
        def hook(mod, inputs, output):
            with torch.no_grad():
                counts = torch.round(output.detach().float() * neuron.norm).clamp_(0, neuron.D)
                flat = counts.reshape(-1).to(torch.int64)  # (numel,)
                st = self.stats[name]
                st.numel += flat.numel()
                st.count_sum += float(flat.sum())
                st.nonzero += int((flat > 0).sum())
                hist = torch.bincount(flat, minlength=neuron.D + 1).tolist()
                st.levels = [a + b for a, b in zip(st.levels, hist, strict=True)]

        return hook

    def reset(self) -> None:
        for st in self.stats.values():
            st.numel, st.count_sum, st.nonzero = 0, 0.0, 0
            st.levels = [0] * (st.D + 1)

    def rates(self) -> dict[str, float]:
        """Per neuron: mean integer spike count per element and time step."""
        return {n: st.rate for n, st in self.stats.items()}

    def stage_rates(self) -> dict[str, float]:
        """Per stage (top-level module): element-weighted mean spike count."""
        acc: dict[str, list[float]] = {}
        for n, st in self.stats.items():
            a = acc.setdefault(stage_of(n), [0.0, 0.0])
            a[0] += st.count_sum
            a[1] += st.numel
        return {k: (s / n if n else 0.0) for k, (s, n) in acc.items()}

    def level_histogram(self) -> list[float]:
        """Fraction of all neuron-time-steps at each spike level ``0..max D``."""
        D = max((st.D for st in self.stats.values()), default=0)
        total = [0] * (D + 1)
        for st in self.stats.values():
            for i, v in enumerate(st.levels):
                total[i] += v
        n = sum(total)
        return [v / n if n else 0.0 for v in total]

    def overall_rate(self) -> float:
        n = sum(st.numel for st in self.stats.values())
        return sum(st.count_sum for st in self.stats.values()) / n if n else 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary: per-layer rate, non-zero rate and level fractions, stage rates."""
        return {
            "overall_rate": self.overall_rate(),
            "level_histogram": self.level_histogram(),
            "stage_rates": self.stage_rates(),
            "layers": {
                n: {
                    "D": st.D,
                    "rate": st.rate,
                    "nonzero_rate": st.nonzero_rate,
                    "levels": st.level_fractions,
                    "numel": st.numel,
                }
                for n, st in self.stats.items()
            },
        }
