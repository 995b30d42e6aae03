"""The parameter-free attention product of the spike-driven transformers.

SDT-V3 attention has no softmax and no mask, so ``(Q·Kᵀ)·V == Q·(Kᵀ·V)``: the right-hand order
costs ``O(N·d·d_v)`` instead of ``O(N²·d_v)`` and never materialises the ``N×N`` map. The official
Base/DVS code forms ``Q·Kᵀ`` first; :class:`SpikeMatMulAttention` computes the linear order by
default and keeps the official order as ``order="quadratic"`` for benchmarks and equivalence tests.

The module is the single place where spikes meet spikes (a product of two spike tensors), so the
spike-driven executor (:mod:`sdt3_event.spikes`) can swap it for an accumulate-only implementation.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from sdt3_event.layers.snn import ATTENTION_ORDERS, check_attention_order, configure_snn

__all__ = ["ATTENTION_ORDERS", "SpikeMatMulAttention", "set_attention_order"]


class SpikeMatMulAttention(nn.Module):
    """``scale · Q·Kᵀ·V`` in linear (``Q·(Kᵀ·V)``) or official (``(Q·Kᵀ)·V``) order.

    Args:
        scale: multiplier of the product (``2·d^-½`` for Base/DVS, 0.125 for Large).
        order: ``"linear"`` (default) or ``"quadratic"``.

    Shape:
        q, k: ``(..., N, d)``; v: ``(..., N, d_v)``; output ``(..., N, d_v)``.

    Raises:
        ValueError: unknown ``order``.
    """

    def __init__(self, scale: float, order: str = "linear") -> None:
        super().__init__()
        self.scale = float(scale)
        self.set_order(order)

    def set_order(self, order: str) -> None:
        """Switch the product order (``"linear"`` or ``"quadratic"``); used by ``configure_snn``."""
        self.order = check_attention_order(order)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.order == "linear":
            kv = k.transpose(-2, -1) @ v  # (..., d, d_v)
            return (q @ kv) * self.scale  # (..., N, d_v)
        attn = q @ k.transpose(-2, -1)  # (..., N, N)
        return (attn @ v) * self.scale  # (..., N, d_v)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}, order={self.order}"


def set_attention_order(model: nn.Module, order: str) -> int:
    """Deprecated alias of ``configure_snn(model, attention_order=order)``; returns how many
    :class:`SpikeMatMulAttention` modules were switched.

    Raises:
        ValueError: unknown ``order``.
    """
    configure_snn(model, attention_order=order)
    return sum(isinstance(m, SpikeMatMulAttention) for m in model.modules())
