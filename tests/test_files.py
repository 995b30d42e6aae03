"""Atomic writes give their files the permissions an ordinary open() would (not mkstemp's 0600)."""

import os
import stat

import numpy as np
import pytest

from sdt3_event.checkpoint import save_checkpoint
from sdt3_event.events import write_events
from sdt3_event.events.aedat4 import Aedat4Writer
from sdt3_event.events.schema import make_events


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield 0o644
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _events():
    return make_events(np.arange(5) * 10, [1, 2, 3, 4, 5], [0, 1, 2, 3, 4], [1, 0, 1, 0, 1])


@pytest.mark.parametrize("name", ["rec.aedat4", "rec.npz", "rec.raw", "rec.h5"])
def test_write_events_gives_ordinary_permissions(tmp_path, umask_022, name):
    out = tmp_path / name
    write_events(out, _events(), (8, 8, 2))
    assert _mode(out) == umask_022
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_recorder_and_checkpoint_give_ordinary_permissions(tmp_path, umask_022):
    with Aedat4Writer(tmp_path / "live.aedat4", (8, 8, 2)) as w:
        w.write(_events())
    save_checkpoint(tmp_path / "last.pt", {"model": {}})
    assert _mode(tmp_path / "live.aedat4") == umask_022
    assert _mode(tmp_path / "last.pt") == umask_022
