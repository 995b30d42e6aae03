"""to_frames equals tonic.transforms.ToFrame; to_window_frames bins exact windows."""

from __future__ import annotations

import numpy as np
import pytest
import tonic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdt3_event.events.frames import to_frames, to_window_frames
from sdt3_event.events.schema import EVENT_DTYPE, make_events


@st.composite
def event_arrays(draw, max_events=200):
    w = draw(st.integers(1, 17))
    h = draw(st.integers(1, 13))
    n_pol = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(0, max_events))
    dts = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    t0 = draw(st.integers(0, 10_000))
    t = t0 + np.cumsum(np.asarray(dts, dtype=np.int64))
    x = draw(st.lists(st.integers(0, w - 1), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, h - 1), min_size=n, max_size=n))
    if n_pol == 1:
        p = [draw(st.booleans())] * n
    else:
        p = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return make_events(t, np.asarray(x), np.asarray(y), np.asarray(p, dtype=bool)), (w, h, n_pol)


@st.composite
def modes(draw):
    kind = draw(st.sampled_from(["n_time_bins", "time_window", "event_count", "n_event_bins"]))
    if kind in ("n_time_bins", "n_event_bins"):
        kw = {kind: draw(st.integers(1, 9))}
        if draw(st.booleans()):
            kw["overlap"] = draw(st.sampled_from([0.1, 0.25, 0.5, 0.9]))
        return kw
    if kind == "time_window":
        window = draw(st.sampled_from([1, 7, 50, 333.3, 1000, 20_000]))
        kw = {"time_window": window, "include_incomplete": draw(st.booleans())}
        if draw(st.booleans()):
            kw["overlap"] = draw(st.sampled_from([0.0, 0.5, 0.9])) * window
        if draw(st.booleans()):
            kw["start_time"] = draw(st.integers(0, 12_000))
        if draw(st.booleans()):
            kw["end_time"] = draw(st.integers(12_000, 25_000))
        return kw
    count = draw(st.integers(1, 60))
    return {
        "event_count": count,
        "overlap": draw(st.integers(0, count - 1)),
        "include_incomplete": draw(st.booleans()),
    }


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=event_arrays(), kw=modes())
def test_to_frames_equals_tonic(data, kw):
    events, sensor = data
    ours = to_frames(events, sensor, **kw)
    if len(events) == 0:
        # Tonic returns (T, P, W, H) float zeros here; ours is (T, P, H, W).
        assert not ours.any()
        ref = tonic.transforms.ToFrame(sensor, **kw)(events.copy())
        assert ours.shape == (ref.shape[0], sensor[2], sensor[1], sensor[0])
        return
    ref = tonic.transforms.ToFrame(sensor, **kw)(events.copy())
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(to_frames(events, sensor, clamp=2, **kw), np.minimum(ref, 2))


def test_to_frames_does_not_modify_input_and_infers_sensor():
    ev = make_events([0, 5, 9, 20], [0, 3, 1, 2], [1, 0, 2, 2], [True, True, True, True])
    before = ev.copy()
    frames = to_frames(ev, None, n_event_bins=2)
    np.testing.assert_array_equal(ev, before)
    ref = tonic.transforms.ToFrame(None, n_event_bins=2)(ev.copy())
    np.testing.assert_array_equal(frames, ref)
    assert frames.shape == (2, 1, 3, 4)


def test_to_frames_non_square_layout():
    ev = make_events([0, 1, 2], [9, 0, 9], [0, 3, 3], [True, False, True])
    frames = to_frames(ev, (10, 4, 2), event_count=3)
    assert frames.shape == (1, 2, 4, 10)
    assert frames[0, 1, 0, 9] == 1 and frames[0, 0, 3, 0] == 1 and frames[0, 1, 3, 9] == 1


def test_to_frames_clamp_and_saturation():
    ev = make_events(np.arange(40_000), np.zeros(40_000), np.zeros(40_000), np.ones(40_000))
    frames = to_frames(ev, (2, 2, 2), event_count=40_000)
    assert frames[0, 1, 0, 0] == np.iinfo(np.int16).max  # saturates, Tonic's int16 would wrap
    assert to_frames(ev, (2, 2, 2), event_count=40_000, clamp=4)[0, 1, 0, 0] == 4


def test_to_frames_errors():
    ev = make_events([0, 1], [0, 5], [0, 0], [True, False])
    with pytest.raises(ValueError, match="outside the 4x4 sensor"):
        to_frames(ev, (4, 4, 2), event_count=2)
    with pytest.raises(ValueError, match="single polarity"):
        to_frames(make_events([0, 1], [0, 1], [0, 0], [True, False]), (4, 4, 1), n_time_bins=2)
    with pytest.raises(ValueError, match="exactly one"):
        to_frames(ev, (8, 8, 2), n_time_bins=2, event_count=3)
    with pytest.raises(ValueError, match="time_window"):
        to_frames(ev, (8, 8, 2), n_time_bins=2, start_time=0)
    signed = np.zeros(2, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    signed["p"] = [-1, 1]
    with pytest.raises(ValueError, match="polarity values -1..1"):
        to_frames(signed, (4, 4, 2), event_count=2)
    neg = make_events([0], [-1], [0], [True])
    with pytest.raises(ValueError, match="outside"):
        to_frames(neg, (8, 8, 2), event_count=1)


@settings(max_examples=60, deadline=None)
@given(data=event_arrays(), n_bins=st.integers(1, 7), offset=st.integers(-500, 500))
def test_to_window_frames_matches_reference(data, n_bins, offset):
    events, sensor = data
    t_start = (int(events["t"][0]) if len(events) else 0) + offset
    t_end = t_start + 1 + 37 * n_bins
    frames = to_window_frames(events, sensor, n_bins, t_start, t_end)
    w, h, n_pol = sensor
    ref = np.zeros((n_bins, n_pol, h, w), np.float32)
    for e in events:
        if t_start <= e["t"] < t_end:
            k = (int(e["t"]) - t_start) * n_bins // (t_end - t_start)
            ref[k, int(e["p"]) if n_pol == 2 else 0, e["y"], e["x"]] += 1
    np.testing.assert_array_equal(frames, ref)
    assert frames.dtype == np.float32


def test_to_window_frames_empty_window_keeps_shape():
    frames = to_window_frames(np.zeros(0, EVENT_DTYPE), (7, 5, 2), 4, 10**9, 10**9 + 1000)
    assert frames.shape == (4, 2, 5, 7) and not frames.any()
    with pytest.raises(ValueError, match="t_end"):
        to_window_frames(np.zeros(0, EVENT_DTYPE), (7, 5, 2), 4, 10, 10)


def test_to_frames_real_recording(recordings_dir):
    from sdt3_event.events.io import read_events

    events, sensor = read_events(recordings_dir / "davis346_346x260.aedat4")
    sensor = sensor or (346, 260, 2)
    for kw in (
        {"n_time_bins": 10},
        {"time_window": 5000, "overlap": 1000},
        {"event_count": 20_000},
    ):
        ref = tonic.transforms.ToFrame(sensor, **kw)(events.copy())
        np.testing.assert_array_equal(to_frames(events, sensor, **kw), ref)


def _torch_vs_numpy(device):
    import torch
    from sdt3_event.datasets.synthetic import generate_gesture

    from sdt3_event.events.frames import to_window_frames_torch

    ev = generate_gesture("ring_expand", np.random.default_rng(0), (48, 40, 2), 300_000)
    fields = [torch.as_tensor(ev[k].astype(np.int64), device=device) for k in "txyp"]
    for start, end, clamp in ((0, 300_000, None), (1_000, 151_001, 2), (10**9, 10**9 + 7, None)):
        ours = to_window_frames_torch(*fields, (48, 40, 2), 5, start, end, clamp=clamp)
        ref = to_window_frames(ev, (48, 40, 2), 5, start, end, clamp=clamp)
        assert ours.device.type == torch.device(device).type
        np.testing.assert_array_equal(ours.cpu().numpy(), ref)


def test_to_window_frames_torch_matches_numpy():
    _torch_vs_numpy("cpu")


@pytest.mark.gpu
def test_to_window_frames_torch_on_cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _torch_vs_numpy("cuda")


@pytest.mark.parametrize(
    "kw",
    [
        {"time_window": 3},
        {"time_window": 4, "overlap": 2, "include_incomplete": True},
        {"time_window": 2, "start_time": 100, "end_time": 3_000},
        {"event_count": 3, "overlap": 1},
        {"n_time_bins": 300},
    ],
)
def test_to_frames_many_small_slices_equal_tonic(kw):
    # More than 256 small slices take the per-event bin-label path (gaps, overlaps, empty bins).
    rng = np.random.default_rng(0)
    n = 2_000
    t = np.sort(rng.integers(0, 2_500, n))
    ev = make_events(t, rng.integers(0, 9, n), rng.integers(0, 5, n), rng.random(n) < 0.5)
    ours = to_frames(ev, (9, 5, 2), **kw)
    assert ours.shape[0] > 256
    np.testing.assert_array_equal(ours, tonic.transforms.ToFrame((9, 5, 2), **kw)(ev.copy()))


@pytest.mark.parametrize(
    "dtype",
    [
        [("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")],  # Tonic's DVSGesture order
        [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")],  # Tonic's CIFAR10DVS dtype
        [("t", "<f8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i1")],
    ],
)
def test_to_frames_other_event_dtypes(dtype):
    ref_ev = make_events([0, 3, 3, 9, 12], [1, 2, 2, 0, 4], [0, 1, 1, 2, 1], [1, 0, 0, 1, 1])
    ev = np.zeros(len(ref_ev), dtype=dtype)
    for k in "txyp":
        ev[k] = ref_ev[k]
    for kw in ({"n_time_bins": 3}, {"event_count": 2, "overlap": 1}, {"time_window": 4.0}):
        np.testing.assert_array_equal(
            to_frames(ev, (5, 3, 2), **kw), tonic.transforms.ToFrame((5, 3, 2), **kw)(ev.copy())
        )
