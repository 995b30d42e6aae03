"""Live pipeline benchmark: binning, lossless replay, latency, memory under overload, as ratios to
the raw AEDAT 4.0 decode of the ``aedat`` package measured in the same run.

    python bench/bench_stream.py            # full run (a few minutes on 2 cores)
    python bench/bench_stream.py --smoke    # seconds, small numbers, for CI

With the bundled demo model (``sdt3_micro``, 128x128 sensor, 64x64 input, T=8) on the CPU:

1. *Reference*: a recording of ``--events`` (10M) uniform random events on the 128x128 sensor at
   ``--rate-mev-s`` (20 Mev/s) is written as AEDAT 4.0; ``aedat.Decoder`` decodes it (best of 2):
   every other figure is also given as a ratio to that rate.
2. *Binning*: one 500k-event window through the checkpoint's transform
   (``build_frame_transform(contract)``, one core), and through the step-by-step path it replaced.
3. *CLI, lossless*: ``sdt3-event live --source file:REC --speed 0 --lossless --json`` in a
   subprocess; events / seconds between its first and last status record (the pipeline), and the
   whole command's wall time (start-up, model load and file read included).
4. *Sustained lossless*, *latency* p50 / p99 at 1 and 10 Mev/s (paced source, keep-newest
   drops) and *peak RSS* with the source at 10x the sustained rate, for an in-process source
   (``--window-us`` windows) and for the same stream through the project's DV server and
   ``tcp://`` client (``NetworkSource``).

Results print as a table and go to ``bench/results/bench_stream[_smoke].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from sdt3_event.events.contract import DataContract
from sdt3_event.events.schema import EVENT_DTYPE, make_events
from sdt3_event.stream.base import BaseEventSource
from sdt3_event.stream.pipeline import LivePipeline
from sdt3_event.stream.predictor import Predictor
from sdt3_event.stream.records import Prediction, StreamStatus

SENSOR = (128, 128, 2)
RESULTS = Path(__file__).resolve().parent / "results"


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
            idx = np.arange(k * n, (k + 1) * n) % pool if n > pool else None
            s = (k * n) % (pool - n) if n < pool else 0
            for f, src in (("x", self._x), ("y", self._y), ("p", self._p)):
                ev[f] = src[idx] if idx is not None else src[s : s + n]
            ev["t"] = t0 + self._offsets
            self.events_sent += n
            yield ev

    def events(self) -> np.ndarray:
        """All the events this source sends, as one array."""
        return np.concatenate(list(RateSource(self.rate, self.duration_us / 1e6, paced=False)))


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
    """The predictions of a started pipeline until its stream ends (or ``limit_s``)."""
    from sdt3_event.stream.sinks import drain

    records: list = []
    drain(p, [type("Sink", (), {"write": staticmethod(records.append)})()], duration_s=limit_s)
    return [r for r in records if isinstance(r, Prediction)]


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ----------------------------------------------------------------------------------- reference
def write_recording(path: Path, n: int, rate_mev_s: float) -> np.ndarray:
    from sdt3_event.events.io import write_events

    rng = np.random.default_rng(0)
    t = np.floor(np.cumsum(rng.exponential(1.0 / rate_mev_s, n))).astype(np.int64)
    ev = make_events(
        t, rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), rng.integers(0, 2, n)
    )
    write_events(path, ev, SENSOR)
    return ev


def aedat_decode_rate(path: Path, n: int, repeat: int) -> float | None:
    """``aedat.Decoder`` over the whole file (events only, no conversion), Mev/s."""
    try:
        import aedat
    except ImportError:
        return None

    def decode():
        got = 0
        for packet in aedat.Decoder(str(path)):
            if "events" in packet:
                got += len(packet["events"])
        assert got == n, (got, n)

    decode()  # warm the page cache
    return n / best_of(decode, repeat) / 1e6


# ------------------------------------------------------------------------------------- binning
def binning(contract: DataContract, events: np.ndarray, repeat: int) -> dict:
    """One window of ``events`` through the contract's transform, and the step-by-step path."""
    from sdt3_event.events.transforms import build_frame_transform

    tf = build_frame_transform(contract)
    start = int(events["t"][0])
    end = start + contract.window_us
    assert int(events["t"][-1]) < end, "the window must hold all the events"
    assert torch.equal(
        tf(events, t_start_us=start),
        torch.from_numpy(tf._frames_stepwise(events, start, end, True)),
    )
    fused = best_of(lambda: tf(events, t_start_us=start), repeat)
    stepwise = best_of(lambda: tf._frames_stepwise(events, start, end, True), max(2, repeat // 4))
    n = len(events)
    return {
        "events": n,
        "ms": fused * 1e3,
        "mev_s": n / fused / 1e6,
        "stepwise_ms": stepwise * 1e3,
        "stepwise_mev_s": n / stepwise / 1e6,
    }


# -------------------------------------------------------------------------------- CLI replay
def cli_lossless(path: Path, threads: int | None, limit_s: float) -> dict:
    """``sdt3-event live --source file:REC --speed 0 --lossless --json`` in a subprocess."""
    exe = shutil.which("sdt3-event")
    cmd = [exe] if exe else [sys.executable, "-m", "sdt3_event.apps.cli"]
    cmd += ["live", "--source", f"file:{path}", "--speed", "0", "--lossless", "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    statuses = [d for d in lines if d["type"] == "status"]
    preds = [d for d in lines if d["type"] == "prediction"]
    last = statuses[-1]
    span = last["wall_time"] - statuses[0]["wall_time"]
    return {
        "command": " ".join(cmd[len(cmd) - 7 :] if exe else cmd),
        "events_in": last["events_in"],
        "events_dropped": last["events_dropped"],
        "windows": len(preds),
        "windows_dropped": last["windows_dropped"],
        "state": last["state"],
        "pipeline_s": span,
        "pipeline_mev_s": last["events_in"] / span / 1e6,
        "command_s": wall,
        "command_mev_s": last["events_in"] / wall / 1e6,
    }


# ------------------------------------------------------------------------------ live figures
def make_tcp_source(events: np.ndarray, speed: float, loop: bool = False):
    """A DV server replaying ``events`` and a ``tcp://`` client source reading it."""
    from sdt3_event.stream.dv_server import DVServer
    from sdt3_event.stream.network import NetworkSource

    server = DVServer(events, SENSOR, host="127.0.0.1", port=0, speed=speed, loop=loop)
    server.start()
    return server, NetworkSource("127.0.0.1", server.port, reconnect=False)


def make_source(transport: str, rate: float, paced: bool, duration_s: float, loop: bool = False):
    """``(source, server)``: a RateSource in process, or its events through the project's DV
    server and a ``tcp://`` client (paced by the server in real time, or as fast as read;
    ``loop``: a 50 ms stream served over and over, for runs bounded by time)."""
    if transport == "in-process":
        return RateSource(rate, duration_s, paced=paced), None
    events = RateSource(rate, min(duration_s, 0.05) if loop else duration_s, paced=False).events()
    server, client = make_tcp_source(events, speed=1.0 if paced else 0.0, loop=loop)
    return client, server


def run(predictor, fn, transport, rate, paced, duration_s, *fn_args, loop=False):
    """``fn(predictor, window, stride, source, *fn_args)`` on a fresh source of ``transport``."""
    src, server = make_source(transport, rate, paced, duration_s, loop)
    try:
        return fn(predictor, *predictor.bench_window, src, *fn_args)
    finally:
        if server is not None:
            server.stop()


def sustained_rate(predictor, window_us, stride_us, source, limit_s):
    """Lossless replay as fast as possible: Mev/s processed end to end."""
    p = LivePipeline(
        source, predictor, window_us=window_us, stride_us=stride_us, drop_policy="block"
    )
    t0 = time.perf_counter()
    with p:
        preds = drain_all(p, limit_s)
    wall = time.perf_counter() - t0
    s = p.stats
    lossless = s.windows_dropped == 0 and s.windows_overflow == 0 and s.events_dropped == 0
    return {
        "mev_s": s.events_in / wall / 1e6,
        "windows": len(preds),
        "s": wall,
        "events_in": s.events_in,
        "lossless": lossless,
    }


def latency(predictor, window_us, stride_us, source, limit_s):
    p = LivePipeline(source, predictor, window_us=window_us, stride_us=stride_us)
    with p:
        preds = drain_all(p, limit_s)
    lat = sorted(r.latency_ms for r in preds[1:]) or [float("nan")]
    s = p.stats
    dropped = (s.windows_dropped + s.windows_overflow) / max(1, s.windows_in + s.windows_overflow)
    return {
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))],
        "windows_dropped": dropped,
        "windows": len(preds),
    }


def overload_memory(predictor, window_us, stride_us, source, seconds, offered_mev_s):
    """RSS while ``source`` floods the pipeline; the drops its status records report."""
    before = rss_mb()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    p = LivePipeline(source, predictor, window_us=window_us, stride_us=stride_us)
    last_status = None
    t0 = time.perf_counter()
    with p:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not p.finished:
            r = p.get(0.1)
            if isinstance(r, StreamStatus):
                last_status = r
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    s = p.stats
    final = p.status()
    return {
        "offered_mev_s": offered_mev_s,
        "read_mev_s": s.events_in / wall / 1e6,
        "rss_before_mib": before,
        "rss_peak_mib": peak[0],
        "rss_growth_mib": peak[0] - before,
        "windows_done": s.windows_done,
        "windows_dropped": final.windows_dropped,
        "events_dropped": final.events_dropped,
        "status_records_count_drops": last_status is None
        or last_status.windows_dropped <= final.windows_dropped,
    }


def demo_model(device):
    from sdt3_event.assets import DEMO_CHECKPOINT
    from sdt3_event.checkpoint import load_model_from_checkpoint

    lm = load_model_from_checkpoint(DEMO_CHECKPOINT, device=device)
    return "demo " + lm.model_name, lm.model, lm.contract


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI")
    ap.add_argument("--device", default="cpu", help="the model's device (default cpu)")
    ap.add_argument("--events", type=int, default=None, help="events in the recording (10M)")
    ap.add_argument("--rate-mev-s", type=float, default=20.0, help="the recording's event rate")
    ap.add_argument("--window-us", type=int, default=50_000, help="in-process windows")
    ap.add_argument("--stride-us", type=int, default=50_000)
    ap.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) - 1),
        help="torch intra-op threads (default: cores - 1, as sdt3-event live)",
    )
    ap.add_argument(
        "--sustain-mev-s",
        type=float,
        default=20.0,
        help="event density of the stream the sustained-rate runs replay as fast as they can "
        "(default 20: 1M events per 50 ms window; the rate is then bound by the forward pass)",
    )
    ap.add_argument("--no-cli", action="store_true", help="skip the sdt3-event live subprocess")
    ap.add_argument("--no-tcp", action="store_true", help="skip the tcp:// figures")
    ap.add_argument(
        "--trace", action="store_true", help="the model runs as a TorchScript trace (live --trace)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    smoke = args.smoke
    n_events = args.events or (500_000 if smoke else 10_000_000)
    seconds = 0.5 if smoke else 3.0
    # the dense stream of the sustained-rate runs: events per window = rate x window
    sustain_mev_s = 2.0 if smoke else args.sustain_mev_s
    win, stride = args.window_us, args.stride_us
    print(
        f"# bench_stream  device={args.device}  torch={torch.__version__}  "
        f"cpu={platform.processor() or platform.machine()} x{os.cpu_count()}  "
        f"threads={torch.get_num_threads()}  smoke={smoke}  trace={args.trace}"
    )
    results: dict = {
        "smoke": smoke,
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "trace": args.trace,
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    try:
        rec = tmp / "rec.aedat4"
        events = write_recording(rec, n_events, args.rate_mev_s)
        span_s = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
        print(
            f"# recording: {n_events:,} events, {SENSOR[0]}x{SENSOR[1]}, {span_s:.2f} s "
            f"({args.rate_mev_s:g} Mev/s), AEDAT 4.0 (LZ4)"
        )
        ref = aedat_decode_rate(rec, n_events, 1 if smoke else 2)
        results["aedat_decode_mev_s"] = ref
        if ref is None:
            print("aedat not installed: no reference rate, ratios left out")
        else:
            print(f"aedat raw decode (aedat.Decoder, best of 2):     {ref:8.1f} Mev/s  = 1.00")

        def ratio(x):
            return f"{x / ref:5.2f}x aedat" if ref else ""

        label, model, contract = demo_model(args.device)
        window = events[: min(500_000, n_events)]
        b = binning(dataclass_window(contract, window), window, 5 if smoke else 20)
        results["binning"] = b
        print(
            f"binning, one {b['events']:,}-event window, build_frame_transform(contract): "
            f"{b['ms']:6.2f} ms = {b['mev_s']:6.1f} Mev/s  {ratio(b['mev_s'])}  "
            f"(step-by-step path: {b['stepwise_ms']:.1f} ms = {b['stepwise_mev_s']:.1f} Mev/s)"
        )

        if not args.no_cli:
            c = cli_lossless(rec, None, 600)
            results["cli_lossless"] = c
            print(
                f"{c['command']}: {c['pipeline_mev_s']:6.1f} Mev/s in the pipeline "
                f"{ratio(c['pipeline_mev_s'])}; whole command {c['command_s']:.1f} s = "
                f"{c['command_mev_s']:.1f} Mev/s {ratio(c['command_mev_s'])}; "
                f"{c['events_in']:,} events, {c['windows']} windows, "
                f"{c['events_dropped']} events / {c['windows_dropped']} windows dropped"
            )

        pr = Predictor(
            model,
            contract,
            model_name=label,
            device=args.device,
            firing=False,
            energy_every=0,
            keep_frames=False,
            window_us=win,
            trace=args.trace,
        )
        pr.bind(SENSOR)
        pr.warmup()
        pr.bench_window = (win, stride)
        t = RateSource(sustain_mev_s, seconds, paced=False)
        ingest = sustained_rate(NullPredictor(), win, stride, t, 120)
        results["ingest"] = ingest
        print(
            f"ingest (source -> windows, no binning, no model), lossless: "
            f"{ingest['mev_s']:8.1f} Mev/s {ratio(ingest['mev_s'])}"
        )
        transports = {"in-process": None} if args.no_tcp else {"in-process": None, "tcp": None}
        rows = []
        for name in transports:
            sus = run(pr, sustained_rate, name, sustain_mev_s, False, seconds, 600)
            lat = {r: run(pr, latency, name, r, True, seconds, seconds + 60) for r in (1.0, 10.0)}
            over = 10 * sus["mev_s"]
            mem = run(pr, overload_memory, name, over, True, seconds, seconds, over, loop=True)
            rows.append((name, sus, lat, mem))
            results[name] = {
                "sustained": sus,
                "latency": {str(k): v for k, v in lat.items()},
                "overload": mem,
            }
            print(
                f"\n## {label}, {name} source, {win / 1e3:g} ms windows every "
                f"{stride / 1e3:g} ms, frames {contract.frame_shape}"
            )
            print(
                f"sustained, lossless: {sus['mev_s']:.1f} Mev/s {ratio(sus['mev_s'])} "
                f"({sus['windows']} windows, {sus['events_in']:,} events, "
                f"lossless={sus['lossless']})"
            )
            for r, v in lat.items():
                print(
                    f"latency at {r:4.0f} Mev/s: p50 {v['p50_ms']:6.1f} ms  p99 "
                    f"{v['p99_ms']:6.1f} ms  windows dropped {v['windows_dropped']:6.1%}"
                )
            print(
                f"10x overload ({over:.0f} Mev/s offered, {mem['read_mev_s']:.0f} read): RSS "
                f"{mem['rss_before_mib']:.0f} -> peak {mem['rss_peak_mib']:.0f} MiB "
                f"(+{mem['rss_growth_mib']:.0f}); {mem['windows_done']} windows predicted, "
                f"{mem['windows_dropped']} dropped ({mem['events_dropped']:,} events), "
                f"all counted in the status records: {mem['status_records_count_drops']}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n| figure | value | ratio to aedat decode |")
    print("|---|---:|---:|")
    if ref:
        print(f"| aedat raw decode (AEDAT 4.0, same file) | {ref:.1f} Mev/s | 1.00 |")
    r = (lambda x: f"{x / ref:.2f}") if ref else (lambda x: "")
    print(
        f"| binning, 500k-event window (one core) | {b['ms']:.2f} ms = {b['mev_s']:.0f} Mev/s "
        f"| {r(b['mev_s'])} |"
    )
    if "cli_lossless" in results:
        c = results["cli_lossless"]
        print(
            f"| `live --source file: --speed 0 --lossless` | {c['pipeline_mev_s']:.1f} Mev/s, "
            f"{c['events_dropped']} lost | {r(c['pipeline_mev_s'])} |"
        )
    for name, sus, lat, mem in rows:
        print(f"| {name}: sustained lossless | {sus['mev_s']:.1f} Mev/s | {r(sus['mev_s'])} |")
        print(
            f"| {name}: p50 / p99 latency at 10 Mev/s | {lat[10.0]['p50_ms']:.1f} / "
            f"{lat[10.0]['p99_ms']:.1f} ms | |"
        )
        print(
            f"| {name}: RSS growth at 10x overload | +{mem['rss_growth_mib']:.0f} MiB "
            f"({mem['windows_dropped']} windows dropped, counted) | |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench_stream{'_smoke' if smoke else ''}.json"
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\n# wrote {out}")
    return 0


def dataclass_window(contract: DataContract, events: np.ndarray) -> DataContract:
    """The contract with a window long enough to hold ``events`` whole."""
    import dataclasses

    span = int(events["t"][-1]) - int(events["t"][0]) + 1
    return dataclasses.replace(contract, window_us=max(contract.window_us or 0, span))


if __name__ == "__main__":
    sys.exit(main())
