"""Event transforms and the contract frame transform: properties, pickling, Tonic composition."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tonic
import torch
from sdt3_event.datasets._common import EventDataset
from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES, generate_gesture

from sdt3_event.events.contract import DataContract
from sdt3_event.events.frames import to_window_frames
from sdt3_event.events.schema import EVENT_DTYPE, make_events
from sdt3_event.events.transforms import (
    CenterCrop,
    CropOrPad,
    DropByArea,
    DropByTime,
    DropRandom,
    EventDrop,
    RandomAffine,
    RandomCrop,
    RandomElastic,
    RandomFlipLR,
    RandomFlipPolarity,
    RandomTimeCrop,
    RandomTranslate,
    SpatialJitter,
    SpatialResize,
    TimeJitter,
    build_frame_transform,
    call_transform,
)

SENSOR = (40, 30, 2)


@pytest.fixture
def events():
    return generate_gesture("rotate_cw", np.random.default_rng(0), SENSOR, 200_000)


def _all_transforms():
    return [
        SpatialResize(SENSOR, (15, 20)),
        CenterCrop(SENSOR, (20, 24)),
        CropOrPad(SENSOR, (36, 36)),
        RandomCrop(SENSOR, (16, 16)),
        RandomTranslate(SENSOR, (4, 4)),
        RandomAffine(SENSOR, 15.0, 0.1),
        RandomElastic(SENSOR, 34.0, 5.0),
        RandomFlipLR(SENSOR, p=1.0),
        RandomFlipPolarity(p=1.0),
        EventDrop(SENSOR),
        DropByTime(0.3),
        DropByArea(SENSOR, 0.3),
        DropRandom(0.3),
        RandomTimeCrop(50_000),
        TimeJitter(50.0),
        SpatialJitter(SENSOR, 1.5),
    ]


@pytest.mark.parametrize("transform", _all_transforms(), ids=lambda t: type(t).__name__)
def test_event_transform_properties(transform, events):
    before = events.copy()
    out = call_transform(transform, events, np.random.default_rng(0))
    np.testing.assert_array_equal(events, before)  # input untouched
    assert out.dtype == events.dtype
    assert len(out) <= len(events)
    assert np.all(np.diff(out["t"]) >= 0)
    empty = transform(np.zeros(0, EVENT_DTYPE))
    assert len(empty) == 0 and empty.dtype == EVENT_DTYPE
    assert pickle.loads(pickle.dumps(transform)) == transform
    with pytest.raises(AttributeError):
        transform.sensor_size = (1, 1, 1)  # frozen


@pytest.mark.parametrize(
    "transform,size",
    [
        (SpatialResize(SENSOR, (15, 20)), (15, 20)),
        (CenterCrop(SENSOR, (20, 24)), (20, 24)),
        (CropOrPad(SENSOR, (36, 36)), (36, 36)),
        (CropOrPad(SENSOR, (10, 50)), (10, 50)),
        (RandomCrop(SENSOR, (16, 16)), (16, 16)),
    ],
)
def test_spatial_transforms_stay_in_bounds(transform, size, events):
    out = transform(events)
    assert out["x"].min() >= 0 and out["x"].max() < size[1]
    assert out["y"].min() >= 0 and out["y"].max() < size[0]


def test_spatial_resize_preserves_counts_and_sums_pixels(events):
    out = SpatialResize(SENSOR, (15, 20))(events)
    assert len(out) == len(events)
    src = to_window_frames(events, SENSOR, 1, 0, 200_000)[0]  # (P, H, W)
    dst = to_window_frames(out, (20, 15, 2), 1, 0, 200_000)[0]
    np.testing.assert_array_equal(dst, src.reshape(2, 15, 2, 20, 2).sum(axis=(2, 4)))


def test_center_crop_and_pad_are_centred():
    ev = make_events([0, 1], [0, 39], [0, 29], [True, False])
    padded = CropOrPad(SENSOR, (32, 44))(ev)
    assert padded["x"].tolist() == [2, 41] and padded["y"].tolist() == [1, 30]
    cropped = CenterCrop(SENSOR, (28, 38))(ev)
    assert len(cropped) == 0
    with pytest.raises(ValueError, match="exceeds"):
        CenterCrop(SENSOR, (31, 40))


def test_flips_once_per_clip(events):
    np.random.seed(1)  # direct calls draw from NumPy's global state
    flipped = RandomFlipLR(SENSOR, p=1.0)(events)
    np.testing.assert_array_equal(flipped["x"], SENSOR[0] - 1 - events["x"])
    np.testing.assert_array_equal(RandomFlipPolarity(p=1.0)(events)["p"], ~events["p"])
    outcomes = {bool((RandomFlipLR(SENSOR)(events)["x"] != events["x"]).any()) for _ in range(20)}
    assert outcomes == {True, False}  # either the whole clip flips or none of it


def test_event_drop_removes_what_it_says(events):
    np.random.seed(2)  # direct calls draw from NumPy's global state
    by_time = DropByTime(0.5)(events)
    assert 0.35 * len(events) < len(by_time) < 0.65 * len(events)
    by_area = DropByArea(SENSOR, 1.0)(events)
    assert len(by_area) == 0
    assert len(DropRandom(0.0)(events)) == len(events)
    with pytest.raises(ValueError, match="modes"):
        EventDrop(SENSOR, modes=("bogus",))


def test_random_time_crop_and_jitter(events):
    np.random.seed(3)  # direct calls draw from NumPy's global state
    crop = RandomTimeCrop(50_000)(events)
    assert crop["t"].max() - crop["t"].min() < 50_000
    jit = TimeJitter(1000.0)(events)
    assert len(jit) == len(events) and np.all(np.diff(jit["t"]) >= 0) and jit["t"].min() >= 0


def test_compose_with_tonic(events):
    np.random.seed(4)  # direct calls draw from NumPy's global state
    pipeline = tonic.transforms.Compose(
        [
            RandomTranslate(SENSOR, (2, 2)),
            EventDrop(SENSOR),
            SpatialResize(SENSOR, (15, 20)),
            tonic.transforms.ToFrame(sensor_size=(20, 15, 2), n_time_bins=3),
        ]
    )
    frames = pipeline(events)
    assert frames.shape == (3, 2, 15, 20)


CONTRACTS = [
    DataContract((40, 30, 2), (16, 16), 4, 200_000, "count", None, "resize", SYNTHETIC_CLASSES),
    DataContract((40, 30, 2), (24, 36), 3, None, "binary", None, "center_crop"),
    DataContract((40, 30, 2), (32, 44), 5, 100_000, "count", 4, "pad"),
    DataContract((40, 30, 1), (20, 50), 2, 50_000, "count", 2, "crop_or_pad"),
]


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.spatial)
@pytest.mark.parametrize("train", [False, True])
def test_frame_transform_contract(contract, train, events):
    tf = build_frame_transform(contract, train=train)
    frames = tf(events, rng=np.random.default_rng(5))
    assert isinstance(frames, torch.Tensor) and frames.dtype == torch.float32
    assert tuple(frames.shape) == contract.frame_shape
    assert frames.sum() > 0 and frames.min() >= 0
    if contract.representation == "binary":
        assert set(frames.unique().tolist()) <= {0.0, 1.0}
    if contract.clamp is not None:
        assert frames.max() <= contract.clamp
    empty = tf(np.zeros(0, EVENT_DTYPE))
    assert tuple(empty.shape) == contract.frame_shape and not empty.any()
    assert pickle.loads(pickle.dumps(tf)) == tf
    assert repr(tf) == repr(pickle.loads(pickle.dumps(tf)))


def test_frame_transform_is_deterministic_for_eval_and_window_aligned(events):
    contract = CONTRACTS[0]
    tf = build_frame_transform(contract)
    torch.testing.assert_close(tf(events), tf(events))
    # The same events shifted by an offset bin identically when the window moves with them.
    shifted = events.copy()
    shifted["t"] += 7_000_000_123
    a = tf(events, t_start_us=0)
    b = tf(shifted, t_start_us=7_000_000_123)
    torch.testing.assert_close(a, b)
    # A window that holds no events: zeros, right shape.
    far = tf(events, t_start_us=10**12)
    assert tuple(far.shape) == contract.frame_shape and not far.any()


def test_frame_transform_eval_centres_long_recordings():
    contract = DataContract((8, 8, 2), (8, 8), 2, 100, "count", None, "resize")
    ev = make_events([0, 150, 160, 240, 400], [0, 1, 2, 3, 4], [0] * 5, [True] * 5)
    frames = build_frame_transform(contract)(ev)  # span 401 -> window [150, 250)
    assert frames.sum() == 3
    assert frames[0, 1, 0, 1] == 1 and frames[0, 1, 0, 2] == 1 and frames[1, 1, 0, 3] == 1


def test_frame_transform_rejects_impossible_spatial_modes():
    with pytest.raises(ValueError, match="pad"):
        build_frame_transform(DataContract((40, 30, 2), (16, 16), 2, spatial="pad"))
    with pytest.raises(ValueError, match="exceeds"):
        build_frame_transform(DataContract((40, 30, 2), (64, 64), 2, spatial="center_crop"))


class _Draws(EventDataset):
    """Each item is one draw from the data set's generator (in whichever process loads it)."""

    targets = [0] * 8

    def __getitem__(self, i):
        return int(self.rng.integers(1 << 40))


def test_loader_workers_draw_different_random_streams():
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    draws = list(DataLoader(_Draws(), batch_size=None, num_workers=2))
    assert len(set(draws)) == 8  # worker 0 and worker 1 do not repeat each other
    torch.manual_seed(0)
    again = list(DataLoader(_Draws(), batch_size=None, num_workers=2))
    assert draws == again  # and the streams follow torch's seed


def test_spatial_jitter_moves_events_by_their_own_offsets_and_drops_off_sensor():
    n = 4000
    centre = make_events(np.arange(n), np.full(n, 20), np.full(n, 15), np.ones(n, bool))
    np.random.seed(3)  # direct calls draw from NumPy's global state
    out = SpatialJitter(SENSOR, 1.0)(centre)
    assert len(out) == n  # nothing leaves the sensor from its centre
    dx = out["x"].astype(int) - 20
    assert 0.9 < np.std(dx) < 1.1 and len(np.unique(dx)) > 3  # per event, not one shift
    corner = make_events(np.arange(n), np.zeros(n), np.zeros(n), np.ones(n, bool))
    out = SpatialJitter(SENSOR, 1.0)(corner)
    assert 0.1 * n < len(out) < 0.5 * n and out["x"].min() >= 0 and out["y"].min() >= 0
    np.testing.assert_array_equal(SpatialJitter(SENSOR, 0.0)(centre), centre)


def test_random_transforms_draw_from_the_generator_passed_or_numpys_global_state(events):
    contract = CONTRACTS[0]
    tf = build_frame_transform(contract, train=True)

    def draws(**kw):
        return torch.stack([tf(events, **kw) for _ in range(3)])

    a = draws(rng=np.random.default_rng(7))
    b = draws(rng=np.random.default_rng(7))
    assert torch.equal(a, b)
    assert not all(torch.equal(x, a[0]) for x in a[1:])  # the generator advances per call
    np.random.seed(7)  # Tonic style: a direct call without rng
    c = draws()
    np.random.seed(7)
    assert torch.equal(c, draws())


def test_random_affine_rotates_and_zooms_about_the_centre():
    ev = make_events(
        [0, 1, 2], [10, 19, 28], [14, 14, 14], [True, False, True]
    )  # centre (19.5, 14.5)
    np.testing.assert_array_equal(RandomAffine(SENSOR, 0.0)(ev), ev)  # identity
    rng = np.random.default_rng(3)
    out = RandomAffine(SENSOR, 0.0, 0.5)(ev, rng=rng)  # a zoom keeps the horizontal line
    assert np.all(out["y"] == 14) and np.all(np.diff(out["x"].astype(int)) > 0)
    # 90 degrees (the draw is uniform in [-90, 90]: find a generator that draws close to it)
    affine = RandomAffine(SENSOR, 90.0)
    angles = [np.random.default_rng(s).uniform(-90, 90) for s in range(200)]
    seed = int(np.argmax(angles))
    assert angles[seed] > 89
    turned = affine(ev, rng=np.random.default_rng(seed))
    assert np.all(np.abs(turned["x"].astype(int) - 19) <= 1)  # the line is now vertical
    assert len(np.unique(turned["y"])) == len(turned) == 3
    with pytest.raises(ValueError, match="scale_jitter"):
        RandomAffine(SENSOR, 10.0, 1.5)


def test_random_elastic_moves_pixels_smoothly_and_keeps_density():
    w, h = SENSOR[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    n = 200  # events per pixel: a uniform sensor
    ev = make_events(
        np.arange(n * w * h),
        np.repeat(xx.ravel(), n),
        np.repeat(yy.ravel(), n),
        np.ones(n * w * h, bool),
    )
    np.testing.assert_array_equal(RandomElastic(SENSOR, 0.0)(ev, rng=np.random.default_rng(0)), ev)
    elastic = RandomElastic(SENSOR, 34.0, 5.0)
    dx, dy = elastic.displacement(np.random.default_rng(1))
    assert dx.shape == dy.shape == (h, w)
    assert 0.5 < dx.std() < 2.5 and 0.5 < dy.std() < 2.5  # about a pixel
    assert np.abs(np.diff(dx, axis=1)).mean() < 0.3  # smooth: neighbours move alike
    out = elastic(ev, rng=np.random.default_rng(1))  # the same field as above
    # every event lands within a pixel of where the field sends its pixel (stochastic rounding)
    src = out["t"] // n
    sx, sy = src % w, src // w
    assert (out["x"] - sx).std() > 0.5  # events did move
    assert np.all(np.abs(out["x"] - (sx + dx[sy, sx])) < 1)
    assert np.all(np.abs(out["y"] - (sy + dy[sy, sx])) < 1)
    # stochastic rounding: no empty seams inside the sensor, the density stays near uniform
    counts = np.zeros((h, w))
    np.add.at(counts, (out["y"], out["x"]), 1)
    inner = counts[5:-5, 5:-5]
    assert inner.min() > 0 and abs(inner.mean() / n - 1) < 0.2
    with pytest.raises(ValueError, match="sigma > 0"):
        RandomElastic(SENSOR, 10.0, 0.0)
    with pytest.raises(ValueError, match="alpha >= 0"):
        RandomElastic(SENSOR, -1.0)
