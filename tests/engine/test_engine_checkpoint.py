"""Checkpoints: atomic writes, weights_only reads, self-describing model rebuilding."""

from __future__ import annotations

import errno

import pytest
import torch
import torch.nn as nn

from sdt3_event import checkpoint as ckpt
from sdt3_event.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    load_model_from_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from sdt3_event.events.contract import DataContract
from sdt3_event.registry import register_model


class _Tiny(nn.Module):
    def __init__(self, num_classes: int = 3, width: int = 4):
        super().__init__()
        self.model_config = {"num_classes": num_classes, "width": width}
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(x)


@register_model(name="_engine_test_tiny")
def _engine_test_tiny(**kw):
    return _Tiny(**kw)


CONTRACT = DataContract(sensor_size=(32, 32, 2), input_size=(16, 16), n_time_bins=2, window_us=1000)


def _payload(model):
    return {
        "model_name": "_engine_test_tiny",
        "model_config": model.model_config,
        "model": model.state_dict(),
        "model_ema": None,
        "epoch": 3,
        "step": 30,
        "rng": capture_rng_state(),
        "data_contract": CONTRACT.to_dict(),
        "config": {"a": 1},
        "metrics": {"acc1": 50.0},
    }


def test_round_trip_rebuilds_model(tmp_path):
    model = _Tiny(num_classes=5)
    path = save_checkpoint(tmp_path / "c" / "last.pt", _payload(model))
    payload = load_checkpoint(path)
    assert payload["format_version"] == ckpt.FORMAT_VERSION and payload["epoch"] == 3
    loaded = load_model_from_checkpoint(path)
    assert loaded.model_name == "_engine_test_tiny" and loaded.contract == CONTRACT
    assert loaded.meta["weights"] == "model" and loaded.meta["metrics"]["acc1"] == 50.0
    x = torch.randn(2, 4)
    torch.testing.assert_close(loaded.model(x), model(x))
    assert not loaded.model.training


def test_ema_weights_preferred(tmp_path):
    model, ema = _Tiny(), _Tiny()
    p = _payload(model)
    p["model_ema"] = ema.state_dict()
    save_checkpoint(tmp_path / "a.pt", p)
    x = torch.randn(2, 4)
    torch.testing.assert_close(load_model_from_checkpoint(tmp_path / "a.pt").model(x), ema(x))
    raw = load_model_from_checkpoint(tmp_path / "a.pt", use_ema=False)
    torch.testing.assert_close(raw.model(x), model(x))


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(_Tiny()))
    before = path.read_bytes()
    real_save = torch.save

    def half_write_then_enospc(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_write_then_enospc)
    with pytest.raises(CheckpointError, match="disk is full"):
        save_checkpoint(path, _payload(_Tiny()))
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left
    load_checkpoint(path)


def test_interrupt_mid_save_leaves_no_temp(tmp_path, monkeypatch):
    def interrupted(obj, f, *a, **k):
        f.write(b"xx")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "x.pt", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a zip")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(junk)
    bare = tmp_path / "bare.pt"
    torch.save(_Tiny().state_dict(), bare)
    with pytest.raises(CheckpointError, match="not an sdt3-event checkpoint"):
        load_checkpoint(bare)


def test_pickled_class_rejected(tmp_path):
    import argparse

    p = tmp_path / "official.pth"
    torch.save({"model": _Tiny().state_dict(), "args": argparse.Namespace(lr=1)}, p)
    with pytest.raises(CheckpointError, match="pretrained=path"):
        load_checkpoint(p)


def test_checkpoint_from_another_model(tmp_path):
    save_checkpoint(tmp_path / "a.pt", _payload(_Tiny()))
    with pytest.raises(CheckpointError, match="holds model '_engine_test_tiny', not 'other'"):
        load_model_from_checkpoint(tmp_path / "a.pt", expected_model="other")
    bad = _payload(_Tiny())
    bad["model_config"] = {"num_classes": 7, "width": 4}
    save_checkpoint(tmp_path / "b.pt", bad)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model_from_checkpoint(tmp_path / "b.pt")
    unknown = _payload(_Tiny())
    unknown["model_name"] = "no_such_model_xyz"
    save_checkpoint(tmp_path / "c.pt", unknown)
    with pytest.raises(CheckpointError, match="does not know"):
        load_model_from_checkpoint(tmp_path / "c.pt")


def test_rng_round_trip(tmp_path):
    import random

    import numpy as np

    save_checkpoint(tmp_path / "r.pt", {"rng": capture_rng_state(), **_payload(_Tiny())})
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_export_keeps_one_set_of_weights_and_no_optimizer(tmp_path):
    from sdt3_event.checkpoint import export_checkpoint

    model, ema = _Tiny(), _Tiny()
    p = _payload(model)
    p.update(model_ema=ema.state_dict(), optimizer={"state": {}, "param_groups": []})
    save_checkpoint(tmp_path / "train.pt", p)
    export_checkpoint(tmp_path / "train.pt", tmp_path / "export.pt")
    out = load_checkpoint(tmp_path / "export.pt")
    assert out["optimizer"] is None and out["model_ema"] is None and out["rng"] is None
    x = torch.randn(2, 4)
    torch.testing.assert_close(load_model_from_checkpoint(tmp_path / "export.pt").model(x), ema(x))
    export_checkpoint(tmp_path / "train.pt", tmp_path / "raw.pt", use_ema=False)
    torch.testing.assert_close(load_model_from_checkpoint(tmp_path / "raw.pt").model(x), model(x))


def test_saved_file_has_normal_permissions(tmp_path):
    import os
    import stat

    path = save_checkpoint(tmp_path / "p.pt", _payload(_Tiny()))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
