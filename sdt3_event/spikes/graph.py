"""Which linear operation consumes which neuron's spikes: found by tracing one forward pass.

Spike-driven execution and energy accounting both need to know, for every conv / linear / attention
product, whether its input is a neuron's output (integer spike counts ``a / norm``, ``a`` in
``0..D``) or a real value (the encoding stem, the Large model's main head). Instead of hard-coding
each architecture, :func:`trace_spike_graph` runs one forward pass with hooks: every neuron output is
remembered by its storage, and every linear op whose input shares a neuron output's storage (the
models only reshape/transposes spikes on the way, which are views) is marked as fed by that neuron.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.layers.snn import reset_net

LINEAR_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass
class SpikeGraph:
    """The result of :func:`trace_spike_graph` (module names as in ``named_modules``).

    Attributes:
        neurons: every neuron, in call order.
        spike_fed: linear op -> the neuron whose output it consumes.
        attention: attention product -> the neurons feeding ``(q, k, v)``.
        dense: linear ops with real-valued input (MAC layers), in call order; the first one is the
            encoding layer.
        consumers: neuron -> the ops consuming its output.
    """

    neurons: list[str] = field(default_factory=list)
    spike_fed: dict[str, str] = field(default_factory=dict)
    attention: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    dense: list[str] = field(default_factory=list)
    consumers: dict[str, list[str]] = field(default_factory=dict)


def default_example(model: nn.Module, size: int = 32, T: int = 1) -> torch.Tensor:
    """A small random event-frame input ``(1·2, T, in_chans, size, size)`` for tracing."""
    in_chans = int(getattr(model, "in_chans", None) or model.model_config.get("in_chans", 2))
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, T, in_chans, size, size, generator=g) * 2.0


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


@torch.no_grad()
def trace_spike_graph(model: nn.Module, example: torch.Tensor | None = None) -> SpikeGraph:
    """Trace one eval-mode forward of ``model`` on ``example`` and map spikes to their consumers.

    Args:
        model: a model built from :class:`~sdt3_event.layers.neurons.MultiSpike` neurons.
        example: an input batch; default :func:`default_example`.

    Raises:
        ValueError: a neuron whose output reaches no linear op directly (the spike-driven
            equivalence would not hold), or a model without neurons.
    """
    example = default_example(model) if example is None else example
    names = {m: n for n, m in model.named_modules()}
    graph = SpikeGraph()
    produced: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # keeps neuron outputs alive so storages are not reused
    handles = []

    def neuron_hook(mod, inputs, output):
        name = names[mod]
        graph.neurons.append(name)
        produced[_storage_key(output)] = name
        keep.append(output)

    def source(t) -> str | None:
        return produced.get(_storage_key(t)) if isinstance(t, torch.Tensor) else None

    def linear_hook(mod, inputs):
        name = names[mod]
        src = source(inputs[0])
        if src is None:
            if name not in graph.dense:
                graph.dense.append(name)
            return
        graph.spike_fed[name] = src
        graph.consumers.setdefault(src, [])
        if name not in graph.consumers[src]:
            graph.consumers[src].append(name)

    def attention_hook(mod, inputs):
        name = names[mod]
        srcs = tuple(source(t) for t in inputs[:3])
        if any(s is None for s in srcs):
            raise ValueError(
                f"attention {name!r} receives a non-spike operand; it cannot run spike-driven"
            )
        graph.attention[name] = srcs  # type: ignore[assignment]
        for s in srcs:
            graph.consumers.setdefault(s, [])
            if name not in graph.consumers[s]:
                graph.consumers[s].append(name)

    for m in model.modules():
        if isinstance(m, MultiSpike):
            handles.append(m.register_forward_hook(neuron_hook))
        elif isinstance(m, LINEAR_TYPES):
            handles.append(m.register_forward_pre_hook(linear_hook))
        elif isinstance(m, SpikeMatMulAttention):
            handles.append(m.register_forward_pre_hook(attention_hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        reset_net(model)
    if not graph.neurons:
        raise ValueError(f"{type(model).__name__} has no MultiSpike neurons to make spike-driven")
    orphans = sorted(set(graph.neurons) - set(graph.consumers))
    if orphans:
        raise ValueError(
            f"the outputs of neurons {orphans} do not feed a conv/linear/attention directly, so "
            "the integer -> binary spike expansion would not be exact"
        )
    return graph
