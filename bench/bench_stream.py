"""Live pipeline benchmark: sustained event rate, latency at 1 and 10 Mev/s, memory under overload.

    python bench/bench_stream.py            # full run (minutes)
    python bench/bench_stream.py --smoke    # seconds, small numbers, for CI

Measured, for each model (the bundled demo model, and the 19M DVS model ``sdt3_19m_hardvs`` with
random weights, at a reduced input size and T on CPU, stated in the table):

1. *Sustained rate*: the whole pipeline (source -> windows -> frames -> model -> records) replays a
   dense random event stream as fast as it can with lossless back-pressure; events / wall time is
   the highest rate it keeps up with without losing events. The same for the ingest path alone
   (windowing only, no model), and for the TCP path (the project's DV server -> NetworkSource)
   when ``sdt3_event.stream.network`` is installed.
2. *Latency* p50 / p99 (last event of a window arriving -> prediction) with a source paced in real
   time at 1 and 10 Mev/s, keep-newest drop policy; the fraction of windows dropped is reported.
3. *Memory*: peak RSS while a source floods the pipeline at 10x its sustained rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from sdt3_event.events.contract import DataContract
from sdt3_event.events.schema import EVENT_DTYPE
from sdt3_event.stream.pipeline import DEFAULT_MAX_WINDOW_EVENTS, LivePipeline
from sdt3_event.stream.predictor import Predictor
from sdt3_event.stream.records import Prediction
from sdt3_event.stream.source import BaseEventSource

SENSOR = (128, 128, 2)


class RateSource(BaseEventSource):
    """Uniform random events at ``rate_mev_s`` on the sensor, in ``chunk_us`` chunks.

    ``paced=True`` releases each chunk when the wall clock reaches its last timestamp (a live
    camera); ``paced=False`` releases them as fast as they are taken. Stops after ``duration_s`` of
    event time.
    """

    def __init__(self, rate_mev_s, duration_s, *, paced=True, chunk_us=1000, sensor=SENSOR):
        super().__init__(f"rate:{rate_mev_s:g}Mev/s", sensor)
        self.rate = rate_mev_s
        self.duration_us = int(duration_s * 1e6)
        self.paced = paced
        self.chunk_us = chunk_us
        rng = np.random.default_rng(0)
        self.per_chunk = max(1, int(round(rate_mev_s * chunk_us)))
        pool = 1 << 20
        self._x = rng.integers(0, sensor[0], pool).astype(np.int16)
        self._y = rng.integers(0, sensor[1], pool).astype(np.int16)
        self._p = rng.integers(0, 2, pool).astype(bool)
        self._offsets = np.sort(rng.integers(0, chunk_us, self.per_chunk))
        self.events_sent = 0

    def _chunks(self):
        self._set_status("connected", self.uri)
        n = self.per_chunk
        wall0 = time.perf_counter()
        pool = len(self._x)
        for k in range(self.duration_us // self.chunk_us):
            t0 = k * self.chunk_us
            if self.paced:
                due = wall0 + (t0 + self.chunk_us) / 1e6
                if not self._sleep(due - time.perf_counter()):
                    return
            ev = np.empty(n, EVENT_DTYPE)
            s = (k * n) % (pool - n) if pool > n else 0
            ev["t"] = t0 + self._offsets
            ev["x"] = self._x[s : s + n] if pool > n else self._x[np.arange(n) % pool]
            ev["y"] = self._y[s : s + n] if pool > n else self._y[np.arange(n) % pool]
            ev["p"] = self._p[s : s + n] if pool > n else self._p[np.arange(n) % pool]
            self.events_sent += n
            yield ev


class NullPredictor:
    """Windowing only: the ingest path without framing or a model."""

    model_name, device, class_names, bound = "none", "cpu", (), True

    def bind(self, sensor_size):
        pass

    def __call__(self, win, true_label=None):
        return Prediction(win.start_us, win.end_us, (), (), "", 0.0, 0.0, win.n_events, 0.0)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drain_all(p: LivePipeline, limit_s: float) -> list[Prediction]:
    preds = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        r = p.get(0.1)
        if r is None:
            if p.finished:
                break
            continue
        if isinstance(r, Prediction):
            preds.append(r)
    return preds


def sustained_rate(predictor, window_us, stride_us, rate_mev_s, seconds, limit_s):
    """Lossless replay as fast as possible: Mev/s processed end to end."""
    src = RateSource(rate_mev_s, seconds, paced=False)
    p = LivePipeline(src, predictor, window_us=window_us, stride_us=stride_us, drop_policy="block")
    t0 = time.perf_counter()
    with p:
        preds = drain_all(p, limit_s)
    wall = time.perf_counter() - t0
    assert p.stats.windows_dropped == 0 and p.stats.windows_overflow == 0
    return p.stats.events_in / wall / 1e6, len(preds), wall


def tcp_rate(seconds_of_events: float, rate_mev_s: float) -> float | None:
    """Events through the project's DV server and NetworkSource as fast as possible (Mev/s)."""
    try:
        from sdt3_event.stream.network import DVServer, NetworkSource
    except ImportError:
        return None
    src = RateSource(rate_mev_s, seconds_of_events, paced=False, chunk_us=1000)
    events = np.concatenate(list(src))
    server = DVServer(events, SENSOR, host="127.0.0.1", port=0, speed=0)
    with server:
        client = NetworkSource("127.0.0.1", server.port, reconnect=False)
        n = 0
        t0 = time.perf_counter()
        for chunk in client:
            n += len(chunk)
            if n >= len(events):
                break
        wall = time.perf_counter() - t0
        client.close()
    return n / wall / 1e6


def latency(predictor, window_us, stride_us, rate_mev_s, seconds, limit_s):
    src = RateSource(rate_mev_s, seconds, paced=True)
    p = LivePipeline(src, predictor, window_us=window_us, stride_us=stride_us)
    with p:
        preds = drain_all(p, limit_s)
    lat = sorted(r.latency_ms for r in preds[1:]) or [float("nan")]
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    s = p.stats
    dropped = (s.windows_dropped + s.windows_overflow) / max(1, s.windows_in + s.windows_overflow)
    return p50, p99, dropped, len(preds)


def overload_memory(predictor, window_us, stride_us, rate_mev_s, seconds, max_window_events):
    """Peak RSS while a paced source runs at ``rate_mev_s`` (10x the sustained rate)."""
    peak = [rss_mb()]
    before = peak[0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    src = RateSource(rate_mev_s, seconds, paced=True)
    p = LivePipeline(
        src,
        predictor,
        window_us=window_us,
        stride_us=stride_us,
        max_window_events=max_window_events,
    )
    with p:
        preds = drain_all(p, seconds + 30)
    stop.set()
    sampler.join()
    s = p.stats
    return before, peak[0], s.events_in / 1e6 / seconds, s, len(preds)


def frame_and_forward_ms(predictor, window_us, rate_mev_s, repeats):
    """Median time to bin one window of events at ``rate_mev_s`` and to run the model on it."""
    from sdt3_event.stream.windowing import EventWindow

    src = RateSource(rate_mev_s, window_us / 1e6, paced=False)
    events = np.concatenate(list(src))
    win = EventWindow(0, 0, window_us, events, time.perf_counter())
    t_frames, t_total = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.frames(win)
        t1 = time.perf_counter()
        predictor(win)
        t2 = time.perf_counter()
        t_frames.append(t1 - t0)
        t_total.append(t2 - t1)
    return statistics.median(t_frames) * 1e3, statistics.median(t_total) * 1e3


def demo_model(device):
    try:
        from sdt3_event.assets import DEMO_CHECKPOINT
        from sdt3_event.engine.checkpoint import load_model_from_checkpoint

        if Path(DEMO_CHECKPOINT).is_file():
            lm = load_model_from_checkpoint(DEMO_CHECKPOINT, device=device)
            return "demo " + lm.model_name, lm.model, lm.contract
    except ImportError:
        pass
    from sdt3_event import create_model

    model = create_model("sdt3_micro", num_classes=10, in_chans=2, T=4, neuron="temporal_if")
    contract = DataContract(SENSOR, (64, 64), 4, window_us=500_000, class_names=())
    return "sdt3_micro (demo stand-in, random weights)", model, contract


def dvs19m_model(input_hw, T):
    from sdt3_event import create_model

    model = create_model("sdt3_19m_hardvs", T=T)
    contract = DataContract(SENSOR, input_hw, T, window_us=100_000, representation="binary")
    return f"sdt3_19m_hardvs (random weights, {input_hw[0]}x{input_hw[1]}, T={T})", model, contract


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--window-us", type=int, default=50_000)
    ap.add_argument("--stride-us", type=int, default=50_000)
    ap.add_argument("--no-19m", action="store_true", help="skip the 19M model")
    ap.add_argument("--firing", action="store_true", help="record firing rates (slower)")
    ap.add_argument(
        "--threads",
        type=int,
        default=max(1, min(4, (os.cpu_count() or 1) - 1)),
        help="torch intra-op threads (default: cores - 1, at most 4)",
    )
    ap.add_argument(
        "--max-window-events",
        type=int,
        default=DEFAULT_MAX_WINDOW_EVENTS,
        help="the pipeline's bound on events per window (default: the live default, 16M)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    smoke = args.smoke
    seconds = 1.0 if smoke else 4.0
    win, stride = args.window_us, args.stride_us
    cpu = args.device == "cpu"
    print(
        f"# bench_stream  device={args.device}  torch={torch.__version__}  "
        f"cpu={platform.processor() or platform.machine()} x{os.cpu_count()}  "
        f"threads={torch.get_num_threads()}  smoke={smoke}"
    )
    print(f"# sensor {SENSOR[0]}x{SENSOR[1]}, window {win} us, stride {stride} us")

    ingest, _, _ = sustained_rate(NullPredictor(), win, stride, 20.0, seconds, 120)
    print(f"ingest (source -> windows, no model), lossless: {ingest:8.2f} Mev/s")
    tcp = tcp_rate(0.2 if smoke else 1.0, 10.0)
    if tcp is None:
        print("tcp (DV server -> NetworkSource): network module not installed")
    else:
        print(f"tcp (DV server -> NetworkSource, loopback): {tcp:8.2f} Mev/s")

    models = [demo_model(args.device)]
    if not args.no_19m and not smoke:
        models.append(dvs19m_model((64, 64) if cpu else (224, 224), 2 if cpu else 8))
    rows = []
    for label, model, contract in models:
        pr = Predictor(
            model,
            contract,
            model_name=label,
            device=args.device,
            firing=args.firing,
            energy_every=0,
            keep_frames=False,
            window_us=win,
        )
        pr.bind(SENSOR)
        pr.warmup()
        print(f"\n## {label}")
        for r in (1.0, 10.0):
            f_ms, p_ms = frame_and_forward_ms(pr, win, r, 3 if smoke else 10)
            print(
                f"one window at {r:4.0f} Mev/s ({int(r * win):,} events, frames "
                f"{contract.frame_shape}): binning {f_ms:.1f} ms, binning + forward "
                f"{p_ms:.1f} ms (median)"
            )
        rate, n_pred, wall = sustained_rate(pr, win, stride, 20.0, seconds, 600)
        print(f"sustained, lossless: {rate:.2f} Mev/s ({n_pred} windows in {wall:.1f} s)")
        lat = {}
        for r in (1.0, 10.0):
            p50, p99, dropped, n = latency(pr, win, stride, r, seconds, seconds + 60)
            lat[r] = (p50, p99, dropped)
            print(
                f"latency at {r:4.0f} Mev/s: p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  "
                f"windows dropped {dropped:6.1%}  ({n} predictions)"
            )
        over = 10 * rate
        before, peak, got, st, n_over = overload_memory(
            pr, win, stride, over, seconds, args.max_window_events
        )
        print(
            f"10x overload ({over:.1f} Mev/s offered, {got:.1f} Mev/s read, "
            f"{over * win / 1e6:.1f}M events a window, bound {args.max_window_events / 1e6:g}M): "
            f"RSS {before:.0f} -> peak {peak:.0f} MiB; {n_over} predictions, "
            f"{st.windows_dropped} windows dropped behind the model, "
            f"{st.windows_overflow} over the bound"
        )
        rows.append((label, rate, lat, before, peak))
    print(
        "\n| model | sustained Mev/s | p50/p99 @1 Mev/s (ms) | p50/p99 @10 Mev/s (ms) | peak RSS at 10x (MiB) |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, rate, lat, before, peak in rows:
        print(
            f"| {label} | {rate:.2f} | {lat[1.0][0]:.1f} / {lat[1.0][1]:.1f} | "
            f"{lat[10.0][0]:.1f} / {lat[10.0][1]:.1f} | {peak:.0f} (from {before:.0f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
