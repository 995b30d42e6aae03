"""Mixup and CutMix on event frames, with soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(target: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot with label smoothing: ``1 − s + s/K`` on the label, ``s/K`` elsewhere.

    Shape:
        target ``(B,)`` int64 -> ``(B, K)`` float32.
    """
    off = smoothing / num_classes
    return torch.full((target.shape[0], num_classes), off, device=target.device).scatter_(
        1, target[:, None], 1.0 - smoothing + off
    )


class FrameMixer:
    """Mixes a batch with its reverse: mixup (blend) or cutmix (one box for every time bin).

    Draws from torch's global RNG, so a seeded run (and a resumed one) mixes identically.

    Args:
        num_classes: ``K``.
        mixup_alpha: Beta(α, α) for mixup; 0 disables mixup.
        cutmix_alpha: Beta(α, α) for cutmix; 0 disables cutmix. With both on, each batch picks one
            at random (50/50).
        prob: probability that a batch is mixed at all.
        smoothing: label smoothing of the soft targets.

    Shape:
        frames ``(B, T, P, H, W)`` or ``(B, C, H, W)``; target ``(B,)`` -> same frames,
        soft target ``(B, K)``.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        smoothing: float = 0.0,
    ):
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.smoothing = smoothing

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, frames: torch.Tensor, target: torch.Tensor):
        y = soft_targets(target, self.num_classes, self.smoothing)
        if not self.enabled or torch.rand(()).item() >= self.prob:
            return frames, y
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or torch.rand(()).item() < 0.5
        )
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        flipped = frames.flip(0)
        if use_cutmix:
            H, W = frames.shape[-2:]
            cut = (1.0 - lam) ** 0.5
            ch, cw = int(H * cut), int(W * cut)
            cy = int(torch.randint(0, H, ()).item())
            cx = int(torch.randint(0, W, ()).item())
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
            frames = frames.clone()
            frames[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)  # the area actually pasted
        else:
            frames = frames * lam + flipped * (1.0 - lam)
        return frames, y * lam + y.flip(0) * (1.0 - lam)


def soft_cross_entropy(logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``−Σ_k y_k log softmax(logits)_k``.

    Shape:
        logits ``(B, K)``, soft_target ``(B, K)`` -> scalar.
    """
    return torch.sum(-soft_target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
