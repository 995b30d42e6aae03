"""Spiking neurons of the SDT-V3 family.

Two neurons, both emitting integer spike counts ``0..D`` divided by ``norm``:

* :class:`MultiSpike` -- the Spike Firing Approximation (SFA) quantiser of SDT-V3,
  ``y = round(clamp(u, 0, D)) / norm`` with a straight-through gradient inside ``[0, D]``. It is
  stateless and identical to what the official Base, Large and DVS models compute (the DVS
  ``Q_IFNode`` is reset after every call, so it reduces to this quantiser, spec §2.3).
* :class:`TemporalIF` -- an optional multi-step integrate-and-fire neuron for event input: the
  membrane carries over the ``T`` frames of one sample (``v <- v + x_t``; ``s_t = round(clamp(v, 0,
  D))``; soft reset ``v <- v - s_t``). It is built on spikingjelly 2.0's I-LIF operator (an integer
  LIF with decay ``1 - 1/tau``; with ``tau = 1e30`` the decay is exactly 1.0 in float32, i.e. IF).

Both keep ``D`` and ``norm`` as plain attributes: a spike-driven executor expands an integer count
``a`` into ``a`` unit events over ``D`` virtual steps, which is exact because every neuron output
feeds a conv/linear or the attention product directly.

Backends of :class:`TemporalIF` (spikingjelly 2.0 has no ``backend=`` argument on its neurons; its
registered operators dispatch on the input device, and on CUDA pick their implementation from the
environment variable ``SJ_ILIF_CUDA_IMPLEMENTATION`` = ``auto|cuda|triton|torch``, read once when
``spikingjelly._ops.ilif`` is first imported):

* ``"torch"``: a plain PyTorch loop in this module (any device, any rounding mode).
* ``"auto"``: spikingjelly's registered I-LIF operator (its CPU kernel on CPU; on CUDA its native
  CUDA kernel, else Triton, else torch).
* ``"cuda"`` / ``"triton"``: force that spikingjelly CUDA implementation (CUDA input only).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from sdt3_event.layers.snn import check_backend, configure_snn

logger = logging.getLogger(__name__)

ROUNDING_MODES = ("half_even", "half_up")
NEURON_KINDS = ("quant", "temporal_if")

# 1 - 1/tau rounds to exactly 1.0 in float32 for this tau: the I-LIF operator becomes an IF neuron.
_IF_TAU = 1e30
_SJ_ENV = "SJ_ILIF_CUDA_IMPLEMENTATION"


class _QuantSTE(torch.autograd.Function):
    """``round(clamp(u, 0, D))`` with a rectangular straight-through gradient."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, D: float, half_up: bool, inclusive: bool) -> torch.Tensor:
        if ctx.needs_input_grad[0]:
            window = (u >= 0) & (u <= D) if inclusive else (u > 0) & (u < D)
            ctx.save_for_backward(window)
        clamped = torch.clamp(u, 0, D)
        return torch.floor(clamped + 0.5) if half_up else torch.round(clamped)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (window,) = ctx.saved_tensors
        return grad_out * window.to(grad_out.dtype), None, None, None


def quantize(
    u: torch.Tensor, D: int, rounding: str = "half_even", inclusive: bool = True
) -> torch.Tensor:
    """Integer spike counts ``round(clamp(u, 0, D))`` with the STE gradient (not divided by norm).

    Without autograd (inference), and while exporting to ONNX, it is the plain ops (Clip, Round or
    Floor(x + 0.5)); ONNX ``Round`` rounds half to even, as ``torch.round``.
    """
    if torch.onnx.is_in_onnx_export() or not (u.requires_grad and torch.is_grad_enabled()):
        clamped = torch.clamp(u, 0, D)
        return torch.floor(clamped + 0.5) if rounding == "half_up" else torch.round(clamped)
    return _QuantSTE.apply(u, float(D), rounding == "half_up", inclusive)


def spike_stats(counts: torch.Tensor, D: int) -> dict[str, Any]:
    """Statistics of integer spike counts (no gradient).

    Returns:
        ``{"mean": mean count per element, "nonzero": fraction of elements > 0, "numel": n,
        "levels": list of the fraction of elements at each level 0..D}``.
    """
    with torch.no_grad():
        c = counts.detach().reshape(-1)  # [numel]
        n = c.numel()
        if n == 0:
            return {"mean": 0.0, "nonzero": 0.0, "numel": 0, "levels": [0.0] * (D + 1)}
        levels = torch.bincount(c.round().clamp(0, D).to(torch.int64), minlength=D + 1)
        return {
            "mean": float(c.float().mean()),
            "nonzero": float((c > 0).float().mean()),
            "numel": n,
            "levels": (levels.float() / n).tolist(),
        }


class MultiSpike(nn.Module):
    """Spike Firing Approximation neuron: ``round(clamp(u, 0, D)) / norm``.

    Args:
        D: maximum integer spike count per time step (clamp upper bound).
        norm: divisor of the output; ``None`` means ``D`` (outputs in [0, 1]). The classifier neuron of
            every V3 model uses ``norm=1`` and the HARDVS model uses ``norm=1`` throughout.
        rounding: ``"half_even"`` (``torch.round``; Base and DVS) or ``"half_up"``
            (``floor(x + 0.5)``; Large).
        inclusive: whether the STE window includes its ends (``[0, D]``: Base/DVS; ``(0, D)``: Large).

    Attributes:
        D, norm: read by the spike-driven executor.
        record_stats: when True (off by default), each forward stores :func:`spike_stats` of the
            integer counts in ``last_stats``. Firing recorders may equally use forward hooks and
            recover counts as ``output * norm``.

    Shape:
        Any shape; output has the input's shape and dtype.

    Raises:
        ValueError: if ``D < 1``, ``norm <= 0`` or ``rounding`` is unknown.
    """

    def __init__(
        self,
        D: int = 4,
        norm: float | None = None,
        rounding: str = "half_even",
        inclusive: bool = True,
    ) -> None:
        super().__init__()
        if int(D) != D or D < 1:
            raise ValueError(f"D must be an integer >= 1, got {D!r}")
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
        norm = float(D) if norm is None else float(norm)
        if norm <= 0:
            raise ValueError(f"norm must be > 0, got {norm}")
        self.D = int(D)
        self.norm = norm
        self.rounding = rounding
        self.inclusive = bool(inclusive)
        self.record_stats = False
        self.last_stats: dict[str, Any] | None = None

    def counts(self, u: torch.Tensor) -> torch.Tensor:
        """Integer spike counts (0..D) of input ``u``, with the STE gradient."""
        return quantize(u, self.D, self.rounding, self.inclusive)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        s = self.counts(u)
        if self.record_stats:
            self.last_stats = spike_stats(s, self.D)
        return s if self.norm == 1.0 else s / self.norm

    def reset(self) -> None:
        """Stateless: only clears the recorded statistics."""
        self.last_stats = None

    def extra_repr(self) -> str:
        return (
            f"D={self.D}, norm={self.norm:g}, rounding={self.rounding}, inclusive={self.inclusive}"
        )


def _spikingjelly_ilif(backend: str):
    """Import spikingjelly's I-LIF functional, selecting its CUDA implementation first."""
    requested = {"auto": "auto", "cuda": "cuda", "triton": "triton"}[backend]
    module = "spikingjelly._ops.ilif"
    if module not in sys.modules:
        current = os.environ.get(_SJ_ENV)
        if current is not None and current != requested:
            raise RuntimeError(
                f"{_SJ_ENV}={current!r} is set in the environment but backend={backend!r} was "
                "requested; unset the variable or choose the matching backend"
            )
        os.environ[_SJ_ENV] = requested
    try:
        from spikingjelly._ops import ilif as _ilif_ops
        from spikingjelly.activation_based import functional, surrogate
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "TemporalIF with a spikingjelly backend needs spikingjelly 2.0: "
            "pip install 'sdt3-event[spikingjelly]' (installed with --no-deps, see scripts/install.sh)"
        ) from exc
    active = getattr(getattr(_ilif_ops, "_selection", None), "_requested", requested)
    if active != requested:
        raise RuntimeError(
            f"spikingjelly already selected {active!r} for I-LIF in this process, cannot switch to "
            f"{backend!r}; set {_SJ_ENV}={requested} before starting Python"
        )
    return functional.ilif_multi_step, surrogate.MultiLevelSpikeCount


class TemporalIF(MultiSpike):
    """Multi-step integrate-and-fire neuron with integer spikes and soft reset.

    For each sample the membrane starts at 0 and integrates the ``T`` frames in order:
    ``h_t = v_{t-1} + x_t``; ``s_t = round(clamp(h_t, 0, D))``; ``v_t = h_t - s_t``; output
    ``s_t / norm``. The gradient of ``s_t`` w.r.t. ``h_t`` is the STE window of :class:`MultiSpike`;
    the reset is not detached (as in the official ``Q_IFNode``). Every call starts from ``v = 0``,
    so no membrane leaks between samples or batches.

    Args:
        D, norm, rounding, inclusive: as :class:`MultiSpike`.
        backend: ``"torch"`` | ``"auto"`` | ``"cuda"`` | ``"triton"`` (see the module docstring).
            The spikingjelly backends implement half-even rounding with an inclusive window only.

    Shape:
        Input ``(T, B, ...)`` time-major; output the same shape.

    Raises:
        ValueError: unknown backend, or a spikingjelly backend with half-up rounding or an exclusive
            window; a 0-d or 1-d input (no batch dimension).
    """

    def __init__(self, *args: Any, backend: str = "torch", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # D, norm, rounding, inclusive
        self.set_backend(backend)

    def check_backend(self, backend: str) -> None:
        """Raise ValueError unless this neuron (its rounding and window) can run on ``backend``."""
        check_backend(backend)
        if backend != "torch" and (self.rounding != "half_even" or not self.inclusive):
            raise ValueError(
                f"backend {backend!r} (spikingjelly I-LIF) supports rounding='half_even' with an "
                "inclusive window only; use backend='torch'"
            )

    def set_backend(self, backend: str) -> None:
        """Switch to ``backend`` (see the module docstring); used by ``configure_snn``."""
        self.check_backend(backend)
        self.backend = backend

    def counts(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() < 2:
            raise ValueError(
                f"TemporalIF expects a time-major (T, B, ...) tensor, got {tuple(u.shape)}"
            )
        if self.backend == "torch":
            return self._counts_torch(u)
        return self._counts_spikingjelly(u)

    def _counts_torch(self, u: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export() and not (u.requires_grad and torch.is_grad_enabled()):
            return self._counts_inference(u)
        v = torch.zeros_like(u[0])
        out = []
        for x_t in u:  # x_t: (B, ...)
            h = v + x_t
            s = quantize(h, self.D, self.rounding, self.inclusive)
            v = h - s
            out.append(s)
        return torch.stack(out)  # (T, B, ...)

    def _counts_inference(self, u: torch.Tensor) -> torch.Tensor:
        """The same arithmetic without autograd, in place: two buffers and the output, no
        per-step allocation or final stack (the live path's forward is ~15 % faster on CPU)."""
        out = torch.empty_like(u)
        v = torch.zeros_like(u[0])
        h = torch.empty_like(v)
        for t in range(u.shape[0]):
            torch.add(v, u[t], out=h)  # h = v + x_t
            s = torch.clamp(h, 0, self.D, out=out[t])
            if self.rounding == "half_up":
                s.add_(0.5).floor_()
            else:
                s.round_()
            torch.sub(h, s, out=v)  # v = h - s
        return out

    def _counts_spikingjelly(self, u: torch.Tensor) -> torch.Tensor:
        if self.backend in ("cuda", "triton") and not u.is_cuda:
            raise ValueError(f"backend {self.backend!r} needs a CUDA tensor, got device {u.device}")
        ilif_multi_step, spike_count = _spikingjelly_ilif(self.backend)
        v0 = torch.zeros(u.shape[1:], dtype=torch.float32, device=u.device)
        s, _, _ = ilif_multi_step(u, v0, _IF_TAU, 1.0, spike_count(self.D), False, False)
        return s

    def extra_repr(self) -> str:
        return super().extra_repr() + f", backend={self.backend}"


def make_neuron(
    kind: str = "quant",
    D: int = 4,
    norm: float | None = None,
    rounding: str = "half_even",
    inclusive: bool = True,
    backend: str = "torch",
) -> MultiSpike:
    """Build the neuron a model was configured with (``kind`` = ``"quant"`` | ``"temporal_if"``).

    Raises:
        ValueError: unknown ``kind`` (or invalid neuron arguments).
    """
    if kind == "quant":
        return MultiSpike(D=D, norm=norm, rounding=rounding, inclusive=inclusive)
    if kind == "temporal_if":
        return TemporalIF(D=D, norm=norm, rounding=rounding, inclusive=inclusive, backend=backend)
    raise ValueError(f"neuron must be one of {NEURON_KINDS}, got {kind!r}")


def neuron_factory(**settings: Any) -> Callable[..., MultiSpike]:
    """A picklable factory of fresh neurons of one configuration (the ``neuron`` argument of the
    V3 blocks): :func:`make_neuron` with ``settings``, which a call's keywords override
    (``factory(norm=1.0)`` for a head neuron).

    Raises:
        ValueError: invalid neuron arguments (checked once, here).
    """
    make_neuron(**settings)
    return functools.partial(make_neuron, **settings)


def set_temporal_backend(model: nn.Module, backend: str) -> int:
    """Deprecated alias of ``configure_snn(model, backend=backend)``; returns how many
    :class:`TemporalIF` neurons there are (the model is left as it was when there are none).

    Raises:
        ValueError: unknown backend, or one a neuron's rounding/window cannot use.
    """
    n = sum(isinstance(m, TemporalIF) for m in model.modules())
    if n:
        configure_snn(model, backend=backend)
    return n
