"""Helpers for spike tests: V3 classifier names and BN randomisation so neurons fire at all levels."""

from __future__ import annotations

import torch
import torch.nn as nn

# Every V3 classifier (the MAE pre-training models reconstruct pixels and have no logits).
FAST_V3 = ["sdt3_micro", "sdt3_2m", "sdt3_5m", "sdt3_5m_gesture"]
# The big ones keep their stage widths and block types but fewer repeated blocks (the executor
# rewrites each op locally, so one block of each kind proves the rewrite); sdt3_19m_hardvs is full.
SLOW_V3 = [
    ("sdt3_10m", {"depths": (1, 1)}),
    ("sdt3_19m", {"depths": (1, 1)}),
    ("sdt3_19m_hardvs", {}),
    ("sdt3_83m", {"depth": 1}),
    ("sdt3_83m_kd", {"depth": 1}),
    ("sdt3_171m", {"depth": 1}),
    ("sdt3_171m_kd", {"depth": 1}),
]


def excite(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random eval-mode BN statistics/affines and layer scales of 0.5, so that pre-activations
    spread over the whole [0, D] range and every branch contributes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.5 + 0.8)
            for pname, p in mod.named_parameters(recurse=False):
                if pname.startswith("layer_scale"):
                    p.fill_(0.5)
    return model.eval()
