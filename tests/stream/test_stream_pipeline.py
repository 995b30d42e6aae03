"""The live pipeline: drop policy under overload, bounded memory, errors as status records,
pause / reset, the predictor on a real (tiny) model, sinks."""

from __future__ import annotations

import copy
import inspect
import io
import json
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch
from checkpoint_support import micro_contract, save_inference_checkpoint
from event_support import write_random_recording

from sdt3_event.events.contract import DataContract
from sdt3_event.events.schema import EVENT_DTYPE, make_events
from sdt3_event.stream.base import BaseEventSource
from sdt3_event.stream.factory import open_source
from sdt3_event.stream.pipeline import LivePipeline, build_pipeline
from sdt3_event.stream.predictor import (
    LabeledPrediction,
    Predictor,
    SensorMismatchError,
    live_contract,
)
from sdt3_event.stream.records import Prediction, StreamStatus
from sdt3_event.stream.sinks import JsonLinesSink, TeePipeline, drain
from sdt3_event.stream.windowing import EventWindow

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SlowPredictor:
    """Stands in for the model: sleeps, then reports the window it saw."""

    model_name, device, class_names = "slow-fake", "cpu", ("a", "b")

    def __init__(self, delay_s: float = 0.02, pipeline_ref: list | None = None) -> None:
        self.delay_s = delay_s
        self.bound = False
        self.queue_lengths: list[int] = []
        self.pipeline_ref = pipeline_ref

    def bind(self, sensor_size):
        self.bound = True

    def __call__(self, win: EventWindow, true_label=None) -> Prediction:
        if self.pipeline_ref:
            p = self.pipeline_ref[0]
            self.queue_lengths.append(len(p._windows))
        time.sleep(self.delay_s)
        return Prediction(
            window_start_us=win.start_us,
            window_end_us=win.end_us,
            labels=("a",),
            scores=(1.0,),
            smoothed_label="a",
            smoothed_score=1.0,
            latency_ms=(time.perf_counter() - win.arrival) * 1e3,
            n_events=win.n_events,
            event_rate_mev_s=0.0,
        )


def _collect(pipeline, timeout_s=30.0):
    preds, statuses = [], []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = pipeline.get(0.2)
        if r is None:
            if pipeline.finished:
                break
            continue
        (preds if isinstance(r, Prediction) else statuses).append(r)
    return preds, statuses


def test_overload_drops_whole_windows_keeping_the_newest():
    uri = "synthetic:?speed=0&max_gestures=12&seed=5"
    truth = np.concatenate(list(open_source(uri)))
    ref: list = []
    pred = SlowPredictor(0.02, ref)
    p = LivePipeline(open_source(uri), pred, window_us=50_000, stride_us=25_000)
    ref.append(p)
    with p:
        preds, statuses = _collect(p)
    s = p.stats
    assert s.windows_dropped > 0, "the fast source must overload the slow model"
    assert s.windows_in == s.windows_done + s.windows_dropped
    assert len(preds) == s.windows_done
    assert max(pred.queue_lengths) <= 2
    # every predicted window is whole: exactly the events of the source in [start, end)
    t = truth["t"]
    for r in preds:
        n = np.count_nonzero((t >= r.window_start_us) & (t < r.window_end_us))
        assert r.n_events == n
    starts = [r.window_start_us for r in preds]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert s.events_in == len(truth)
    assert statuses[-1].state == "finished"
    assert statuses[-1].windows_dropped == s.windows_dropped
    assert statuses[-1].events_dropped == s.events_dropped > 0
    # windows overlap 2x here: an event is counted once, so drops never exceed what was read
    assert s.events_dropped <= s.events_in


class FloodSource(BaseEventSource):
    """An endless source far faster than any model: 200k events per 1 ms of event time."""

    def __init__(self) -> None:
        super().__init__("flood:", (64, 64, 2))
        self.chunks = 0

    def _chunks(self):
        self._set_status("connected", "flooding")
        rng = np.random.default_rng(0)
        n = 200_000
        xy = rng.integers(0, 64, (2, n))
        base = make_events(np.sort(rng.integers(0, 1000, n)), xy[0], xy[1], xy[1] & 1)
        while not self.closed:
            chunk = base.copy()
            chunk["t"] += self.chunks * 1000
            self.chunks += 1
            yield chunk


@pytest.mark.parametrize("window_us", [2_000, 10_000])
def test_memory_stays_bounded_under_a_flood(window_us):
    src = FloodSource()
    peak = {"buffer": 0, "queue": 0, "records": 0}
    p = LivePipeline(
        src,
        SlowPredictor(0.1),
        window_us=window_us,
        max_window_events=1_000_000,
        max_records=8,
    )
    with p:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            peak["buffer"] = max(peak["buffer"], p._windower.buffered_events)
            peak["queue"] = max(peak["queue"], len(p._windows))
            peak["records"] = max(peak["records"], len(p._records))
            time.sleep(0.005)
    assert src.chunks > 5
    assert peak["buffer"] <= 1_000_000 + 200_000
    assert peak["queue"] <= 2
    assert peak["records"] <= 8
    s = p.stats
    if window_us == 2_000:  # 400k events a window: queued, most dropped whole, records unread
        assert s.windows_dropped > 0 and s.windows_done > 0 and s.records_dropped > 0
        assert s.events_dropped == s.windows_dropped * 400_000
    else:  # 2M events a window exceed the bound: dropped whole before queueing
        assert s.windows_overflow > 0 and s.windows_in == 0


class DyingSource(BaseEventSource):
    """Delivers a few chunks, then fails like a dropped connection."""

    def __init__(self, sensor=(32, 32, 2)) -> None:
        super().__init__("dying:", sensor)

    def _chunks(self):
        self._set_status("connected")
        for k in range(5):
            i = np.arange(100)
            yield make_events(k * 10_000 + i * 100, i % 32, i % 7, i % 2)
        raise ConnectionResetError("peer went away")


def test_a_dying_source_ends_in_an_error_status_not_an_exception():
    p = LivePipeline(DyingSource(), SlowPredictor(0.0), window_us=10_000, drop_policy="block")
    with p:
        preds, statuses = _collect(p)
    # the four windows completed before the failure; the open fifth one is not emitted
    assert [r.window_start_us for r in preds] == [0, 10_000, 20_000, 30_000]
    assert statuses[-1].state == "error"
    assert "peer went away" in statuses[-1].message
    assert p.error and "ConnectionResetError" in p.error
    assert p.get(0.01) is None and p.finished


def test_invalid_events_are_dropped_and_counted():
    class Noisy(BaseEventSource):
        def _chunks(self):
            z = np.zeros(10, int)
            yield make_events(np.arange(10) * 1000, [0, 1, 99, 2, -1, 3, 4, 5, 6, 7], z, z)

    p = LivePipeline(Noisy("noisy:", (8, 8, 2)), SlowPredictor(0.0), window_us=5_000)
    with p:
        _collect(p)
    assert p.stats.events_invalid == 2
    assert p.stats.events_in == 10


def test_pause_skips_windows_and_reset_zeroes_counters():
    p = LivePipeline(open_source("synthetic:?speed=4&seed=1"), SlowPredictor(0.0), window_us=50_000)
    p.paused = True
    with p:
        time.sleep(0.6)
        assert p.stats.windows_paused > 0 and p.stats.windows_done == 0
        st = p.status()
        assert st.message.startswith("paused")
        p.paused = False
        r = None
        deadline = time.monotonic() + 10
        while not isinstance(r, Prediction) and time.monotonic() < deadline:
            r = p.get(0.2)
        assert isinstance(r, Prediction)
        p.reset_stats()
        assert p.stats.windows_paused == 0 and p.stats.events_in < 10_000
    assert p.model_name == "slow-fake" and p.class_names == ("a", "b")
    assert p.source_uri.startswith("synthetic:")


def test_stop_is_prompt_on_a_real_time_source():
    p = LivePipeline(open_source("synthetic:?speed=0.01"), SlowPredictor(0.0), window_us=50_000)
    p.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 3
    assert not any(t.is_alive() for t in p._threads)
    records = []
    while (r := p.get(0.05)) is not None:
        records.append(r)
    assert isinstance(records[-1], StreamStatus) and records[-1].state == "finished"


def test_ctrl_c_in_get_never_releases_a_lock_held_by_a_pipeline_thread():
    """Ctrl-C in ``get()`` while a pipeline thread holds the lock (get() waking up, waiting to
    take it back) must leave that thread's lock alone. With a plain Lock the interrupted wait
    released it: the thread then failed with ``release unlocked lock`` and ``stop()`` could hang."""
    p = LivePipeline(open_source("synthetic:"), SlowPredictor(0.0), window_us=50_000)
    main = threading.main_thread()
    code, first = inspect.getsourcelines(threading.Condition.wait)
    retake = {first + i for i, line in enumerate(code) if "_acquire_restore" in line}
    errors: list[BaseException] = []

    def waiting_to_retake() -> bool:
        frame = sys._current_frames()[main.ident]
        name = frame.f_code.co_name
        return name == "_acquire_restore" or (name == "wait" and frame.f_lineno in retake)

    def holder():
        try:
            deadline = time.monotonic() + 5
            while not p._record_ready._waiters:  # get() waits for a record
                assert time.monotonic() < deadline
                time.sleep(0.001)
            with p._lock:
                p._record_ready.notify_all()  # wake get(): it now waits for this lock
                while not waiting_to_retake():
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                signal.pthread_kill(main.ident, signal.SIGINT)
                time.sleep(0.1)  # Ctrl-C is handled while this thread holds the lock
        except BaseException as exc:  # the release at the end of ``with`` included
            errors.append(exc)

    t = threading.Thread(target=holder)
    # Ctrl-C raises KeyboardInterrupt even where the runner started with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            p.get(timeout=5)
    finally:
        t.join(10)
        signal.signal(signal.SIGINT, previous)
    assert not errors
    assert p._lock.acquire(timeout=1)  # free again
    p._lock.release()
    with p:  # and the pipeline still runs and stops
        assert isinstance(p.get(timeout=10), StreamStatus)
    assert not any(t.is_alive() for t in p._threads)


# -- the predictor on a real tiny model --------------------------------------------------------

CLASSES = tuple(f"c{i}" for i in range(5))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    from sdt3_event import create_model

    model = create_model("sdt3_micro", num_classes=len(CLASSES), in_chans=2, T=2)
    with torch.no_grad():  # an untrained head gives uniform scores; make them informative
        for name, param in model.named_parameters():
            if "layer_scale" in name:
                param.fill_(0.5)
        for mod in model.modules():  # keep spikes alive through the depth
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.weight.fill_(4.0)
                mod.bias.fill_(0.3)
        model.head.weight.normal_(0, 0.05)
    model.eval()
    return model, micro_contract((48, 40, 2), (32, 32), 20_000, CLASSES)


def _window(start=0, end=20_000, n=500, sensor=(48, 40), seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(start, end, n))
    ev = make_events(t, rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), t % 2)
    return EventWindow(0, start, end, ev, time.perf_counter())


def test_predictor_produces_a_complete_record(tiny):
    model, contract = tiny
    pr = Predictor(
        model, contract, model_name="sdt3_micro", device="cpu", top_k=3, smoothing=0.5,
        energy_every=2,
    )  # fmt: skip
    pr.bind((48, 40, 2))
    pr.warmup()
    r1 = pr(_window(seed=1))
    assert isinstance(r1, Prediction) and r1.labels[0] in CLASSES
    assert len(r1.labels) == 3 and list(r1.scores) == sorted(r1.scores, reverse=True)
    assert 0 < sum(r1.scores) <= 1 + 1e-6
    assert r1.latency_ms >= 0 and r1.n_events == 500
    assert r1.event_rate_mev_s == pytest.approx(500 / 20_000)
    assert r1.frame.shape == (2, 32, 32) and r1.frame.sum() > 0
    json.loads(r1.to_json())
    # firing statistics every window, energy on every 2nd window
    assert r1.firing and all(0 <= v <= 4 for v in r1.firing.values())
    assert r1.energy_uj is not None and r1.energy_uj > 0
    # EMA smoothing: the smoothed score is between the two windows' probabilities of that class
    r2 = pr(_window(seed=2), true_label="c1")
    assert isinstance(r2, LabeledPrediction) and r2.true_label == "c1"
    assert json.loads(r2.to_json())["true_label"] == "c1"
    assert 0 < r2.smoothed_score <= 1
    assert r2.energy_uj is None and r2.firing
    p1 = dict(zip(r1.labels, r1.scores, strict=True))
    p2 = dict(zip(r2.labels, r2.scores, strict=True))
    top = r2.smoothed_label
    if top in p1 and top in p2:
        assert r2.smoothed_score == pytest.approx(0.5 * p1[top] + 0.5 * p2[top], rel=1e-5)


def test_spike_driven_predictor_reports_the_integer_models_energy(tiny):
    """The executor does the integer model's operations as spikes: the same energy per window,
    counted on the integer model, and the same scores."""
    model, contract = tiny
    kw = dict(device="cpu", smoothing=0.0, energy_every=1, keep_frames=False)
    ref = Predictor(copy.deepcopy(model), contract, **kw)
    spk = Predictor(copy.deepcopy(model), contract, spike_driven=True, **kw)
    for pr in (ref, spk):
        pr.bind((48, 40, 2))
        pr.warmup()
    for seed in (1, 2):
        a, b = ref(_window(seed=seed)), spk(_window(seed=seed))
        assert a.energy_uj is not None and a.energy_uj > 0
        assert b.energy_uj == pytest.approx(a.energy_uj, rel=1e-9)
        assert b.labels == a.labels and b.scores == pytest.approx(a.scores, abs=1e-4)


def test_predictor_matches_a_direct_forward_pass(tiny):
    model, contract = tiny
    from sdt3_event.events.transforms import build_frame_transform

    win = _window(start=1_000_000, end=1_020_000, seed=3)
    pr = Predictor(model, contract, device="cpu", top_k=5, smoothing=0.0)
    pr.bind((48, 40, 2))
    r = pr(win)
    x = build_frame_transform(contract)(win.events, t_start_us=win.start_us)
    with torch.inference_mode():
        model.reset_state()
        probs = torch.softmax(model(x.unsqueeze(0)), -1)[0]  # (classes,)
    best = int(probs.argmax())
    assert float(probs.max() - probs.min()) > 1e-3  # informative scores, not a tie
    assert r.labels[0] == CLASSES[best]
    assert r.scores[0] == pytest.approx(float(probs[best]), rel=1e-5)


@pytest.mark.slow
def test_spike_driven_executor_predicts_like_the_integer_model(tiny):
    model, contract = tiny
    win = _window(seed=4)
    out = []
    for spike_driven in (False, True):
        pr = Predictor(model, contract, device="cpu", spike_driven=spike_driven, smoothing=0.0)
        pr.bind((48, 40, 2))
        out.append(pr(win))
    assert out[0].labels == out[1].labels
    np.testing.assert_allclose(out[0].scores, out[1].scores, rtol=1e-3, atol=1e-5)


def test_sensor_mismatch_is_a_clear_error_unless_mapped(tiny):
    _, contract = tiny
    with pytest.raises(SensorMismatchError, match="--sensor-map"):
        live_contract(contract, (320, 240, 2))
    mapped = live_contract(contract, (320, 240, 2), sensor_map="resize", window_us=5_000)
    assert mapped.sensor_size == (320, 240, 2) and mapped.spatial == "resize"
    assert mapped.window_us == 5_000 and mapped.input_size == contract.input_size
    no_window = DataContract((48, 40, 2), (32, 32), 2)
    with pytest.raises(ValueError, match="--window-us"):
        live_contract(no_window, (48, 40, 2))


def test_pipeline_reports_a_mismatched_source_as_an_error_status(tiny):
    model, contract = tiny
    pr = Predictor(model, contract, device="cpu")
    p = LivePipeline(DyingSource(sensor=(32, 32, 2)), pr, window_us=10_000)
    with p:
        preds, statuses = _collect(p)
    assert preds == []
    assert statuses[-1].state == "error" and "--sensor-map" in statuses[-1].message


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny, tmp_path_factory):
    model, contract = tiny
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_inference_checkpoint(path, model, contract)
    return path


@pytest.fixture(scope="module")
def small_recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "rec.npz"
    return path, write_random_recording(path, 20_000, (48, 40, 2), seed=0, t_max=400_000)


def test_build_pipeline_end_to_end_on_a_file(tiny_checkpoint, small_recording):
    path, ev = small_recording
    p = build_pipeline(
        f"file:{path}?speed=0", tiny_checkpoint, device="cpu", max_queued_windows=10_000
    )
    assert p.model_name == "sdt3_micro" and p.class_names == CLASSES
    assert p.window_us == 20_000 and p.stride_us == 10_000  # contract window, half stride
    buf = io.StringIO()
    with p:
        result = drain(p, [JsonLinesSink(buf)])
    assert result.reason == "end" and not result.failed
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    preds = [d for d in lines if d["type"] == "prediction"]
    assert len(preds) == p.stats.windows_done == p.stats.windows_in > 30
    assert lines[-1]["type"] == "status" and lines[-1]["state"] == "finished"
    assert lines[-1]["events_in"] == len(ev)
    assert all(d["labels"][0] in CLASSES and "frame" not in d for d in preds)


def test_build_pipeline_rejects_a_sensor_that_does_not_fit(tiny_checkpoint, tmp_path):
    from sdt3_event.events.io import write_events

    path = tmp_path / "big.npz"
    write_events(path, make_events([0, 10], [100, 5], [7, 90], [1, 0]), (128, 96, 2))
    with pytest.raises(SensorMismatchError, match="128x96.*48x40"):
        build_pipeline(f"file:{path}", tiny_checkpoint, device="cpu")
    p = build_pipeline(f"file:{path}", tiny_checkpoint, device="cpu", sensor_map="center_crop")
    assert p.predictor.live.spatial == "center_crop"
    p.stop()


def test_tee_pipeline_writes_records_and_stops_at_the_limit():
    p = LivePipeline(open_source("synthetic:?speed=0"), SlowPredictor(0.0), window_us=50_000)
    buf = io.StringIO()
    tee = TeePipeline(p, [JsonLinesSink(buf, statuses=False)], max_windows=3)
    tee.start()
    tee.paused = False  # forwarded
    seen = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = tee.get(0.2)
        if r is None and p.finished:
            break
        seen += isinstance(r, Prediction)
    p.stop()
    lines = buf.getvalue().splitlines()
    assert seen >= 3 and len(lines) == seen
    assert all(json.loads(line)["type"] == "prediction" for line in lines)


def test_jsonl_file_sink(tmp_path):
    sink = JsonLinesSink.to_file(tmp_path / "out" / "live.jsonl")
    sink.write(StreamStatus(state="connected", source="x"))
    sink.close()
    (line,) = (tmp_path / "out" / "live.jsonl").read_text().splitlines()
    assert json.loads(line) == json.loads(StreamStatus(state="connected", source="x").to_json())


def test_events_dtype_contract():
    assert EVENT_DTYPE.names == ("t", "x", "y", "p")
    assert threading.active_count() >= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("options", [{}, {"channels_last": True}, {"compile": True}])
def test_predictor_on_cuda_matches_cpu(tiny, options):
    model, contract = tiny
    win = _window(seed=6)
    cpu = Predictor(model, contract, device="cpu", smoothing=0.0)
    cpu.bind((48, 40, 2))
    # the predictor takes the module it is given (moves it, converts it): give it a copy
    gpu = Predictor(copy.deepcopy(model), contract, device="cuda", smoothing=0.0, **options)
    gpu.bind((48, 40, 2))
    # TF32 convolutions (cuDNN's default) perturb pre-activations by ~1e-3, enough to move the
    # quantiser's rounding at many neurons; with full float32 the two devices agree.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        gpu.warmup()
        a, b = cpu(win), gpu(win)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert a.labels == b.labels
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-3, atol=1e-4)
    assert b.latency_ms > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spike_driven", [False, True])
def test_demo_pipeline_on_cuda(spike_driven):
    from sdt3_event.assets import DEMO_CHECKPOINT

    p = build_pipeline(
        "synthetic:?speed=0&max_gestures=8&seed=2",
        DEMO_CHECKPOINT,
        device="cuda",
        spike_driven=spike_driven,
        drop_policy="block",
    )
    assert p.device.startswith("cuda")
    with p:
        preds, statuses = _collect(p, timeout_s=120)
    assert len(preds) >= 10 and statuses[-1].state == "finished"
    right = sum(r.label == r.true_label for r in preds if r.window_start_us % p.window_us == 0)
    assert right >= 4


def test_tcp_source_through_the_pipeline_across_reconnections(tiny_checkpoint, small_recording):
    dv_server = pytest.importorskip("sdt3_event.stream.dv_server")
    _, ev = small_recording
    server = dv_server.DVServer(ev, (48, 40, 2), host="127.0.0.1", port=0, speed=0)
    server.start()
    try:
        p = build_pipeline(
            f"tcp://127.0.0.1:{server.port}?backoff_s=0.05",
            tiny_checkpoint,
            device="cpu",
            drop_policy="block",
            energy_every=0,
            firing=False,
        )
        t = ev["t"]
        with p:
            preds = []
            deadline = time.monotonic() + 60
            # the server replays the recording to each client and hangs up at the end; the
            # client reconnects and gets the next replay
            while time.monotonic() < deadline and p.stats.events_in < 2.5 * len(ev):
                r = p.get(0.2)
                if isinstance(r, Prediction):
                    preds.append(r)
            # read while running: stopping a stream that still flows may discard the one window
            # the reader is blocked on (counted as dropped), which is not a loss under `block`
            late, dropped = p.stats.events_late, p.stats.windows_dropped
        assert p.stats.events_in >= 2.5 * len(ev)
        first_pass = [r for r in preds if r.window_end_us <= t[-1]]
        assert len(first_pass) >= 30
        for r in first_pass:
            assert r.n_events == np.count_nonzero((t >= r.window_start_us) & (t < r.window_end_us))
        # across reconnections the windows go on: no late events, strictly increasing windows
        starts = [r.window_start_us for r in preds]
        assert starts == sorted(set(starts)) and starts[-1] > t[-1]
        assert late == 0 and dropped == 0
    finally:
        server.stop()
