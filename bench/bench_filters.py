"""Filter and representation benchmark against Tonic, same input, same run.

    python bench/bench_filters.py            # full run (10-million-event synthetic stream)
    python bench/bench_filters.py --smoke    # a few seconds (CI)

Every row first checks that both give the same output (kept events / arrays; HATS to float32
rounding), then times both: the best CPU time (process_time) of ``--repeat`` runs for ours, one run
for Tonic's per-event Python loops (minutes on 10M events). One thread. The averaged time surface
(HATS) is timed on ``--hats-events`` events: Tonic's HATS is quadratic per cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_data import synthetic_stream  # noqa: E402

TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def cpu_time(fn, repeat: int, warm_up: bool = True) -> tuple[float, object]:
    """Best CPU time of ``repeat`` calls (after a warm-up when ``warm_up``) and the result."""
    out = fn() if warm_up else None
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return max(best, 1e-9), out


def as_tonic(events: np.ndarray) -> np.ndarray:
    """Tonic's int layout (its voxel grid turns a bool polarity into +1 for every event)."""
    out = np.zeros(len(events), TONIC_DTYPE)
    for f in ("x", "y", "t"):
        out[f] = events[f]
    out["p"] = events["p"].astype(int)
    return out


def same(a: np.ndarray, b: np.ndarray, approx: bool = False) -> bool:
    if a.dtype.names:  # kept events
        return len(a) == len(b) and all(np.array_equal(a[f], b[f]) for f in ("t", "x", "y"))
    if approx:
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-7)
    return a.shape == b.shape and np.array_equal(a, b)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--events", type=int, default=10_000_000, help="synthetic stream length")
    parser.add_argument("--hats-events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.hats_events, args.repeat = 100_000, 3_000, 1

    import tonic
    from tonic.functional import denoise_numpy, refractory_period_numpy

    from sdt3_event.events import filters as F
    from sdt3_event.events import representations as R

    sensor = (128, 128, 2)
    events = synthetic_stream(args.events, sensor)
    events["t"] += 100_000  # Tonic's Denoise keeps all events before filter_time (see filters.py)
    ref = as_tonic(events)
    hats = events[: args.hats_events]
    span_s = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
    rows = []

    def row(name, n, ours, theirs, approx=False, compare=None):
        t_ours, out = cpu_time(ours, args.repeat)
        t_tonic, expected = cpu_time(theirs, 1, warm_up=False)
        if not same(out, expected, approx):
            raise SystemExit(f"MISMATCH with tonic: {name}")
        rows.append((name, n, t_tonic, t_ours))

    row(
        "BackgroundActivityFilter(2000, cross) / Denoise",
        len(events),
        lambda: F.background_activity_filter(events, 2000, 1, "cross"),
        lambda: denoise_numpy(ref, 2000),
    )
    row(
        "RefractoryFilter(1000) / RefractoryPeriod",
        len(events),
        lambda: F.refractory_filter(events, 1000),
        lambda: refractory_period_numpy(ref, 1000),
    )
    row(
        "ToVoxelGrid(T=10)",
        len(events),
        lambda: R.to_voxel_grid(events, sensor, 10),
        lambda: tonic.transforms.ToVoxelGrid(sensor, 10)(ref),
    )
    # dense output (slices x P x H x W float64): on the first --hats-events x 20 events
    surf, surf_ref = events[: args.hats_events * 20], ref[: args.hats_events * 20]
    row(
        "ToTimeSurface(dt=30 ms, tau=3 ms)",
        len(surf),
        lambda: R.to_time_surface(surf, sensor, 30_000, 3_000),
        lambda: tonic.transforms.ToTimesurface(sensor, 30_000, 3_000)(surf_ref),
    )
    # Tonic's own test grids: its fixture's 10,000 random events over 1 s; 20 calls per timing
    grid_rng = np.random.default_rng(0)
    for grid, dt, tau in (
        ((40, 15, 2), 10_000, 10_000),
        ((10, 20, 2), 20_000, 1_000),
        ((30, 30, 2), 30_000, 3_000),
    ):
        small = np.zeros(10_000, TONIC_DTYPE)
        for f, hi in zip(("x", "y", "p"), grid, strict=True):
            small[f] = grid_rng.integers(0, hi, len(small))
        small["t"] = np.sort(grid_rng.integers(0, 1_000_000, len(small)))
        row(
            f"ToTimeSurface {grid[0]}x{grid[1]} ({dt // 1000} ms, {tau / 1000:g} ms) x20",
            len(small),
            lambda g=grid, d=dt, t=tau, e=small: [R.to_time_surface(e, g, d, t) for _ in range(20)][
                -1
            ],
            lambda g=grid, d=dt, t=tau, e=small: [
                tonic.transforms.ToTimesurface(g, d, t)(e) for _ in range(20)
            ][-1],
        )
    row(
        "ToAveragedTimeSurface(5, 10, 10 ms, 1 ms)",
        len(hats),
        lambda: R.to_averaged_time_surface(hats, sensor, 10, 5, 1e4, 1e3),
        lambda: tonic.transforms.ToAveragedTimesurface(sensor, 5, 10, 1e4, 1e3)(as_tonic(hats)),
        approx=True,
    )
    hot = [tuple(map(int, xy)) for xy in np.random.default_rng(0).integers(0, 128, (32, 2))]
    row(
        "HotPixelFilter(pixels=32 given) / DropPixel",
        len(events),
        lambda: F.HotPixelFilter(pixels=hot)(events),
        lambda: tonic.transforms.DropPixel(coordinates=hot)(ref),
    )
    # no Tonic peer: ours alone
    t_roi, _ = cpu_time(lambda: F.region_of_interest(events, 10, 10, 100, 100), args.repeat)
    t_hot, _ = cpu_time(lambda: F.hot_pixel_filter(events, 10.0, 100_000), args.repeat)

    print(
        f"\nFilters and representations vs tonic {tonic.__version__} (numpy {np.__version__}); "
        f"synthetic 128x128 stream, {span_s:.1f} s; best CPU time of {args.repeat} (ours), "
        "1 run (tonic)"
    )
    print(f"{'transform':48s} {'events':>11s} {'tonic s':>9s} {'ours s':>8s} {'ratio':>8s}")
    for name, n, t_tonic, t_ours in rows:
        print(f"{name:48s} {n:>11,d} {t_tonic:>9.3f} {t_ours:>8.4f} {t_tonic / t_ours:>7.1f}x")
    print(f"{'RegionOfInterest (no tonic peer)':48s} {len(events):>11,d} {'':>9s} {t_roi:>8.4f}")
    print(
        f"{'HotPixelFilter(10, 100 ms) (no tonic peer)':48s} {len(events):>11,d} {'':>9s} {t_hot:>8.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
