"""Multi-step LIF neurons of SDT-V1 / Meta-SpikeFormer (V2), built on SpikingJelly 2.0.

The papers used SpikingJelly 0.0.0.0.12 ``MultiStepLIFNode(tau=2, detach_reset=True, backend="cupy")``:
decay_input, hard reset to 0, sigmoid surrogate with alpha 4, threshold 1.0 (0.5 for the attention
neurons). SpikingJelly 2.0 has no ``backend=`` argument and no cupy kernels. Its fused LIF operator
(``functional.lif_multi_step``) runs the torch reference on CPU and, on CUDA, binds one implementation
per process: ``auto`` tries the native CUDA extension, then Triton, then torch; the environment
variable ``SJ_LIF_CUDA_IMPLEMENTATION`` (``auto|cuda|triton|torch``) forces one, and is read once when
SpikingJelly's LIF operator module is first imported.

:class:`MultiStepLIF` exposes that choice as a constructor option, ``backend``:

* ``"auto"``: SpikingJelly's fused operator with its automatic selection (torch on CPU).
* ``"torch"``: SpikingJelly's pure-PyTorch :class:`~spikingjelly.activation_based.neuron.SimpleLIFNode`
  (autograd through the surrogate), on any device. Slow but dependency-free; the reference.
* ``"cuda"`` / ``"triton"``: the fused operator bound to that CUDA implementation. Because the binding
  is process-wide, the first such neuron requests it through ``SJ_LIF_CUDA_IMPLEMENTATION`` (when
  SpikingJelly has not bound one yet) and the first CUDA call checks the binding, raising if another
  one is in force. These backends need CUDA tensors.

Choose the backend once, at the application boundary
(:func:`~sdt3_event.layers.snn.configure_snn` or ``create_model(..., backend="triton")``); model code
never names a backend.

Every call integrates the whole ``[T, ...]`` sequence from a membrane potential of 0 (the official
training loop calls ``reset_net`` after every batch; here the reset is built into each call), so no
state can leak from one batch into the next and the module holds no tensors between calls.
"""

from __future__ import annotations

import logging
import os
import sys

import torch
import torch.nn as nn

from sdt3_event.layers.snn import check_backend, configure_snn

logger = logging.getLogger(__name__)

_SJ_ENV = "SJ_LIF_CUDA_IMPLEMENTATION"
_SJ_LIF_OPS = "spikingjelly._ops.lif"

TAU = 2.0
SURROGATE_ALPHA = 4.0

check_lif_backend = check_backend  # the name the V1/V2 tests know


def _request_cuda_implementation(backend: str) -> None:
    """Ask SpikingJelly to bind ``backend`` for its LIF operator, if nothing is bound yet."""
    requested = os.environ.get(_SJ_ENV)
    if requested not in (None, "", "auto", backend):
        raise ValueError(
            f"LIF backend {backend!r} conflicts with {_SJ_ENV}={requested!r}: SpikingJelly 2.0 binds "
            "one CUDA implementation per process; unset the variable or build with "
            f"backend={requested!r}"
        )
    if _SJ_LIF_OPS not in sys.modules and requested in (None, "", "auto"):
        os.environ[_SJ_ENV] = backend
        logger.info("requested SpikingJelly LIF implementation %r via %s", backend, _SJ_ENV)


def _sigmoid_surrogate() -> nn.Module:
    from spikingjelly.activation_based import surrogate

    return surrogate.Sigmoid(alpha=SURROGATE_ALPHA)


class MultiStepLIF(nn.Module):
    """Multi-step LIF neuron (tau 2, decay_input, hard reset to 0, detached reset, sigmoid(4)).

    Args:
        v_threshold: firing threshold (1.0; 0.5 for the V1 talking-heads / V2 attention neuron).
        backend: ``"auto"``, ``"torch"``, ``"cuda"`` or ``"triton"`` (see the module docstring).

    The dynamics per step, from ``v = 0`` at the start of every call::

        h[t] = v[t-1] + (x[t] - v[t-1]) / tau
        s[t] = heaviside(h[t] - v_threshold)      (gradient: sigmoid'(4 (h - v_threshold)) * 4)
        v[t] = h[t] * (1 - s[t])                  (hard reset to 0; s detached in the reset)

    Shape:
        - Input: ``(T, *)``, time-major, any trailing shape.
        - Output: same shape and dtype, values in {0, 1}.

    Raises:
        ValueError: unknown backend, or an input without a time axis.
        RuntimeError: a ``cuda``/``triton`` neuron called on CPU tensors, or another CUDA
            implementation bound by SpikingJelly.
    """

    def __init__(self, v_threshold: float = 1.0, backend: str = "auto") -> None:
        super().__init__()
        self.v_threshold = float(v_threshold)
        self.surrogate = _sigmoid_surrogate()
        self.set_backend(check_backend(backend))

    def check_backend(self, backend: str) -> None:
        """Raise ValueError unless ``backend`` is a LIF backend (every name in ``BACKENDS`` is)."""
        check_backend(backend)

    def set_backend(self, backend: str) -> None:
        """Switch to ``backend`` (see the module docstring); used by ``configure_snn``."""
        check_backend(backend)
        if backend in ("cuda", "triton"):
            _request_cuda_implementation(backend)
        self.backend = backend
        self._checked_devices: set[int] = set()

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, tau={TAU}, backend={self.backend!r}"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.ndim < 2:
            raise ValueError(
                f"MultiStepLIF expects a time-major tensor (T, ...) with T first; got shape "
                f"{tuple(x_seq.shape)}"
            )
        if self.backend == "torch":
            return self._forward_torch(x_seq)
        if self.backend != "auto":
            self._check_binding(x_seq.device)
        from spikingjelly.activation_based.functional import lif_multi_step

        v0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
        spikes, _, _ = lif_multi_step(
            x_seq,
            v0,
            TAU,
            True,  # decay_input
            self.v_threshold,
            0.0,  # hard reset to 0
            self.surrogate,
            True,  # detach_reset
        )
        return spikes

    def _forward_torch(self, x_seq: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based.neuron import SimpleLIFNode

        node = SimpleLIFNode(
            tau=TAU,
            decay_input=True,
            v_threshold=self.v_threshold,
            v_reset=0.0,
            surrogate_function=self.surrogate,
            detach_reset=True,
            step_mode="m",
        )
        return node(x_seq)  # a fresh node per call: the membrane starts at 0

    def _check_binding(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise RuntimeError(
                f"LIF backend {self.backend!r} runs on CUDA tensors only, got a {device.type} "
                "tensor; build the model with backend='auto' (torch on CPU) or move it to CUDA"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index in self._checked_devices:
            return
        from spikingjelly.activation_based.functional import neuron_implementation

        bound = neuron_implementation("lif", torch.device("cuda", index))["implementation"]
        if bound != self.backend:
            raise RuntimeError(
                f"LIF backend {self.backend!r} requested, but SpikingJelly bound {bound!r} on "
                f"cuda:{index}; set {_SJ_ENV}={self.backend} before the first CUDA call (it is "
                "read once per process), or build with backend='auto'"
            )
        self._checked_devices.add(index)


def set_lif_backend(model: nn.Module, backend: str) -> nn.Module:
    """Deprecated alias of ``configure_snn(model, backend=backend)``; returns ``model``."""
    return configure_snn(model, backend=backend)
