"""Spike-driven execution, firing statistics and energy estimation of integer-activation SDT models."""

from sdt3_event.spikes.energy import (
    CONVENTION,
    E_AC_PJ,
    E_MAC_PJ,
    EnergyReport,
    OpCounter,
    estimate_energy,
)
from sdt3_event.spikes.executor import (
    SpikeDrivenAttention,
    SpikeDrivenLinear,
    spike_planes,
    to_spike_driven,
)
from sdt3_event.spikes.firing import FiringRecorder
from sdt3_event.spikes.graph import SpikeGraph, trace_spike_graph

__all__ = [
    "CONVENTION",
    "E_AC_PJ",
    "E_MAC_PJ",
    "EnergyReport",
    "FiringRecorder",
    "OpCounter",
    "SpikeDrivenAttention",
    "SpikeDrivenLinear",
    "SpikeGraph",
    "estimate_energy",
    "spike_planes",
    "to_spike_driven",
    "trace_spike_graph",
]
