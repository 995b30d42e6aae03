"""Sources: URI dispatch and errors, file replay pacing with a fake clock, the synthetic stream."""

from __future__ import annotations

import numpy as np
import pytest

from sdt3_event.events.io import write_events
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, make_events
from sdt3_event.stream.base import EventSource
from sdt3_event.stream.factory import open_source, split_uri
from sdt3_event.stream.local_sources import FileSource, SyntheticSource


class FakeClock:
    """``clock()`` / ``sleep(s)`` pair: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def recording(tmp_path):
    """1 s of events at 10 kev/s on a 64x48 sensor, as an npz file."""
    n = 10_000
    rng = np.random.default_rng(0)
    t = 5_000_000 + np.arange(n) * 100
    ev = make_events(t, rng.integers(0, 64, n), rng.integers(0, 48, n), rng.integers(0, 2, n))
    path = tmp_path / "rec.npz"
    write_events(path, ev, (64, 48, 2))
    return path, ev


def _replay(path, speed, **kw):
    fc = FakeClock()
    src = FileSource(path, speed=speed, clock=fc.clock, sleep=fc.sleep, **kw)
    chunks, release, marks = [], [], []
    for chunk in src:
        chunks.append(chunk)
        release.append(fc.now - 100.0)
        marks.append(src.watermark_us)
    return src, fc, chunks, release, marks


@pytest.mark.parametrize("speed", [1.0, 2.0, 0.5])
def test_file_replay_follows_the_recorded_time_at_a_multiple(recording, speed):
    path, ev = recording
    src, fc, chunks, release, marks = _replay(path, speed)
    out = np.concatenate(chunks)
    np.testing.assert_array_equal(out, ev)
    # each chunk is released when its 10 ms grid cell is over (the recording's end for the last),
    # in real time / speed, and the watermark says so
    t0, end = int(ev["t"][0]), int(ev["t"][-1]) + 1
    for chunk, wall, wm in zip(chunks, release, marks, strict=True):
        cell_end = t0 + ((int(chunk["t"][0]) - t0) // 10_000 + 1) * 10_000
        assert wm == min(cell_end, end) > chunk["t"][-1]
        assert wall == pytest.approx((wm - t0) / 1e6 / speed, abs=1e-9)
    assert fc.now - 100.0 == pytest.approx((end - t0) / 1e6 / speed)
    assert src.status.state == "finished"
    # 10 ms chunks by default
    assert all(int(c["t"][-1]) - int(c["t"][0]) < 10_000 for c in chunks)


def test_file_replay_as_fast_as_possible_never_sleeps(recording):
    path, ev = recording
    src, fc, chunks, _, marks = _replay(path, 0, max_chunk_events=1000)
    assert sum(fc.sleeps) == 0
    assert max(len(c) for c in chunks) <= 1000
    # a chunk cut short by the size limit only promises up to its last timestamp
    for chunk, wm, nxt in zip(chunks, marks, chunks[1:], strict=False):
        assert chunk["t"][-1] <= wm <= nxt["t"][0]
    assert sum(len(c) for c in chunks) == len(ev)


def test_file_replay_loops_with_increasing_time(recording):
    path, ev = recording
    fc = FakeClock()
    src = FileSource(path, speed=0, loop=True, clock=fc.clock, sleep=fc.sleep)
    got = 0
    last = -1
    for chunk in src:
        assert chunk["t"][0] >= last
        last = int(chunk["t"][-1])
        got += len(chunk)
        if got >= 2.5 * len(ev):
            src.close()
    assert src.loops_done >= 2
    assert last > ev["t"][-1] + 1_000_000


def test_file_source_on_a_real_recording(recordings_dir):
    src = open_source(f"file:{recordings_dir / 'dvxplorer_320x240.aedat4'}?speed=0")
    assert isinstance(src, EventSource)
    assert src.sensor_size == (320, 240, 2)
    total = sum(len(c) for c in src)
    assert total == 111_954


def test_evt2_needs_and_takes_a_sensor_option(recordings_dir):
    src = open_source(f"file:{recordings_dir / 'prophesee_gen3_640x480_evt2.raw'}?sensor=640x480")
    assert src.sensor_size == (640, 480, 2)


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(ValueError, match="file:PATH.*tcp://HOST:PORT.*synthetic:"):
        open_source("rtsp://camera")
    with pytest.raises(ValueError, match="valid sources"):
        open_source("")


def test_bare_path_hints_at_file_scheme(recording):
    path, _ = recording
    with pytest.raises(ValueError, match=f"file:{path}"):
        open_source(str(path))


def test_unknown_format_and_missing_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(EventFormatError, match=r"\.aedat4"):
        open_source(f"file:{bad}")
    with pytest.raises(FileNotFoundError, match="no such recording"):
        open_source(f"file:{tmp_path / 'missing.aedat4'}")


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid options.*speed"):
        open_source("synthetic:?sped=2")
    with pytest.raises(ValueError, match="webcam index"):
        open_source("webcam:front")
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        open_source("tcp://localhost")


def test_split_uri_forms():
    assert split_uri("file:rec.aedat4?speed=2&loop=true") == (
        "file",
        "rec.aedat4",
        {"speed": 2, "loop": True},
    )
    assert split_uri("file:///abs/rec.aedat4")[1] == "/abs/rec.aedat4"
    assert split_uri("tcp://127.0.0.1:7777")[:2] == ("tcp", "127.0.0.1:7777")
    assert split_uri("synthetic:?speed=0.5")[2] == {"speed": 0.5}
    assert split_uri("webcam:1")[1] == "1"


def test_synthetic_stream_is_endless_paced_and_labelled():
    fc = FakeClock()
    src = open_source("synthetic:?seed=3", clock=fc.clock, sleep=fc.sleep)
    assert isinstance(src, SyntheticSource)
    assert src.sensor_size == (128, 128, 2)
    seen = 0
    last = -1
    for chunk in src:
        assert chunk.dtype == EVENT_DTYPE
        assert chunk["t"][0] >= last
        last = int(chunk["t"][-1])
        seen += len(chunk)
        if last > 3_000_000:  # six gestures of 0.5 s
            src.close()
    # real-time pace: the fake clock advanced as far as the stream time
    assert fc.now - 100.0 == pytest.approx(last / 1e6, abs=0.02)
    labels = {src.label_at(t) for t in range(250_000, 3_000_000, 500_000)}
    assert labels <= set(src.class_names) and len(labels) >= 2
    assert src.label_at(10**12) is None
    assert src.status.state == "finished"


def test_synthetic_same_seed_same_stream():
    a = np.concatenate(list(open_source("synthetic:?speed=0&max_gestures=2&seed=7")))
    b = np.concatenate(list(open_source("synthetic:?speed=0&max_gestures=2&seed=7")))
    np.testing.assert_array_equal(a, b)


def test_close_from_another_thread_ends_a_real_time_stream():
    import threading
    import time

    src = open_source("synthetic:?speed=0.001")  # would take hours
    threading.Timer(0.2, src.close).start()
    t0 = time.monotonic()
    list(src)
    assert time.monotonic() - t0 < 5
    assert src.status.state == "finished"
