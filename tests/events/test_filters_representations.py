"""Filters and representations: equal to Tonic on its own parameter grids and on real recordings,
and through the data contract into ``build_frame_transform``."""

from __future__ import annotations

import pickle

import event_support
import numpy as np
import pytest
import tonic
from testpaths import RECORDINGS

from sdt3_event.events.contract import DataContract, RepresentationMismatchError
from sdt3_event.events.filters import (
    BackgroundActivityFilter,
    FilterSpecError,
    HotPixelFilter,
    PolarityFilter,
    RefractoryFilter,
    RegionOfInterest,
    format_filters,
    parse_filters,
)
from sdt3_event.events.representations import (
    ToAveragedTimeSurface,
    ToTimeSurface,
    ToVoxelGrid,
    bin_edges,
    window_time_surface,
    window_voxel_grid,
)
from sdt3_event.events.schema import make_events
from sdt3_event.events.transforms import build_frame_transform

TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def tonic_random_input(sensor_size=(200, 100, 2), n_events=10000, seed=0, t0=0):
    """Events like Tonic's test fixture: int fields, sorted random times over about a second."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n_events, TONIC_DTYPE)
    ev["x"] = rng.integers(0, sensor_size[0], n_events)
    ev["y"] = rng.integers(0, sensor_size[1], n_events)
    ev["p"] = rng.integers(0, sensor_size[2], n_events)
    ev["t"] = t0 + np.sort(rng.integers(0, 1_000_000, n_events))
    return ev


def random_events(n, w, h, t_range, seed=0):
    """Our schema: ``n`` events on a ``w`` x ``h`` sensor, times sorted in ``[t_range)``."""
    return event_support.random_events(n, w, h, seed, t_max=t_range[1], t_min=t_range[0])


def real_recording():
    path = RECORDINGS / "dvxplorer_320x240.aedat4"
    if not path.is_file():
        pytest.skip(f"real recordings not present ({path})")
    from sdt3_event.events.io import read_events

    events = read_events(path)[0]
    return events[:40000], (320, 240, 2)


def as_tonic(events):
    out = np.zeros(len(events), TONIC_DTYPE)
    for f in ("x", "y", "t"):
        out[f] = events[f]
    out["p"] = events["p"].astype(int)
    return out


@pytest.mark.parametrize("filter_time", [100, 1000, 5000, 10000])
def test_background_activity_equals_tonic_denoise(filter_time):
    # Tonic treats never-fired pixels as fired at t = 0, so compare from t >= filter_time
    events = tonic_random_input(sensor_size=(40, 20, 2), t0=filter_time)
    expected = tonic.transforms.Denoise(filter_time=filter_time)(events)
    got = BackgroundActivityFilter(filter_time, radius=1, neighbourhood="cross")(events)
    assert 0 < len(got) < len(events)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("delta", [1, 1000, 10000, 50000])
def test_refractory_equals_tonic_refractory_period(delta):
    events = tonic_random_input(sensor_size=(20, 10, 2), t0=1)  # Tonic drops an event at t = 0
    expected = tonic.transforms.RefractoryPeriod(delta=delta)(events)
    got = RefractoryFilter(delta)(events)
    assert len(got) < len(events) or delta == 1
    np.testing.assert_array_equal(got, expected)


def test_filters_equal_tonic_on_a_real_recording():
    events, _ = real_recording()
    ref = as_tonic(events)
    np.testing.assert_array_equal(
        as_tonic(BackgroundActivityFilter(2000, neighbourhood="cross")(events)),
        tonic.transforms.Denoise(filter_time=2000)(ref),
    )
    np.testing.assert_array_equal(
        as_tonic(RefractoryFilter(500)(events)), tonic.transforms.RefractoryPeriod(delta=500)(ref)
    )


def test_background_activity_square_neighbourhood_and_radius():
    # a lone pair 1 px apart diagonally: the cross ignores it, the square keeps the second event
    events = make_events([10, 20, 1000], [5, 6, 30], [5, 6, 30], [1, 0, 1])
    assert len(BackgroundActivityFilter(100, neighbourhood="cross")(events)) == 0
    kept = BackgroundActivityFilter(100)(events)
    assert kept["t"].tolist() == [20]
    far = make_events([10, 20], [5, 7], [5, 5], [1, 1])
    assert len(BackgroundActivityFilter(100)(far)) == 0
    assert BackgroundActivityFilter(100, radius=2)(far)["t"].tolist() == [20]
    assert len(BackgroundActivityFilter(5)(events)) == 0  # too far apart in time


def test_hot_pixel_region_polarity():
    rng = np.random.default_rng(1)
    n = 5000
    x, y = rng.integers(0, 32, n), rng.integers(0, 16, n)
    x[::10], y[::10] = 3, 4  # one pixel fires 50x the median
    events = make_events(np.arange(n) * 10, x, y, rng.integers(0, 2, n))
    hot = HotPixelFilter(factor=5)
    kept = hot(events)
    assert not np.any((kept["x"] == 3) & (kept["y"] == 4))
    assert len(kept) >= n - n // 10 - 30  # hardly anything else goes
    given = HotPixelFilter(pixels=((3, 4),))(events)
    assert not np.any((given["x"] == 3) & (given["y"] == 4))
    roi = RegionOfInterest(2, 3, 10, 5)(events)
    assert (
        roi["x"].min() >= 2 and roi["x"].max() < 12 and roi["y"].min() >= 3 and roi["y"].max() < 8
    )
    assert PolarityFilter(True)(events)["p"].all() and not PolarityFilter(False)(events)["p"].any()


def test_filters_keep_empty_input_and_are_picklable():
    empty = make_events([], [], [], [])
    for f in parse_filters("ba:2000,refractory:10,hot:5,roi:0,0,10,10,pol:on"):
        assert len(f(empty)) == 0 and f(empty).dtype == empty.dtype
        assert pickle.loads(pickle.dumps(f)) == f


def test_filter_grammar_round_trips_and_errors_name_the_part():
    spec = "ba:2000,roi:0,0,320,240"
    filters = parse_filters(spec)
    assert filters == (BackgroundActivityFilter(2000), RegionOfInterest(0, 0, 320, 240))
    assert format_filters(filters) == spec
    assert format_filters(parse_filters("rf:5, ba:100,2, hot:8,50, pol:OFF")) == (
        "refractory:5,ba:100,2,hot:8,50,pol:off"
    )
    for bad, match in [
        ("blur:3", "unknown filter 'blur'"),
        ("roi:0,0,320", "takes 4"),
        ("ba:fast", "not an integer"),
        ("ba:-5", "time_us must be > 0"),
        ("2000", "NAME:ARGS"),
        ("pol:up", "'on' or 'off'"),
    ]:
        with pytest.raises(FilterSpecError, match=match):
            parse_filters(bad)


@pytest.mark.parametrize("n_time_bins", [10, 1, 3])
def test_voxel_grid_equals_tonic(n_time_bins):
    events = tonic_random_input()
    expected = tonic.transforms.ToVoxelGrid((200, 100, 2), n_time_bins)(events)
    got = ToVoxelGrid((200, 100, 2), n_time_bins)(events)
    assert got.shape == (n_time_bins, 1, 100, 200) and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "sensor_size, dt, tau",
    [
        ((40, 15, 2), 10000, 10000),
        ((10, 20, 2), 20000, 1000),
        ((30, 30, 2), 30000, 3000),
        ((20, 10, 2), 7777.3, 123.4),  # float dt and tau: slice ends in float64, as Tonic's
    ],
)
def test_time_surface_equals_tonic(sensor_size, dt, tau):
    events = tonic_random_input(sensor_size)
    expected = tonic.transforms.ToTimesurface(sensor_size, dt, tau)(events)
    got = ToTimeSurface(sensor_size, dt, tau)(events)
    np.testing.assert_array_equal(got, expected)


def test_time_surface_overlap_equals_tonic():
    events = tonic_random_input((40, 15, 2))
    from tonic.functional import to_timesurface_numpy

    for overlap, incomplete in ((2500, False), (2500, True), (0, True)):
        expected = to_timesurface_numpy(events, (40, 15, 2), 10000, 3000, overlap, incomplete)
        got = ToTimeSurface((40, 15, 2), 10000, 3000, overlap, incomplete)(events)
        np.testing.assert_array_equal(got, expected)


def test_time_surface_equals_tonic_where_exp_underflows():
    # ages of 700..760 tau at the slice ends: normal, subnormal and zero values of exp, which
    # the time surface takes from numpy's exp only where it can be nonzero
    sensor_size, tau, dt = (16, 8, 2), 2.0, 2000
    n = 16 * 8 * 2
    rng = np.random.default_rng(5)
    events = np.zeros(n, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
    events["x"] = np.tile(np.arange(16), 16)
    events["y"] = np.repeat(np.arange(8), 32)
    events["p"] = np.tile(np.repeat([0, 1], 16), 8)
    events["t"] = np.sort(dt - rng.integers(1400, 1520, n))
    events["t"][0] = 0  # the slices start at the first event
    expected = tonic.transforms.ToTimesurface(sensor_size, dt, tau)(events)
    got = ToTimeSurface(sensor_size, dt, tau)(events)
    assert (expected[0] > 0).any() and (expected[0] < np.finfo(float).tiny).any()
    np.testing.assert_array_equal(got, expected)


def test_time_surface_equals_tonic_with_dense_events_and_underflow():
    # more events in the subnormal time span than pixels (the pixel scan finds those values):
    # the left half of an 8x2 sensor fires all along, the right half stops at 0.1 s and ages
    # through the subnormal range of exp (708..746 tau) later
    rng = np.random.default_rng(7)
    early = np.zeros(400, TONIC_DTYPE)
    early["x"], early["t"] = rng.integers(4, 8, 400), rng.integers(0, 100_000, 400)
    busy = np.zeros(6000, TONIC_DTYPE)
    busy["x"], busy["t"] = rng.integers(0, 4, 6000), rng.integers(0, 1_200_000, 6000)
    events = np.concatenate([early, busy])
    events["y"], events["p"] = rng.integers(0, 2, len(events)), rng.integers(0, 2, len(events))
    events = events[np.argsort(events["t"], kind="stable")]
    sensor_size, dt, tau = (8, 2, 2), 5000, 1000
    expected = tonic.transforms.ToTimesurface(sensor_size, dt, tau)(events)
    got = ToTimeSurface(sensor_size, dt, tau)(events)
    assert ((expected > 0) & (expected < np.finfo(float).tiny)).any()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "surface_size, cell_size, tau, decay", [(7, 9, 100, "lin"), (3, 4, 1000, "exp")]
)
def test_averaged_time_surface_equals_tonic(surface_size, cell_size, tau, decay):
    sensor_size = (40, 30, 2)
    events = tonic_random_input(sensor_size, n_events=2000)
    args = dict(surface_size=surface_size, cell_size=cell_size, time_window=1e4, tau=tau)
    expected = tonic.transforms.ToAveragedTimesurface(sensor_size, decay=decay, **args)(events)
    got = ToAveragedTimeSurface(sensor_size, decay=decay, **args)(events)
    assert got.shape == expected.shape and got.dtype == np.float32
    # float32 exp: numpy's vectorised exp and libm's differ in the last bit
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_representations_equal_tonic_on_a_real_recording():
    events, sensor = real_recording()
    ref = as_tonic(events)
    np.testing.assert_array_equal(
        ToVoxelGrid(sensor, 5)(events), tonic.transforms.ToVoxelGrid(sensor, 5)(ref)
    )
    np.testing.assert_array_equal(
        ToTimeSurface(sensor, 50000, 5000)(events),
        tonic.transforms.ToTimesurface(sensor, 50000, 5000)(ref),
    )


def test_window_representations_bin_like_frames():
    events = random_events(3000, 16, 8, (1000, 11000), seed=3)
    edges = bin_edges(1000, 11000, 3)
    bins = (events["t"] - 1000) * 3 // 10000
    for k in range(3):
        inside = (events["t"] >= edges[k]) & (events["t"] < edges[k + 1])
        assert np.array_equal(inside, bins == k)
    surf = window_time_surface(events, (16, 8, 2), 3, 1000, 11000, 500.0)
    assert surf.shape == (3, 2, 8, 16) and surf.min() >= 0 and surf.max() <= 1
    # the last event of a pixel at the bin's end gives exp(-(end - t) / tau)
    last = events[-1]
    expected = np.exp(-(edges[3] - last["t"]) / 500.0)
    assert surf[2, int(last["p"]), last["y"], last["x"]] == pytest.approx(expected)
    vox = window_voxel_grid(events, (16, 8, 2), 4, 1000, 11000)
    signs = np.where(events["p"], 1.0, -1.0)
    ts = 4 * (events["t"] - 1000) / 10000
    # bilinear weights add to 1, except past the last bin (the right weight falls off, as in Tonic)
    weight = np.where(ts < 3, 1.0, 1.0 - (ts - np.floor(ts)))
    assert vox.sum() == pytest.approx((signs * weight).sum())
    empty = window_voxel_grid(events[:0], (16, 8, 2), 4, 0, 10)
    assert empty.shape == (4, 1, 8, 16) and not empty.any()


@pytest.mark.parametrize("representation", ["voxel", "time_surface"])
def test_contract_representations_build_frames(representation):
    contract = DataContract(
        (64, 48, 2),
        (24, 32),
        5,
        window_us=100_000,
        representation=representation,
        filters="ba:1000",
    )
    events = random_events(20000, 64, 48, (0, 100_000))
    transform = build_frame_transform(contract)
    frames = transform(events, t_start_us=0)
    assert tuple(frames.shape) == contract.frame_shape
    assert contract.in_chans == (1 if representation == "voxel" else 2)
    assert transform(events[:0], t_start_us=0).shape == frames.shape
    assert pickle.loads(pickle.dumps(transform)).contract == contract
    restored = DataContract.from_dict(contract.to_dict())
    assert restored == contract and restored.filters == "ba:1000"


def test_contract_filters_change_the_frames():
    events = random_events(4000, 64, 48, (0, 100_000))
    plain = DataContract((64, 48, 2), (48, 64), 2, window_us=100_000)
    roi = DataContract((64, 48, 2), (48, 64), 2, window_us=100_000, filters="roi:0,0,32,48")
    a = build_frame_transform(plain)(events, t_start_us=0)
    b = build_frame_transform(roi)(events, t_start_us=0)
    assert a[..., 32:].sum() > 0 and b[..., 32:].sum() == 0
    assert np.array_equal(a[..., :32].numpy(), b[..., :32].numpy())


def test_contract_rejects_bad_representation_settings():
    with pytest.raises(ValueError, match="clamp applies to count frames"):
        DataContract((8, 8, 2), (8, 8), 2, representation="voxel", clamp=1)
    with pytest.raises(ValueError, match="P = 2"):
        DataContract((8, 8, 1), (8, 8), 2, representation="voxel")
    with pytest.raises(ValueError, match="tau_us"):
        DataContract((8, 8, 2), (8, 8), 2, tau_us=100.0)
    with pytest.raises(FilterSpecError, match="unknown filter"):
        DataContract((8, 8, 2), (8, 8), 2, filters="median:3")


def test_finetuning_refuses_another_representation(tmp_path):
    import torch

    from sdt3_event.engine.config import load_config
    from sdt3_event.engine.runner import _check_pretrained_representation

    trained = DataContract((8, 8, 2), (8, 8), 2, window_us=1000, representation="voxel")
    path = tmp_path / "voxel.pt"
    torch.save({"model": {}, "data_contract": trained.to_dict()}, path)
    counts = DataContract((8, 8, 2), (8, 8), 2, window_us=1000)
    with pytest.raises(RepresentationMismatchError, match="trained on 'voxel' input, not 'count'"):
        _check_pretrained_representation(str(path), counts)
    _check_pretrained_representation(str(path), trained)  # same representation: fine
    assert load_config(None, ["data.representation=time_surface", "data.filters=ba:10"])


def test_display_frame_splits_a_voxel_grid_into_off_and_on():
    import torch

    from sdt3_event.events.representations import display_frame

    voxel = DataContract((8, 8, 2), (1, 2), 2, representation="voxel")
    frames = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 0.0]]]])  # (T, 1, H, W)
    np.testing.assert_array_equal(display_frame(voxel, frames), [[[0, 2]], [[1.5, 0]]])
    counts = DataContract((8, 8, 2), (1, 2), 2)
    assert display_frame(counts, frames).shape == (1, 1, 2)
