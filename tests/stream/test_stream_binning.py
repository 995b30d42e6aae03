"""Binning on the live path: windows binned as events arrive equal whole windows binned by the
contract's transform; lossless replay keeps every event; memory stays bounded under a flood with
every drop counted; the device-binning path (run on CPU tensors) predicts like the CPU path."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from event_support import window_key

from sdt3_event.events.contract import DataContract
from sdt3_event.events.schema import make_events
from sdt3_event.events.transforms import build_frame_transform
from sdt3_event.stream.base import BaseEventSource
from sdt3_event.stream.pipeline import LivePipeline
from sdt3_event.stream.predictor import Predictor
from sdt3_event.stream.records import Prediction
from sdt3_event.stream.sinks import drain
from sdt3_event.stream.windowing import FrameWindower, SlidingWindower

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENSOR = (48, 40, 2)


def _stream(seed, n=6_000, span=400_000, sensor=SENSOR):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1_000, span, n))
    t[n // 2 :] += 250_000  # a quiet stretch: empty windows are skipped
    return make_events(t, rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), t % 3 == 0)


@pytest.mark.parametrize(
    "kw",
    [
        dict(input_size=(40, 48), n_time_bins=4),
        dict(input_size=(20, 24), n_time_bins=8, clamp=2),
        dict(input_size=(32, 32), n_time_bins=2, spatial="center_crop", representation="binary"),
        dict(input_size=(48, 64), n_time_bins=4, spatial="pad"),
    ],
)
@pytest.mark.parametrize("stride_frac", [0.25, 0.5, 1.0, 1.5])
def test_frames_binned_as_events_arrive_equal_whole_windows(kw, stride_frac):
    window = 40_000
    contract = DataContract(SENSOR, window_us=window, **kw)
    stride = int(window * stride_frac)
    tf = build_frame_transform(contract)
    if stride * contract.n_time_bins % window:  # the stride is not on the bin grid
        with pytest.raises(ValueError, match="whole number"):
            FrameWindower(window, stride, contract.frame_shape, tf.add_events)
        return
    ev = _stream(int(stride_frac * 4) + kw["n_time_bins"])
    late = ev[100:105].copy()  # events that go back in time: dropped and counted alike
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.integers(0, len(ev), 40))
    chunks = np.split(ev, cuts)
    chunks.insert(20, late)
    sliding = SlidingWindower(window, stride)
    framed = FrameWindower(window, stride, contract.frame_shape, tf.add_events)
    got_s, got_f = [], []
    for chunk in chunks:
        got_s += sliding.push(chunk)
        got_f += framed.push(chunk)
        assert framed.buffered_events <= sliding.buffered_events
    got_s += sliding.flush()
    got_f += framed.flush()
    assert len(got_f) == len(got_s) > 5
    for a, b in zip(got_s, got_f, strict=True):
        assert window_key(a) == window_key(b)
        assert b.events.size == 0 and b.frames.shape == contract.frame_shape
        np.testing.assert_array_equal(b.frames, tf(a.events, t_start_us=a.start_us).numpy())
        first = np.count_nonzero(a.events["t"] < a.start_us + stride)
        assert b.first_stride_events == first
    assert framed.stats.events_late == sliding.stats.events_late > 0


def test_frame_windower_needs_a_stride_on_the_bin_grid():
    tf = build_frame_transform(DataContract(SENSOR, (40, 48), 3, window_us=30_000))
    with pytest.raises(ValueError, match="whole number"):
        FrameWindower(30_000, 15_000, (3, 2, 40, 48), tf.add_events)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    from sdt3_event import create_model

    model = create_model("sdt3_micro", num_classes=4, in_chans=2, T=2)
    contract = DataContract(SENSOR, (32, 32), 2, window_us=20_000, class_names=tuple("abcd"))
    return model.eval(), contract


class ArraySource(BaseEventSource):
    """Replays an event array in ``chunk`` pieces as fast as they are taken, optionally forever
    (timestamps keep increasing)."""

    def __init__(self, events, chunk=2_000, forever=False, sensor=SENSOR):
        super().__init__("array:", sensor)
        self.events, self.chunk, self.forever = events, chunk, forever
        self.sent = 0

    def _chunks(self):
        self._set_status("connected")
        span = int(self.events["t"][-1]) + 1
        loop = 0
        while True:
            for a in range(0, len(self.events), self.chunk):
                piece = self.events[a : a + self.chunk].copy()
                piece["t"] += loop * span
                self.sent += len(piece)
                yield piece
            loop += 1
            if not self.forever or self.closed:
                return


def _drain(p, limit_s=60.0):
    """The predictions of a started pipeline until its stream ends."""
    records = []
    drain(p, [type("Sink", (), {"write": staticmethod(records.append)})()], duration_s=limit_s)
    return [r for r in records if isinstance(r, Prediction)]


def _burst(n, seed):
    """``n`` random events within 1 ms."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 1_000, n))
    return make_events(t, rng.integers(0, 48, n), rng.integers(0, 40, n), rng.random(n) < 0.5)


def _predictor(tiny, cls=Predictor, **kw):
    model, contract = tiny
    return cls(model, contract, device="cpu", firing=False, energy_every=0, keep_frames=False, **kw)


def test_lossless_replay_predicts_every_window_with_every_event(tiny):
    ev = _stream(7, n=20_000, span=200_000)
    pr = _predictor(tiny, smoothing=0.0)
    p = LivePipeline(ArraySource(ev), pr, window_us=20_000, stride_us=10_000, drop_policy="block")
    with p:
        preds = _drain(p)
    s = p.stats
    assert isinstance(p._windower, FrameWindower)
    assert s.events_in == len(ev) and s.events_dropped == 0
    assert s.windows_dropped == s.windows_overflow == 0
    assert len(preds) == s.windows_in == s.windows_done
    # the same windows as the reference windower, with the same events
    ref = SlidingWindower(20_000, 10_000)
    expected = ref.push(ev) + ref.flush()
    assert [(r.window_start_us, r.n_events) for r in preds] == [
        (w.start_us, w.n_events) for w in expected
    ]


class _PartsPredictor(Predictor):
    """Takes unjoined windows, as device binning on CUDA does (here staged on the CPU)."""

    takes_parts = True


@pytest.mark.parametrize(
    "variant",
    [
        # the device binning path (whole windows -> frames) on CPU tensors, against CPU binning
        # as events arrive (a FrameWindower)
        dict(device_binning=True),
        # windows kept as parts (what device binning on CUDA takes), against joined windows
        dict(device_binning=True, cls=_PartsPredictor),
    ],
    ids=["device-binning", "unjoined-windows"],
)
def test_binning_paths_predict_alike(tiny, variant):
    ev = _stream(8, n=8_000, span=100_000)
    baseline = dict(device_binning=variant.get("cls") is not None)
    records = []
    for kw in (baseline, variant):
        pr = _predictor(tiny, smoothing=0.0, **kw)
        p = LivePipeline(
            ArraySource(ev), pr, window_us=20_000, stride_us=10_000, drop_policy="block"
        )
        with p:
            records.append(_drain(p))
        assert isinstance(p._windower, FrameWindower) is not kw["device_binning"]
        assert getattr(p._windower, "join", True) is ("cls" not in kw)
    first, second = records
    assert len(first) == len(second) > 5
    for a, b in zip(first, second, strict=True):
        assert (a.window_start_us, a.n_events, a.labels) == (
            b.window_start_us,
            b.n_events,
            b.labels,
        )
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


def test_dropped_unjoined_windows_count_their_first_stride_once(tiny):
    from sdt3_event.stream.windowing import EventWindow

    ev = _stream(10, n=2_000, span=40_000)
    p = LivePipeline(ArraySource(ev), _predictor(tiny), window_us=20_000, stride_us=5_000)
    inside = ev[(ev["t"] >= 10_000) & (ev["t"] < 30_000)]
    whole = EventWindow(0, 10_000, 30_000, inside, time.perf_counter())
    for cuts in ([], [1], [5, 400], [len(inside) // 2]):
        parts = tuple(np.split(inside, cuts))
        split = EventWindow(0, 10_000, 30_000, None, 0.0, event_count=len(inside), parts=parts)
        assert p._first_seen_events(split) == p._first_seen_events(whole) > 0


def test_device_frames_equal_the_transform_on_cpu_tensors(tiny):
    from sdt3_event.stream.windowing import EventWindow

    ev = _stream(9, n=3_000, span=50_000)
    pr = _predictor(tiny, device_binning=True)
    pr.bind(SENSOR)
    for events in (ev, ev[:1], ev[:0], ev[7:8]):
        win = EventWindow(0, 10_000, 30_000, events, time.perf_counter())
        expected = build_frame_transform(pr.live)(events, t_start_us=10_000)
        assert torch.equal(pr.device_frames(win), expected)
        parts = tuple(np.split(events, [len(events) // 3]))
        unjoined = EventWindow(0, 10_000, 30_000, None, 0.0, event_count=len(events), parts=parts)
        assert torch.equal(pr.device_frames(unjoined), expected)


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class SlowTiny(Predictor):
    """The real predictor, slowed down: the source floods it."""

    def __call__(self, window, true_label=None):
        time.sleep(0.3)
        return super().__call__(window, true_label)


def test_a_flood_keeps_memory_flat_and_counts_every_drop(tiny):
    model, contract = tiny
    n = 200_000  # 200k events per 1 ms: 4M events per 20 ms window
    src = ArraySource(_burst(n, 0), chunk=n, forever=True)
    pr = SlowTiny(model, contract, device="cpu", firing=False, energy_every=0, keep_frames=False)
    p = LivePipeline(src, pr, window_us=20_000, stride_us=10_000)
    before = _rss_mb()
    peak = before
    with p:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            peak = max(peak, _rss_mb())
            assert len(p._windower._bins) <= 2 * contract.n_time_bins + 1  # frames, no events
            p.get(0.01)
            time.sleep(0.01)
    s = p.stats
    assert src.sent > 20 * n, "the source must flood the pipeline"
    assert peak - before < 100, "frames, not events, are held: memory does not grow with the rate"
    assert s.windows_dropped > 0 and s.windows_done > 0
    assert s.windows_in == s.windows_done + s.windows_dropped + len(p._windows)
    # every event of a dropped window is counted once (the windows overlap 2x)
    assert 0 < s.events_dropped <= s.events_in
    status = p.status()
    assert status.windows_dropped == s.windows_dropped and status.events_dropped == s.events_dropped


def test_status_records_count_invalid_late_and_unread():
    ev = _stream(11, n=4_000, span=100_000)
    ev["x"][:7] = 60  # outside the 48-wide sensor
    late = ev[1000:1010].copy()
    pieces = [ev[:2000], late, ev[2000:]]
    src = ArraySource(np.concatenate(pieces), chunk=2000)
    p = LivePipeline(src, BigWindowPredictor(), window_us=10_000, max_records=2)
    with p:
        time.sleep(0.5)  # nobody reads: records pile up beyond max_records
        _drain(p)
    status = p.status()
    assert status.events_invalid == 7
    assert status.events_late == 10
    assert status.records_dropped == p.stats.records_dropped > 0
    assert json.loads(status.to_json())["events_late"] == 10


class BigWindowPredictor:
    """Keeps windows' events (no make_windower), slowly."""

    model_name, device, class_names, bound = "big", "cpu", ("a",), True

    def bind(self, sensor_size):
        pass

    def __call__(self, win, true_label=None):
        time.sleep(0.05)
        return Prediction(
            win.start_us, win.end_us, ("a",), (1.0,), "a", 1.0, 0.0, win.n_events, 0.0
        )


def test_the_window_queue_is_bounded_by_memory_not_only_by_count():
    n = 100_000  # 1.3 MB of events per 1 ms window
    src = ArraySource(_burst(n, 1), chunk=n, forever=True)
    p = LivePipeline(
        src, BigWindowPredictor(), window_us=1_000, max_queued_windows=1000, max_queued_mb=4
    )
    peak = 0
    with p:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            peak = max(peak, p._queued_bytes)
            p.get(0.01)
    assert 0 < peak <= 4 * 2**20
    assert p.stats.windows_dropped > 0
    assert p.stats.events_dropped == p.stats.windows_dropped * n


@pytest.mark.gpu
def test_cuda_graph_and_device_binning_predict_like_eager_cpu_binning(tiny):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ev = _stream(12, n=8_000, span=100_000)
    records = []
    for kw in (dict(device="cpu"), dict(device="cuda", cuda_graph=True)):
        model, contract = tiny
        pr = Predictor(
            model, contract, firing=False, energy_every=0, keep_frames=False, smoothing=0.0, **kw
        )
        p = LivePipeline(ArraySource(ev), pr, window_us=20_000, drop_policy="block")
        with p:
            records.append(_drain(p))
        model.cpu()
    cpu, gpu = records
    assert len(cpu) == len(gpu) > 3
    for a, b in zip(cpu, gpu, strict=True):
        assert (a.window_start_us, a.n_events) == (b.window_start_us, b.n_events)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-3, atol=1e-4)


def test_traced_forward_predicts_exactly_like_eager(tiny):
    ev = _stream(12, n=8_000, span=100_000)
    records = []
    for trace in (False, True):
        model, contract = tiny
        pr = Predictor(
            model,
            contract,
            device="cpu",
            firing=True,
            energy_every=0,
            keep_frames=False,
            smoothing=0.0,
            trace=trace,
        )
        p = LivePipeline(ArraySource(ev), pr, window_us=20_000, drop_policy="block")
        with p:
            records.append(_drain(p))
        assert pr.firing is not trace  # hooks do not run inside a trace
    eager, traced = records
    assert len(eager) == len(traced) > 3
    for a, b in zip(eager, traced, strict=True):
        assert (a.window_start_us, a.n_events) == (b.window_start_us, b.n_events)
        assert a.scores == b.scores


class _Stateful(torch.nn.Module):
    """A model whose output depends on a Python-side call count: a trace would freeze it."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.flatten(1)[:, :4] + self.calls


def test_traced_forward_falls_back_to_eager_when_the_trace_differs(caplog):
    from sdt3_event.stream.predictor import _TracedForward

    model = _Stateful()
    forward = _TracedForward(model, lambda: None)
    x = torch.zeros(1, 2, 2, 4, 4)
    with caplog.at_level("WARNING"):
        first = forward(x)
    assert forward.failed and "running it eagerly" in caplog.text
    assert torch.equal(forward(x), first + 1)  # the eager model, call by call
