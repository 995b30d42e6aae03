"""The one SNN configuration point: ``configure_snn`` and ``reset_net``, as SpikingJelly's
``set_backend`` / ``reset_net``.

Model constructors take no backend: a model is built with every neuron on its default backend and
the attention in its default order, and the application chooses once, at its boundary::

    model = create_model("sdt3_micro", neuron="temporal_if")
    configure_snn(model, backend="triton", attention_order="quadratic")

(``create_model(..., backend=...)`` does the same right after building, so a checkpoint whose
``model_config`` records a backend rebuilds with it.)

The module names no neuron class: a neuron takes part through ``check_backend(name)`` (raise if it
cannot run on ``name``) and ``set_backend(name)``; an attention product through ``set_order(name)``.
Everything is validated before anything is switched, so a model is never left half configured.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

BACKENDS: tuple[str, ...] = ("auto", "torch", "cuda", "triton")
ATTENTION_ORDERS: tuple[str, ...] = ("linear", "quadratic")


def check_backend(backend: str) -> str:
    """Validate a neuron backend name and return it.

    Raises:
        ValueError: for an unknown name (``cupy`` included: SpikingJelly 2.0 has none); the message
            lists the valid ones.
    """
    if backend == "cupy":
        raise ValueError(
            "backend 'cupy' does not exist in SpikingJelly 2.0 (the papers used 0.0.0.0.12); "
            "use 'cuda' (native CUDA kernels), 'triton', 'torch', or 'auto'"
        )
    if backend not in BACKENDS:
        raise ValueError(f"unknown neuron backend {backend!r}; choose one of {BACKENDS}")
    return backend


def check_attention_order(order: str) -> str:
    """Validate an attention order name and return it.

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
    """
    if order not in ATTENTION_ORDERS:
        raise ValueError(f"order must be one of {ATTENTION_ORDERS}, got {order!r}")
    return order


def configure_snn(
    model: nn.Module, *, backend: str | None = None, attention_order: str | None = None
) -> nn.Module:
    """Choose the neuron backend and the attention order of every module in ``model``.

    Args:
        model: any module; neurons are the submodules with ``set_backend``, attention products the
            ones with ``set_order``.
        backend: ``"auto"``, ``"torch"``, ``"cuda"`` or ``"triton"`` (None keeps each neuron's).
        attention_order: ``"linear"`` or ``"quadratic"`` (None keeps the current one).

    Returns:
        ``model`` itself; its ``model_config["backend"]`` records the backend when it has a
        ``model_config`` dict, so a checkpoint rebuilds with the same choice.

    Raises:
        ValueError: an unknown name, or a backend a neuron cannot use (e.g. a spikingjelly backend
            for a half-up ``TemporalIF``); nothing is switched then.
    """
    modules = list(model.modules())
    neurons = [m for m in modules if callable(getattr(m, "set_backend", None))]
    attentions = [m for m in modules if callable(getattr(m, "set_order", None))]
    if backend is not None:
        check_backend(backend)
        for m in neurons:  # validate all first: never leave a model half switched
            m.check_backend(backend)
    if attention_order is not None:
        check_attention_order(attention_order)
    if backend is not None:
        for m in neurons:
            m.set_backend(backend)
        config: Any = getattr(model, "model_config", None)
        if isinstance(config, dict):
            config["backend"] = backend
    if attention_order is not None:
        for m in attentions:
            m.set_order(attention_order)
    return model


def reset_modules(model: nn.Module) -> None:
    """Call ``reset()`` on every submodule of ``model`` that has one (neuron state, statistics)."""
    for module in model.modules():
        if module is model:
            continue
        reset = getattr(module, "reset", None)
        if callable(reset):
            reset()


def reset_net(model: nn.Module) -> None:
    """Reset the neuron state of ``model`` between samples or batches.

    A model that defines ``reset_state()`` (every registered model, through
    :class:`~sdt3_event.models._builder.SpikingModelMixin`, or a custom one) is reset by it;
    any other module by :func:`reset_modules`. The project's neurons start from rest on every
    call, so this only clears recorded statistics and any stateful module swapped in.
    """
    reset = getattr(model, "reset_state", None)
    if callable(reset):
        reset()
    else:
        reset_modules(model)
