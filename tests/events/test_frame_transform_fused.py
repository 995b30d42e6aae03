"""The contract frame transform's one-pass kernel (numba) and its torch twin equal the step-by-step
transform (window cut, event transforms, ``to_window_frames``) it replaced, on many contracts,
on odd inputs and on the real recordings."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from sdt3_event.events.contract import DataContract
from sdt3_event.events.frames import to_window_frames
from sdt3_event.events.schema import EVENT_DTYPE, make_events
from sdt3_event.events.transforms import _spatial, build_frame_transform


def reference(contract: DataContract, events: np.ndarray, t_start_us=None) -> np.ndarray:
    """The transform as it was before the fused kernel, built from the public pieces."""
    tf = build_frame_transform(contract)
    start, end = tf.window(events, t_start_us)
    if len(events) and (t_start_us is not None or contract.window_us is not None):
        t = events["t"]
        events = events[(t >= start) & (t < end)]
    if len(events):
        events = _spatial(contract)(events)
        if contract.in_chans == 1:
            events["p"] = 0
    clamp = 1 if contract.representation == "binary" else contract.clamp
    size = (contract.input_size[1], contract.input_size[0], contract.in_chans)
    return to_window_frames(
        events, size, contract.n_time_bins, start, end, clamp=clamp, dtype=np.float32
    )


def random_events(rng, n, sensor, t_span=100_000, t0=0, sort=True):
    t = rng.integers(t0, t0 + t_span, n)
    if sort:
        t = np.sort(t)
    return make_events(
        t, rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), rng.random(n) < 0.5
    )


CONTRACTS = [
    dict(sensor_size=(128, 128, 2), input_size=(64, 64), n_time_bins=8),
    dict(sensor_size=(128, 128, 2), input_size=(64, 64), n_time_bins=8, clamp=3),
    dict(sensor_size=(128, 128, 2), input_size=(128, 128), n_time_bins=4),
    dict(sensor_size=(346, 260, 2), input_size=(224, 224), n_time_bins=5, representation="binary"),
    dict(sensor_size=(346, 260, 2), input_size=(100, 120), n_time_bins=3, spatial="center_crop"),
    dict(sensor_size=(40, 30, 2), input_size=(48, 64), n_time_bins=2, spatial="pad"),
    dict(sensor_size=(40, 30, 2), input_size=(20, 64), n_time_bins=7, spatial="crop_or_pad"),
    dict(sensor_size=(40, 30, 1), input_size=(30, 40), n_time_bins=1, clamp=2),
    dict(sensor_size=(41, 33, 1), input_size=(17, 19), n_time_bins=6, representation="binary"),
    dict(sensor_size=(33, 27, 2), input_size=(80, 13), n_time_bins=9),  # upscale one side
]


@pytest.mark.parametrize("kw", CONTRACTS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
@pytest.mark.parametrize("window_us", [None, 30_000, 7])
def test_fused_transform_equals_stepwise(kw, window_us):
    rng = np.random.default_rng(len(str(kw)) + (window_us or 0))
    contract = DataContract(**kw, window_us=window_us)
    tf = build_frame_transform(contract)
    sensor = contract.sensor_size
    cases = [
        random_events(rng, 5_000, sensor),
        random_events(rng, 5_000, sensor, sort=False),
        random_events(rng, 3, sensor, t_span=2),
        np.zeros(0, EVENT_DTYPE),
    ]
    hot = random_events(rng, 2_000, sensor)
    hot["x"], hot["y"] = sensor[0] // 2, sensor[1] // 2  # one pixel: counts beyond any clamp
    cases.append(hot)
    starts = [None] if window_us is None else [None, 0, 40_000, 99_999, -5]
    for ev in cases:
        for t_start in starts:
            try:
                ref = reference(contract, ev, t_start)
            except ValueError as exc:  # e.g. an unsorted clip whose last event is not its latest
                with pytest.raises(ValueError, match=re.escape(str(exc))):
                    tf(ev, t_start_us=t_start)
                continue
            ours = tf(ev, t_start_us=t_start)
            assert ours.dtype == torch.float32 and tuple(ours.shape) == contract.frame_shape
            np.testing.assert_array_equal(ours.numpy(), ref)


def test_fused_transform_other_dtypes_and_field_orders():
    # Tonic-style arrays (field order x, y, t, p; int64 coordinates; int polarity), float times
    rng = np.random.default_rng(1)
    contract = DataContract((40, 30, 2), (15, 20), 4, window_us=50_000)
    tf = build_frame_transform(contract)
    ev = random_events(rng, 3_000, contract.sensor_size)
    for dtype in (
        [("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")],
        [("x", "<u2"), ("y", "<u2"), ("t", "<f8"), ("p", "<i1")],
    ):
        other = np.zeros(len(ev), dtype)
        for f in "txyp":
            other[f] = ev[f]
        expected = reference(contract, ev, 10_000)
        np.testing.assert_array_equal(tf(other, t_start_us=10_000).numpy(), expected)
        np.testing.assert_array_equal(reference(contract, other, 10_000), expected)


def test_fused_transform_errors_and_outside_events_match_stepwise():
    rng = np.random.default_rng(2)
    resize = build_frame_transform(DataContract((40, 30, 2), (20, 20), 2, window_us=1_000))
    ev = random_events(rng, 100, (40, 30, 2), t_span=1_000)
    ev["x"][10] = 40  # outside the sensor, inside the window: a resize cannot place it
    with pytest.raises(ValueError, match="outside the"):
        resize(ev, t_start_us=0)
    assert resize(ev, t_start_us=int(ev["t"][10]) + 1).shape == (2, 2, 20, 20)  # cut away first
    # crops and pads keep what lands inside the input, as CropOrPad does
    pad_contract = DataContract((40, 30, 2), (40, 50), 2, window_us=1_000, spatial="pad")
    pad = build_frame_transform(pad_contract)
    ev["y"][11] = 35  # off the sensor, on the padded input
    ev["x"][12] = -3
    np.testing.assert_array_equal(pad(ev, t_start_us=0).numpy(), reference(pad_contract, ev, 0))
    # polarity values that index no channel
    bad = np.zeros(5, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
    bad["p"] = [0, 1, 2, 1, 0]
    with pytest.raises(ValueError, match="polarity"):
        resize(bad, t_start_us=0)


def test_fused_transform_pickles_after_use():
    contract = DataContract((40, 30, 2), (20, 20), 3, window_us=1_000)
    tf = build_frame_transform(contract)
    ev = random_events(np.random.default_rng(3), 500, contract.sensor_size, t_span=1_000)
    before = tf(ev, t_start_us=0)
    copy = pickle.loads(pickle.dumps(tf))
    assert copy == tf and repr(copy) == repr(tf)
    assert torch.equal(copy(ev, t_start_us=0), before)


@pytest.mark.parametrize("kw", CONTRACTS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_frames_torch_on_cpu_tensors_equal_numpy(kw):
    # the device path (a scatter-add on the events' device), run on CPU tensors
    rng = np.random.default_rng(4)
    contract = DataContract(**kw, window_us=30_000)
    tf = build_frame_transform(contract)
    ev = random_events(rng, 6_000, contract.sensor_size)
    fields = [torch.from_numpy(np.ascontiguousarray(ev[f])) for f in "txyp"]
    for t_start in (0, 40_000, 99_999):
        ours = tf.frames_torch(*fields, t_start_us=t_start)
        np.testing.assert_array_equal(ours.numpy(), tf(ev, t_start_us=t_start).numpy())


def test_frames_torch_rejects_what_numpy_rejects():
    tf = build_frame_transform(DataContract((40, 30, 2), (20, 20), 2, window_us=1_000))
    ev = random_events(np.random.default_rng(5), 50, (40, 30, 2), t_span=1_000)
    ev["y"][3] = 30
    fields = [torch.from_numpy(np.ascontiguousarray(ev[f])) for f in "txyp"]
    with pytest.raises(ValueError, match="outside"):
        tf.frames_torch(*fields, t_start_us=0)
    with pytest.raises(ValueError, match="train=False"):
        build_frame_transform(tf.contract, train=True, augmentations=()).frames_torch(
            *fields, t_start_us=0
        )


REAL = [
    ("davis346_346x260.aedat4", None, [(224, 224), (260, 346), (128, 128)]),
    ("dvxplorer_320x240.aedat4", None, [(240, 320), (64, 64)]),
    ("prophesee_gen3_640x480_evt2.raw", (640, 480, 2), [(224, 224)]),
]


@pytest.mark.parametrize("name, sensor, sizes", REAL, ids=[r[0] for r in REAL])
def test_fused_transform_equals_stepwise_on_real_recordings(recordings_dir, name, sensor, sizes):
    from sdt3_event.events.io import read_events

    ev, file_sensor = read_events(recordings_dir / name, sensor_size=sensor)
    sensor = sensor or file_sensor
    t0, t1 = int(ev["t"][0]), int(ev["t"][-1])
    for size in sizes:
        for spatial in ("resize", "center_crop", "crop_or_pad"):
            if spatial == "center_crop" and (size[0] > sensor[1] or size[1] > sensor[0]):
                continue
            for window_us, rep in ((None, "count"), ((t1 - t0) // 3, "binary")):
                contract = DataContract(
                    sensor, size, 8, window_us=window_us, representation=rep, spatial=spatial
                )
                tf = build_frame_transform(contract)
                starts = [None] if window_us is None else [t0, t0 + window_us]
                for t_start in starts:
                    ours = tf(ev, t_start_us=t_start).numpy()
                    np.testing.assert_array_equal(ours, reference(contract, ev, t_start))
                    if t_start is not None:
                        fields = [torch.from_numpy(np.ascontiguousarray(ev[f])) for f in "txyp"]
                        dev = tf.frames_torch(*fields, t_start_us=t_start).numpy()
                        np.testing.assert_array_equal(dev, ours)
