"""``camera:`` sources: clear errors without dv-processing or a camera; event conversion via a fake."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from sdt3_event.events.schema import EVENT_DTYPE
from sdt3_event.stream import camera
from sdt3_event.stream.base import EventSource
from sdt3_event.stream.camera import CameraNotFoundError, CameraSource
from sdt3_event.stream.factory import open_source

STORE_DTYPE = np.dtype([("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])


class FakeStore:
    def __init__(self, array):
        self.array = array

    def __len__(self):
        return len(self.array)

    def numpy(self):
        return self.array


class FakeCamera:
    def __init__(self, batches, serial):
        self.batches, self.serial = list(batches), serial

    def isEventStreamAvailable(self):
        return True

    def getEventResolution(self):
        return (346, 260)

    def getCameraName(self):
        return f"DAVIS346_{self.serial}"

    def isRunning(self):
        return bool(self.batches)

    def getNextEventBatch(self):
        return self.batches.pop(0) if self.batches else None


def fake_dv(serials, batches):
    opened = {}

    def open_(serial=None):
        opened["serial"] = serial or serials[0]
        return FakeCamera(batches, opened["serial"])

    descriptors = [types.SimpleNamespace(serialNumber=s) for s in serials]
    cam = types.SimpleNamespace(discover=lambda: descriptors, open=open_)
    return types.SimpleNamespace(io=types.SimpleNamespace(camera=cam)), opened


def store(ts, pol):
    a = np.zeros(len(ts), STORE_DTYPE)
    a["timestamp"], a["x"], a["y"], a["polarity"] = ts, 3, 4, pol
    return FakeStore(a)


def test_missing_dv_processing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dv_processing", None)
    with pytest.raises(ImportError, match=r"pip install 'sdt3-event\[camera\]'"):
        open_source("camera:")


def test_no_camera_says_what_to_do(monkeypatch):
    module, _ = fake_dv([], [])
    monkeypatch.setitem(sys.modules, "dv_processing", module)
    with pytest.raises(CameraNotFoundError, match="no iniVation camera found.*synthetic:"):
        open_source("camera:")


def test_unknown_serial_lists_the_cameras_found(monkeypatch):
    module, _ = fake_dv(["00000104"], [])
    monkeypatch.setitem(sys.modules, "dv_processing", module)
    with pytest.raises(
        CameraNotFoundError, match=r"no camera with serial '123'; found \['00000104'\]"
    ):
        CameraSource("123")


def test_camera_events_are_converted_and_streamed(monkeypatch):
    batches = [store([10, 11], [1, 0]), None, store([], []), store([20], [1])]
    module, opened = fake_dv(["00000104", "DXB00010"], batches)
    monkeypatch.setitem(sys.modules, "dv_processing", module)
    src = open_source("camera:DXB00010?poll_s=0")
    assert isinstance(src, EventSource)
    assert opened["serial"] == "DXB00010"
    assert src.sensor_size == (346, 260, 2)
    chunks = []
    with pytest.raises(ConnectionError, match="stopped sending"):  # the fake runs dry = unplugged
        for c in src:
            chunks.append(c)
    got = np.concatenate(chunks)
    assert got.dtype == EVENT_DTYPE
    assert got["t"].tolist() == [10, 11, 20] and got["p"].tolist() == [True, False, True]
    assert src.status.state == "error"


def test_real_dv_processing_without_a_camera(monkeypatch):
    dv = pytest.importorskip("dv_processing")
    if dv.io.camera.discover():
        pytest.skip("a real camera is connected")
    assert camera.list_cameras() == []
    with pytest.raises(CameraNotFoundError, match="no iniVation camera found"):
        CameraSource()
