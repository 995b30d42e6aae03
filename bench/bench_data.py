"""Data benchmark: event binning against Tonic's ToFrame, and data set throughput with and without
the HDF5 frame cache.

    python bench/bench_data.py            # full run (10-million-event synthetic stream)
    python bench/bench_data.py --smoke    # a few seconds (CI)

Binning is timed on the real recordings in ../shared/data/recordings (skipped when absent) and on a
synthetic stream of back-to-back gestures. Every comparison first checks that both give identical
frames. Times are the best CPU times (process_time) of ``--repeat`` runs (single thread).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "data" / "recordings"


def best_of(fn, repeat: int) -> float:
    """Best CPU time (``time.process_time``) of ``repeat`` calls after a warm-up.

    CPU time, not wall time: on a shared machine waiting for a core is not the code's cost.
    """
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return max(min(times), 1e-9)


def synthetic_stream(n_events: int, sensor=(128, 128, 2)) -> np.ndarray:
    from sdt3_event.datasets.synthetic import gesture_stream

    parts, total = [], 0
    for seg in gesture_stream(seed=0, sensor_size=sensor, duration_us=500_000):
        parts.append(seg.events)
        total += len(seg.events)
        if total >= n_events:
            break
    return np.concatenate(parts)[:n_events]


def bench_binning(name: str, events: np.ndarray, sensor, modes, repeat: int) -> list[tuple]:
    import tonic

    from sdt3_event.events.frames import to_frames

    rows = []
    for kw in modes:
        ours = to_frames(events, sensor, **kw)
        ref = tonic.transforms.ToFrame(sensor, **kw)(events.copy())
        if not np.array_equal(ours, ref):
            raise SystemExit(f"MISMATCH with tonic on {name} {kw}")
        t_ours = best_of(lambda kw=kw: to_frames(events, sensor, **kw), repeat)
        t_tonic = best_of(lambda kw=kw: tonic.transforms.ToFrame(sensor, **kw)(events), repeat)
        mode = ", ".join(f"{k}={v}" for k, v in kw.items())
        rows.append((name, len(events), mode, ours.shape[0], t_tonic, t_ours))
    return rows


def bench_throughput(n_samples: int, tmp: Path) -> list[tuple]:
    from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticGestures

    from sdt3_event.events.cache import CachedDataset
    from sdt3_event.events.contract import DataContract
    from sdt3_event.events.transforms import build_frame_transform

    contract = DataContract(
        (128, 128, 2), (64, 64), 8, 500_000, "count", 4, "resize", SYNTHETIC_CLASSES
    )
    tf = build_frame_transform(contract)
    rows = []

    def run(ds) -> float:
        t0 = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        return len(ds) / (time.perf_counter() - t0)

    raw = SyntheticGestures("test", n_samples, seed=0)
    rows.append(
        (
            "SyntheticGestures: generate + frame transform",
            run(SyntheticGestures("test", n_samples, seed=0, transform=tf)),
        )
    )
    t0 = time.perf_counter()
    cached = CachedDataset(raw, tf, tmp / "cache")
    rows.append(("  + HDF5 cache: build (compute + write)", n_samples / (time.perf_counter() - t0)))
    rows.append(("  + HDF5 cache: read", run(cached)))
    if RECORDINGS.is_dir():
        from sdt3_event.datasets.folder import EventFolder

        from sdt3_event.events.aedat4 import write_aedat4
        from sdt3_event.events.io import read_events

        # An EventFolder of real DAVIS346 recordings (copies of the shared file, cut in pieces).
        events, sensor = read_events(RECORDINGS / "davis346_346x260.aedat4")
        folder = tmp / "folder" / "davis"
        folder.mkdir(parents=True)
        pieces = np.array_split(events, 8)
        for k, piece in enumerate(pieces):
            write_aedat4(folder / f"rec{k}.aedat4", piece, sensor)
        c2 = DataContract(sensor, (64, 64), 8, None, "count", 4, "resize", ("davis",))
        tf2 = build_frame_transform(c2)
        ds = EventFolder(tmp / "folder", transform=tf2)
        rows.append(("EventFolder (AEDAT4 decode + frame transform)", run(ds)))
        cached2 = CachedDataset(EventFolder(tmp / "folder"), tf2, tmp / "cache")
        rows.append(("  + HDF5 cache: read", run(cached2)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--events", type=int, default=10_000_000, help="synthetic stream length")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200, help="samples for throughput")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.repeat, args.samples = 300_000, 1, 20
    torch.set_num_threads(1)

    rows = []
    modes = [{"n_time_bins": 16}, {"time_window": 10_000}, {"event_count": 10_000}]
    if RECORDINGS.is_dir():
        from sdt3_event.events.io import read_events

        for fname, sensor in [
            ("davis346_346x260.aedat4", None),
            ("dvxplorer_320x240.aedat4", None),
            ("prophesee_gen3_640x480_evt2.raw", (640, 480, 2)),
        ]:
            ev, s = read_events(RECORDINGS / fname, sensor)
            rows += bench_binning(fname, ev, s, modes, args.repeat)
    else:
        print(f"(real recordings not found at {RECORDINGS}; skipping them)", file=sys.stderr)
    t0 = time.perf_counter()
    stream = synthetic_stream(args.events)
    gen_s = time.perf_counter() - t0
    rows += bench_binning(
        f"synthetic stream ({gen_s:.1f} s to generate)",
        stream,
        (128, 128, 2),
        [{"n_time_bins": 16}, {"time_window": 50_000}, {"event_count": 100_000}],
        args.repeat,
    )

    print(
        f"\nEvent binning, identical output to tonic.transforms.ToFrame (tonic {__import__('tonic').__version__}, numpy {np.__version__}; best CPU time of {args.repeat}, 1 thread)"
    )
    print(
        f"{'input':44s} {'events':>10s}  {'mode':24s} {'T':>5s} {'tonic ms':>9s} {'ours ms':>8s} {'ratio':>6s} {'ours Mev/s':>10s}"
    )
    for name, n, mode, t, t_tonic, t_ours in rows:
        print(
            f"{name[:44]:44s} {n:>10,d}  {mode:24s} {t:>5d} {t_tonic * 1e3:>9.1f} {t_ours * 1e3:>8.2f} "
            f"{t_tonic / t_ours:>5.1f}x {n / t_ours / 1e6:>10.0f}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        tp = bench_throughput(args.samples, Path(tmp))
    print(
        f"\nData set throughput (main process, {args.samples} synthetic samples, frames (8, 2, 64, 64))"
    )
    for name, rate in tp:
        print(f"{name:52s} {rate:>9.0f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
