"""Checks the model tests share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch


def outputs_around_reset(model: torch.nn.Module, x: torch.Tensor, other: torch.Tensor):
    """The model's output for ``x`` three times: fresh, after a call on ``other``, and after
    ``reset_state()``. A model that keeps no state between calls gives three equal tensors."""
    with torch.no_grad():
        fresh = model(x)
        model(other)
        again = model(x)
        model.reset_state()
        after_reset = model(x)
    return fresh, again, after_reset
