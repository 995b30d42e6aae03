"""A toy model and in-memory frame data set for engine tests (also used by the DDP worker)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from sdt3_event.engine.config import config_from_dict
from sdt3_event.events.contract import DataContract
from sdt3_event.registry import register_model

T, P, H, W = 2, 2, 4, 4


class ToyNet(nn.Module):
    """Linear classifier on time-averaged frames; counts ``reset_state`` calls."""

    def __init__(self, num_classes: int = 3, in_chans: int = P):
        super().__init__()
        self.model_config = {"num_classes": num_classes, "in_chans": in_chans}
        self.fc = nn.Linear(in_chans * H * W, num_classes)
        self.resets = 0

    def forward(self, x):
        return self.fc(x.mean(1).flatten(1))  # (B, T, P, H, W) -> (B, P*H*W) -> (B, K)

    def reset_state(self):
        self.resets += 1


@register_model(name="_engine_toy")
def _engine_toy(**kw):
    return ToyNet(**kw)


class ToyFrames(Dataset):
    """Class ``c`` lights pixel block ``c``; Gaussian noise on top. Deterministic per seed."""

    def __init__(
        self, n: int, num_classes: int = 3, seed: int = 0, noise: float = 0.5, nan: bool = False
    ):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % num_classes
        self.x = torch.randn(n, T, P, H, W, generator=g) * noise
        for i, c in enumerate(self.y.tolist()):
            self.x[i, :, :, c, :] += 1.0
        if nan:
            self.x[:] = float("nan")

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


CONTRACT = DataContract(
    sensor_size=(W, H, P),
    input_size=(H, W),
    n_time_bins=T,
    window_us=1000,
    class_names=("a", "b", "c"),
)


def toy_datasets(n_train: int = 48, n_test: int = 24, nan: bool = False):
    return ToyFrames(n_train, seed=1, nan=nan), ToyFrames(n_test, seed=2), CONTRACT


def toy_config(out_dir, name="toy", **sections):
    data = {
        "name": name,
        "output_dir": str(out_dir),
        "seed": 7,
        "device": "cpu",
        "model": {"name": "_engine_toy"},
        "data": {"batch_size": 8, "num_workers": 0},
        "optim": {"name": "adamw", "lr": 0.05, "weight_decay": 0.01},
        "train": {
            "epochs": 3,
            "warmup_epochs": 1,
            "log_every": 1,
            "label_smoothing": 0.1,
            "ema_decay": 0.9,
        },
    }
    for k, v in sections.items():
        data.setdefault(k, {}).update(v) if isinstance(v, dict) else data.update({k: v})
    return config_from_dict(data)
