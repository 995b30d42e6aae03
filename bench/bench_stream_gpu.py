"""The live pipeline on a GPU: device binning equality, the 19M DVS model's latency, the demo
model's sustained lossless rate. Prepared for a lent H100 / H200; runs in under 3 minutes.

    python bench/bench_stream_gpu.py                        # CUDA
    python bench/bench_stream_gpu.py --device cpu --smoke   # the same code paths, small, on CPU
    python bench/bench_stream_gpu.py --host-only --events 40000000 --dense-mev-s 200
                                          # part 3's host side alone, on any machine (no GPU)

1. *Equality*: windows binned on the device (events copied through a pinned buffer as raw bytes,
   decoded there, scatter-added into the frames: ``Predictor.device_frames``) equal the CPU
   transform (``build_frame_transform(contract)``), for the 19M HARDVS contract (346x260 ->
   224x224, T=8), the demo contract and crops, pads, binary and clamped contracts.
2. *19M DVS model* (``sdt3_19m_hardvs``, random weights) at 224x224, T=8, batch 1: forward time
   eager and replayed from a CUDA graph; then the live pipeline's p50 / p99 latency (last event of
   a window arriving -> prediction) at 10 Mev/s from a paced DAVIS346-size source, 50 ms windows,
   device binning, CUDA graph. Goal: p99 <= 15 ms.
3. *Demo model, sustained lossless*: an in-memory stream (``--dense-mev-s``, 100 Mev/s) replayed as
   fast as the pipeline takes it, with ``drop_policy="block"``: events / wall time, once with
   device binning and once with CPU binning as events arrive. Goal: >= 200 Mev/s.
   ``--host-only`` runs this part alone without a device: the forward pass is a stand-in and
   device binning stops after staging the window's raw bytes (the copy made into pinned memory on
   CUDA), so the figure is the rate the host side (source, windowing, pipeline, staging) allows.

Prints the figures and a verdict per goal; writes ``bench_stream_gpu.json`` to ``$OUT`` (when set)
or ``bench/results/``. Exit status 1 when binning on the device differs from the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

# this checkout's package, installed or not (a bare GPU machine), before any other installed copy
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from bench_stream import RateSource, drain_all, rss_mb  # noqa: E402

from sdt3_event.events.contract import DataContract  # noqa: E402
from sdt3_event.events.schema import make_events  # noqa: E402
from sdt3_event.events.transforms import build_frame_transform  # noqa: E402
from sdt3_event.stream.base import BaseEventSource  # noqa: E402
from sdt3_event.stream.pipeline import LivePipeline  # noqa: E402
from sdt3_event.stream.predictor import Predictor  # noqa: E402
from sdt3_event.stream.windowing import EventWindow  # noqa: E402

DAVIS346 = (346, 260, 2)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def quiet_predictor(model, contract, device, **kw) -> Predictor:
    """A predictor without firing statistics, energy or display frames (pure inference)."""
    return Predictor(
        model, contract, device=device, firing=False, energy_every=0, keep_frames=False, **kw
    )


def random_events(rng, n, sensor, t0=0, span_us=50_000):
    t = np.sort(rng.integers(t0, t0 + span_us, n))
    return make_events(t, rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), t % 3 == 0)


# ------------------------------------------------------------------------------------ equality
def equality(device: str, smoke: bool) -> dict:
    """Device binning (the predictor's path, pinned bytes -> device) == the CPU transform."""
    from sdt3_event import create_model

    contracts = [
        DataContract(DAVIS346, (224, 224), 8, window_us=50_000, representation="binary"),
        DataContract((128, 128, 2), (64, 64), 8, window_us=50_000),
        DataContract(DAVIS346, (200, 300), 4, window_us=50_000, spatial="center_crop", clamp=3),
        DataContract(DAVIS346, (300, 400), 5, window_us=50_000, spatial="pad"),
        DataContract(DAVIS346, (96, 128), 3, window_us=50_000, clamp=1),
        DataContract((346, 260, 1), (130, 173), 2, window_us=50_000),
    ]
    model = create_model("sdt3_micro", num_classes=2, in_chans=2, T=2)
    rng = np.random.default_rng(0)
    checked, failures = 0, []
    for c in contracts:
        pr = quiet_predictor(model, c, device, device_binning=True)
        pr.bind(c.sensor_size)
        tf = build_frame_transform(pr.live)
        for n in (0, 1, 1_000, 50_000 if smoke else 500_000):
            ev = random_events(rng, n, c.sensor_size, span_us=120_000)
            for start in (0, 30_000, 70_000):
                win = EventWindow(0, start, start + c.window_us, ev, time.perf_counter())
                got = pr.device_frames(win)
                assert got.device.type == torch.device(device).type
                want = tf(ev, t_start_us=start)
                checked += 1
                if not torch.equal(got.cpu(), want):
                    failures.append(f"{c} n={n} start={start}")
    return {"windows_checked": checked, "failures": failures, "equal": not failures}


# ------------------------------------------------------------------------------- the 19M model
def model_latency(device: str, smoke: bool, seconds: float) -> dict:
    from sdt3_event import create_model

    size, T = ((64, 64), 2) if smoke else ((224, 224), 8)
    contract = DataContract(DAVIS346, size, T, window_us=50_000, representation="binary")
    out: dict = {"model": "sdt3_19m_hardvs", "input": list(size), "T": T}
    torch.manual_seed(0)
    model = create_model("sdt3_19m_hardvs", T=T).eval()
    out["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    x = (torch.rand(1, *contract.frame_shape, device=device) < 0.05).float()  # (1, T, P, H, W)
    model = model.to(device)
    repeat = 5 if smoke else 30
    for graph in (False, True) if device.startswith("cuda") else (False,):
        pr = quiet_predictor(model, contract, device, cuda_graph=graph)
        times = []
        with torch.inference_mode():
            for i in range(repeat + 3):
                sync(device)
                t0 = time.perf_counter()
                pr._reset_state()
                y = pr._forward(x)
                sync(device)
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1e3)
        key = "forward_graph" if graph else "forward_eager"
        out[key + "_ms"] = {"median": statistics.median(times), "max": max(times)}
        if graph:
            out["graph_captured"] = not pr._forward.failed
        out[key + "_logits_finite"] = bool(torch.isfinite(y).all())
    graph = device.startswith("cuda")
    pr = quiet_predictor(model, contract, device, cuda_graph=graph, smoothing=0.0)
    pr.bind(DAVIS346)
    pr.warmup()
    rate = 1.0 if smoke else 10.0
    p = LivePipeline(RateSource(rate, seconds, paced=True, sensor=DAVIS346), pr, window_us=50_000)
    with p:
        preds = drain_all(p, seconds + 60)
    lat = sorted(r.latency_ms for r in preds[1:]) or [float("nan")]
    s = p.stats
    out["live"] = {
        "rate_mev_s": rate,
        "window_us": 50_000,
        "device_binning": pr.device_binning,
        "cuda_graph": graph,
        "predictions": len(preds),
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))],
        "windows_dropped": s.windows_dropped + s.windows_overflow,
        "goal_p99_ms": 15.0,
    }
    return out


# ------------------------------------------------------------------------ sustained, demo model
class MemorySource(BaseEventSource):
    """Views of one in-memory event array, ``chunk`` events at a time, as fast as taken."""

    def __init__(self, events, sensor, chunk=1 << 18):
        super().__init__("memory:", sensor)
        self.events, self.chunk = events, chunk

    def _chunks(self):
        self._set_status("connected")
        for a in range(0, len(self.events), self.chunk):
            if self.closed:
                return
            yield self.events[a : a + self.chunk]


class HostOnlyPredictor(Predictor):
    """The predictor's host work, without a device: host data is staged into reused host
    buffers (as into the pinned ones on CUDA), windows come unjoined as on CUDA, device binning
    ends after staging the raw event bytes, and the forward pass is the stand-in model's."""

    _staged = True  # stage as on CUDA

    def _pinned(self, key: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        buf = self._staging.get(key)
        if buf is None or buf.dtype != dtype or buf.numel() < n:
            buf = self._staging[key] = torch.empty(int(1.5 * n), dtype=dtype)
        return buf[:n]

    def _send(self, key: str, staged: torch.Tensor) -> torch.Tensor:
        return staged

    def device_frames(self, window: EventWindow) -> torch.Tensor:
        if window.frames is not None or not self.device_binning:
            return super().device_frames(window)
        self._stage_events(window)
        return torch.zeros(self.live.frame_shape)  # (T, P, H, W): binned on the device


class StandInModel(torch.nn.Module):
    """Constant logits: the model's cost taken out of a host-side measurement."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, P, H, W) -> (B, classes)
        return torch.zeros(x.shape[0], self.num_classes, device=x.device)


def sustained(
    device: str, smoke: bool, dense_mev_s: float, n_events: int, host_only: bool = False
) -> dict:
    from sdt3_event.assets import DEMO_CHECKPOINT
    from sdt3_event.checkpoint import load_model_from_checkpoint

    loaded = load_model_from_checkpoint(DEMO_CHECKPOINT, device=device)
    sensor = loaded.contract.sensor_size
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    t = np.floor(np.cumsum(rng.exponential(1 / dense_mev_s, n_events))).astype(np.int64)
    events = make_events(
        t, rng.integers(0, sensor[0], n_events), rng.integers(0, sensor[1], n_events), t % 2 == 0
    )
    model, make = loaded.model, quiet_predictor
    if host_only:
        model = StandInModel(len(loaded.contract.class_names))

        def make(model, contract, device, **kw):
            kw.update(firing=False, energy_every=0, keep_frames=False)
            return HostOnlyPredictor(model, contract, device=device, **kw)

    out: dict = {
        "model": ("host only, stand-in for " if host_only else "demo ") + loaded.model_name,
        "events": n_events,
        "stream_mev_s": dense_mev_s,
        "window_us": 50_000,
        "make_stream_s": time.perf_counter() - t0,
        "goal_mev_s": 200.0,
    }
    graph = device.startswith("cuda") and not host_only
    for mode, device_binning in (("device_binning", True), ("cpu_binning", False)):
        pr = make(
            model,
            loaded.contract,
            device,
            model_name=loaded.model_name,
            device_binning=device_binning,
            cuda_graph=graph,
            window_us=50_000,
        )
        pr.bind(sensor)
        pr.warmup()
        rss0 = rss_mb()
        p = LivePipeline(MemorySource(events, sensor), pr, window_us=50_000, drop_policy="block")
        t0, c0 = time.perf_counter(), time.process_time()
        with p:
            preds = drain_all(p, 120)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        s = p.stats
        out[mode] = {
            "mev_s": s.events_in / wall / 1e6,
            "s": wall,
            "windows": len(preds),
            "lossless": s.events_in == n_events
            and s.windows_dropped == s.windows_overflow == s.events_dropped == 0,
            "rss_growth_mib": rss_mb() - rss0,
            "host_cpu_ns_per_event": cpu / s.events_in * 1e9 if s.events_in else float("nan"),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="small sizes (seconds), e.g. on CPU")
    ap.add_argument("--dense-mev-s", type=float, default=100.0, help="sustained-run stream rate")
    ap.add_argument("--events", type=int, default=None, help="sustained-run events (60M)")
    ap.add_argument("--seconds", type=float, default=None, help="latency run length (4 s)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default all)")
    ap.add_argument(
        "--host-only",
        action="store_true",
        help="only the sustained run's host side, on the CPU (stand-in model, no device)",
    )
    args = ap.parse_args()
    device, smoke = ("cpu" if args.host_only else args.device), args.smoke
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available; run with --device cpu --smoke", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    n_events = args.events or (2_000_000 if smoke else 60_000_000)
    seconds = args.seconds or (1.0 if smoke else 4.0)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    print(
        f"# bench_stream_gpu  device={device} ({gpu})  torch={torch.__version__}  "
        f"cpus={os.cpu_count()}  threads={torch.get_num_threads()}  smoke={smoke}",
        flush=True,
    )
    results: dict = {"device": device, "gpu": gpu, "torch": torch.__version__, "smoke": smoke}
    started = time.perf_counter()
    sections = (
        ("equality", lambda: equality(device, smoke)),
        ("dvs19m", lambda: model_latency(device, smoke, seconds)),
        ("sustained", lambda: sustained(device, smoke, args.dense_mev_s, n_events, args.host_only)),
    )
    if args.host_only:
        sections = sections[2:]
        results["host_only"] = True
    for name, fn in sections:
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # report and go on: one failing part must not hide the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
        results[name]["section_s"] = time.perf_counter() - t0
        print(f"## {name} ({results[name]['section_s']:.1f} s)", flush=True)
        print(json.dumps(results[name], indent=1, default=float), flush=True)

    eq, m, s = (results.get(k, {}) for k in ("equality", "dvs19m", "sustained"))
    print("\n| figure | value | goal |")
    print("|---|---:|---:|")
    if "equal" in eq:
        print(
            f"| device binning == CPU binning | {eq['equal']} ({eq['windows_checked']} windows) "
            f"| equal |"
        )
    if "live" in m:
        for key in ("forward_eager_ms", "forward_graph_ms"):
            if key in m:
                print(
                    f"| 19M DVS {m['input'][0]}x{m['input'][1]} T={m['T']}, {key[:-3]} | "
                    f"{m[key]['median']:.2f} ms median | |"
                )
        lv = m["live"]
        print(
            f"| 19M DVS live latency at {lv['rate_mev_s']:g} Mev/s, p50 / p99 | "
            f"{lv['p50_ms']:.1f} / {lv['p99_ms']:.1f} ms | p99 <= 15 ms: "
            f"{'met' if lv['p99_ms'] <= 15 else 'NOT met'} |"
        )
    for mode in ("device_binning", "cpu_binning"):
        if mode in s:
            v = s[mode]
            print(
                f"| {'host side only' if args.host_only else 'demo model'} sustained lossless, "
                f"{mode.replace('_', ' ')} | "
                f"{v['mev_s']:.0f} Mev/s (lossless {v['lossless']}; host CPU "
                f"{v['host_cpu_ns_per_event']:.1f} ns/event) | >= 200 Mev/s: "
                f"{'met' if v['mev_s'] >= 200 and v['lossless'] else 'NOT met'} |"
            )
    results["total_s"] = time.perf_counter() - started
    print(f"\n# total {results['total_s']:.1f} s")
    out_dir = (
        Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent / "results"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = ("_host" if args.host_only else "") + ("_smoke" if smoke else "")
    path = out_dir / f"bench_stream_gpu{tag}.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    print(f"# wrote {path}")
    if args.host_only:
        return (
            0 if all(s.get(k, {}).get("lossless") for k in ("device_binning", "cpu_binning")) else 1
        )
    return 0 if eq.get("equal", False) else 1


if __name__ == "__main__":
    sys.exit(main())
