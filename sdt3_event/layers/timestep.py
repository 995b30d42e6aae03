"""Time-major ``(T, B, ...)`` tensors: model input brought to that layout once (``to_time_major``),
stateless layers run on the merged ``T·B`` batch (``flat_apply``)."""

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


def to_time_major(x: torch.Tensor, T: int, in_chans: int, owner: str) -> torch.Tensor:
    """Bring model input to the time-major float layout ``(T, B, P, H, W)``.

    Event frames are transposed (their own T is used); static images are repeated over the
    model's ``T`` time steps, as the official code does. Integer or boolean counts become float.

    Shape:
        ``(B, T, P, H, W)`` -> ``(T, B, P, H, W)``; ``(B, C, H, W)`` -> ``(T, B, C, H, W)``.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: any other rank or a channel count different from ``in_chans``; the message
            names ``owner`` (the model) and the expected shapes.
    """
    P = in_chans
    expected = f"event frames (B, T, {P}, H, W) or images (B, {P}, H, W)"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner} expects a tensor of {expected}, got {type(x)}")
    if not x.is_floating_point():
        x = x.float()
    if x.dim() == 5 and x.shape[2] == P:
        return x.transpose(0, 1)  # (B, T, P, H, W) -> (T, B, P, H, W)
    if x.dim() == 4 and x.shape[1] == P:
        return x.unsqueeze(0).expand(T, *x.shape)  # (B, C, H, W) -> (T, B, C, H, W)
    raise ValueError(
        f"{owner} expects {expected}, got shape {tuple(x.shape)}; "
        f"the model was built with in_chans={P} (override with create_model(..., in_chans=...))"
    )
