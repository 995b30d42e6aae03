"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEma:
    """Keeps ``ema = decay·ema + (1 − decay)·model`` for every floating state_dict entry.

    BN running statistics are averaged like the weights; integer buffers (``num_batches_tracked``)
    are copied, not averaged (the official DVS EMA float-averages them; see spec §7 #19). The EMA
    copy is built from the unwrapped model, so its keys never carry a DDP ``module.`` prefix.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_state = self.module.state_dict()
        for key, value in model.state_dict().items():
            target = ema_state[key]
            if target.is_floating_point():
                target.lerp_(value.detach().to(target.dtype), 1.0 - self.decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
