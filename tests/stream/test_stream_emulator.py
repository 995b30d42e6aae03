"""The video -> events emulator and the webcam/video source, on videos written in tmp_path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sdt3_event.stream.emulator import EventEmulator
from sdt3_event.stream.factory import open_source
from sdt3_event.stream.local_sources import VideoSource

W, H, SIDE, Y0 = 64, 48, 12, 18


def _frame(x0: int) -> np.ndarray:
    """A bright square on a dark background, BGR uint8."""
    f = np.full((H, W, 3), 30, np.uint8)
    f[Y0 : Y0 + SIDE, x0 : x0 + SIDE] = 230
    return f


@pytest.fixture
def square_video(tmp_path):
    """A 25 fps video of a square moving right 2 px per frame (MJPG; its compression keeps the edges sharp enough)."""
    path = tmp_path / "square.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    assert writer.isOpened()
    for i in range(15):
        writer.write(_frame(4 + 2 * i))
    writer.release()
    return path


def test_moving_square_gives_on_at_leading_and_off_at_trailing_edge():
    em = EventEmulator(seed=0)
    assert len(em(_frame(10), 0)) == 0  # the first frame only sets the reference
    ev = em(_frame(13), 40_000)
    on, off = ev[ev["p"]], ev[~ev["p"]]
    # the square moved from [10, 22) to [13, 25): pixels 22..24 brightened, 10..12 darkened
    assert set(np.unique(on["x"])) == {22, 23, 24}
    assert set(np.unique(off["x"])) == {10, 11, 12}
    assert set(np.unique(ev["y"])) == set(range(Y0, Y0 + SIDE))
    # timestamps interpolated inside (0, 40 ms], sorted
    assert ev["t"].min() > 0 and ev["t"].max() <= 40_000
    assert np.all(np.diff(ev["t"]) >= 0)
    # log(230/255 + eps) - log(30/255 + eps) ~ 1.9: several crossings, spread in time
    per_pixel = np.unique(on["x"] + 1000 * on["y"], return_counts=True)[1]
    assert per_pixel.max() > 1
    assert len(np.unique(on["t"])) > 1


def test_threshold_mismatch_is_seeded():
    a = EventEmulator(seed=1, threshold_sigma=0.05)
    b = EventEmulator(seed=1, threshold_sigma=0.05)
    c = EventEmulator(seed=2, threshold_sigma=0.05)
    ramp = [np.full((H, W), v, np.uint8) for v in (40, 120)]
    evs = []
    for em in (a, b, c):
        em(ramp[0], 0)
        evs.append(em(ramp[1], 10_000))
    np.testing.assert_array_equal(evs[0], evs[1])
    assert len(evs[0]) != len(evs[2]) or not np.array_equal(evs[0], evs[2])
    # mismatch makes pixels differ in their event count for the same uniform change
    counts = np.bincount(evs[0]["x"].astype(np.int64) + W * evs[0]["y"], minlength=W * H)
    assert counts.min() < counts.max()


def test_refractory_period_limits_the_event_rate_of_a_pixel():
    fast = EventEmulator(refractory_us=0, threshold_sigma=0, max_events_per_frame=100)
    slow = EventEmulator(refractory_us=5_000, threshold_sigma=0, max_events_per_frame=100)
    dark, bright = np.full((4, 4), 5, np.uint8), np.full((4, 4), 255, np.uint8)
    for em in (fast, slow):
        em(dark, 0)
    ev_fast, ev_slow = fast(bright, 10_000), slow(bright, 10_000)
    assert len(ev_slow) < len(ev_fast)
    for px in range(16):
        t = ev_slow["t"][(ev_slow["x"] + 4 * ev_slow["y"]) == px]
        assert np.all(np.diff(t) >= 5_000)
    # the reference followed the signal: no backlog of events on a static frame afterwards
    assert len(slow(bright, 20_000)) == 0


def test_static_scene_gives_no_events_and_bad_input_raises():
    em = EventEmulator()
    em(_frame(5), 0)
    assert len(em(_frame(5), 33_000)) == 0
    with pytest.raises(ValueError, match="size changed"):
        em(np.zeros((10, 10), np.uint8), 66_000)
    with pytest.raises(ValueError, match="backwards"):
        em(_frame(5), 1)
    with pytest.raises(ValueError):
        EventEmulator(threshold_on=0)


def test_video_source_streams_events_at_the_video_frame_rate(square_video):
    src = open_source(f"video:{square_video}?speed=0")
    assert isinstance(src, VideoSource)
    assert src.sensor_size == (W, H, 2)
    chunks = list(src)
    ev = np.concatenate(chunks)
    assert src.status.state == "finished"
    assert ev["t"].max() <= 14 * 40_000  # 15 frames at 25 fps
    assert np.all(np.diff(ev["t"]) >= 0)
    on, off = ev[ev["p"]], ev[~ev["p"]]
    # the square moves right: ON events lie right of OFF events on average
    assert on["x"].mean() > off["x"].mean() + SIDE / 2


def test_video_source_resizes_and_paces_with_a_fake_clock(square_video):
    now = [0.0]

    def sleep(s):
        now[0] += s

    src = VideoSource(square_video, size="32x24", clock=lambda: now[0], sleep=sleep)
    assert src.sensor_size == (32, 24, 2)
    ev = np.concatenate(list(src))
    assert ev["x"].max() < 32 and ev["y"].max() < 24
    assert now[0] == pytest.approx(14 / 25, abs=1e-6)


def test_video_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such video"):
        open_source(f"video:{tmp_path / 'nope.mp4'}")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(RuntimeError, match="OpenCV cannot open"):
        open_source(f"video:{junk}")
