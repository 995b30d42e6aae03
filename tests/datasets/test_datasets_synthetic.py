"""SyntheticGestures: determinism, physical sanity, separability of time-mirrored classes."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from sdt3_event.datasets.synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticGestures,
    generate_gesture,
    gesture_stream,
)

from sdt3_event.events.schema import EVENT_DTYPE, validate_events


def _signal(ev, sensor=(128, 128)):
    """Drop isolated noise roughly: keep events whose pixel fires at least twice."""
    flat = ev["y"].astype(np.int64) * sensor[0] + ev["x"]
    counts = np.bincount(flat, minlength=sensor[0] * sensor[1])
    return ev[counts[flat] >= 2]


def _per_bin(ev, n_bins=12, duration=500_000):
    bins = np.minimum(ev["t"] * n_bins // duration, n_bins - 1)
    return [ev[bins == k] for k in range(n_bins)]


def _rotation_sign(ev):
    angles = []
    for b in _per_bin(_signal(ev)):
        x, y = b["x"] - b["x"].mean(), b["y"] - b["y"].mean()
        angles.append(np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean()))
    return np.sign(np.polyfit(np.arange(len(angles)), np.unwrap(angles), 1)[0])


def _centroid_slope(ev, field):
    c = [b[field].mean() for b in _per_bin(_signal(ev))]
    return np.sign(np.polyfit(np.arange(len(c)), c, 1)[0])


def _radius_slope(ev):
    r = []
    for b in _per_bin(_signal(ev)):
        r.append(np.hypot(b["x"] - b["x"].mean(), b["y"] - b["y"].mean()).mean())
    return np.sign(np.polyfit(np.arange(len(r)), r, 1)[0])


@pytest.mark.parametrize("name", SYNTHETIC_CLASSES)
def test_gesture_is_valid_and_inside_sensor(name):
    ev = generate_gesture(name, np.random.default_rng(0), (96, 64, 2), 300_000, t0_us=1_000)
    assert ev.dtype == EVENT_DTYPE and len(ev) > 100
    validate_events(ev, (96, 64, 2))  # sorted, non-negative, in range
    assert ev["t"].min() >= 1_000 and ev["t"].max() < 301_000
    assert 0.3 < ev["p"].mean() < 0.7


def test_single_polarity_sensor_and_bad_arguments():
    ev = generate_gesture(0, np.random.default_rng(0), (32, 32, 1))
    assert not ev["p"].any()
    with pytest.raises(ValueError, match="unknown synthetic class"):
        generate_gesture("wave", np.random.default_rng(0))
    with pytest.raises(ValueError, match="out of range"):
        generate_gesture(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown synthetic classes"):
        SyntheticGestures(classes=["rotate_cw", "jump"])
    with pytest.raises(ValueError, match="split"):
        SyntheticGestures(split="dev")


@pytest.mark.parametrize(
    "pair,measure",
    [
        (("rotate_cw", "rotate_ccw"), _rotation_sign),
        (("swipe_right", "swipe_left"), lambda e: _centroid_slope(e, "x")),
        (("swipe_down", "swipe_up"), lambda e: _centroid_slope(e, "y")),
        (("ring_expand", "ring_contract"), _radius_slope),
    ],
    ids=["rotation", "swipe_x", "swipe_y", "ring"],
)
def test_time_mirrored_classes_differ_in_motion(pair, measure):
    rng = np.random.default_rng(7)
    for name, expected in zip(pair, (1, -1), strict=True):
        signs = [measure(generate_gesture(name, rng)) for _ in range(8)]
        assert sum(s == expected for s in signs) >= 7, (name, signs)


def test_edges_emit_on_and_off_on_opposite_sides():
    rng = np.random.default_rng(3)
    for _ in range(5):
        ev = _signal(generate_gesture("swipe_right", rng, noise_rate_hz=0.0, hot_pixels=0))
        for b in _per_bin(ev, 5)[1:4]:
            on, off = b[b["p"]], b[~b["p"]]
            # leading and trailing edges: separated along the motion, not across it
            assert abs(on["x"].mean() - off["x"].mean()) > 3
            assert abs(on["y"].mean() - off["y"].mean()) < 3


def test_dataset_is_deterministic_balanced_and_picklable():
    ds = SyntheticGestures("train", n_samples=20, seed=3, sensor_size=(64, 48, 2))
    again = pickle.loads(pickle.dumps(ds))
    for i in (0, 7, 19):
        np.testing.assert_array_equal(ds[i][0], again[i][0])
        assert ds[i][1] == i % 10
    other_seed = SyntheticGestures("train", n_samples=20, seed=4, sensor_size=(64, 48, 2))
    other_split = SyntheticGestures("test", n_samples=20, seed=3, sensor_size=(64, 48, 2))
    assert not np.array_equal(ds[5][0], other_seed[5][0])
    assert not np.array_equal(ds[5][0], other_split[5][0])
    assert np.bincount(ds.targets).tolist() == [2] * 10
    with pytest.raises(IndexError):
        ds[20]


def test_dataset_applies_transforms_and_class_subset():
    ds = SyntheticGestures(
        n_samples=4,
        classes=("rotate_cw", "rotate_ccw"),
        transform=len,
        target_transform=lambda y: y + 100,
    )
    n, y = ds[1]
    assert isinstance(n, int) and n > 0 and y == 101
    assert ds.classes == ["rotate_cw", "rotate_ccw"]


def test_stream_is_continuous_and_labelled():
    segments = list(itertools.islice(gesture_stream(seed=1, duration_us=100_000, t0_us=5), 6))
    for a, b in itertools.pairwise(segments):
        assert a.t_end_us == b.t_start_us
    for s in segments:
        assert 0 <= s.label < len(SYNTHETIC_CLASSES)
        assert s.events["t"].min() >= s.t_start_us and s.events["t"].max() < s.t_end_us
    again = list(itertools.islice(gesture_stream(seed=1, duration_us=100_000, t0_us=5), 6))
    assert [s.label for s in segments] == [s.label for s in again]
