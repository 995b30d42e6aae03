"""Helpers for time-major ``(T, B, ...)`` tensors: stateless layers run on the merged ``T·B`` batch."""

from __future__ import annotations

from collections.abc import Callable

import torch


def flat_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` to ``x`` with time merged into the batch, then split time back out.

    BatchNorm inside ``fn`` therefore shares its statistics over ``T`` and ``B``, as in the official
    DVS model.

    Shape:
        x: ``(T, B, *in)`` -> ``fn`` sees ``(T·B, *in)`` -> output ``(T, B, *out)``.
    """
    T, B = x.shape[:2]
    y = fn(x.flatten(0, 1))  # (T·B, *out)
    return y.reshape(T, B, *y.shape[1:])  # (T, B, *out)
