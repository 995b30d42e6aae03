"""Event file decoding speed (Mev/s) per format, against the peer readers, in one run.

    python bench/bench_io.py            # real recordings + a 10-million-event 640x480 stream
    python bench/bench_io.py --smoke    # 200k synthetic events, one repeat (seconds; CI)

``read_events`` (detection, decoding, range checks, validation: the whole call) is timed on the real
recordings in ../shared/data/recordings (skipped when absent) and on a synthetic stream written in
every format ``write_events`` can write; ``iter_events`` (the chunked, constant-memory reader, 1M
events per chunk) is timed beside it. Each row also times one peer reader of that format, in the
same run on the same file, and says whether the peer's events equal ours:

- AEDAT 4.0: the ``aedat`` package (Rust; what Tonic's ``read_aedat4`` wraps) and faery (Rust);
- EVT 2.0 / EVT 3.0 / DAT: expelliarmus (C) and faery (Rust);
- AEDAT 3.1 / 2.0: Tonic's ``get_aer_events_from_file`` plus the address bit layout;
- npz / HDF5: a bare ``np.load`` / h5py read of the four arrays;
- N-MNIST: Tonic's ``read_mnist_file``.

``ratio`` is the peer's time over ours (above 1: we are faster). Peers return their own dtypes
without validation; ours return the project's validated ``EVENT_DTYPE``. Times are the best of
``--repeat`` runs, wall clock, single process. Results print as a table and go to
``bench/results/bench_io[_smoke].json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "data" / "recordings"
RESULTS = REPO / "bench" / "results"


def best_of(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up (and the result to compare)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def synthetic(n: int, width: int, height: int, rate_mev_s: float = 1.0, seed: int = 0):
    """``n`` events at ~``rate_mev_s`` Mev/s, uniform over a ``width`` x ``height`` sensor."""
    from sdt3_event.events.schema import make_events

    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_mev_s, n)
    t = np.floor(np.cumsum(gaps)).astype(np.int64)
    return make_events(
        t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)
    )


def _same(ours: np.ndarray, ref) -> bool:
    try:
        return len(ours) == len(ref["t"]) and all(
            np.array_equal(ours[f].astype(np.int64), np.asarray(ref[f]).astype(np.int64))
            for f in ("t", "x", "y", "p")
        )
    except (KeyError, ValueError, TypeError):
        return False


# ------------------------------------------------------------------------------------ peers
def peer_aedat(path: Path, sensor):
    import aedat

    return np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])


def peer_faery(path: Path, sensor):
    import faery

    dims = (sensor[0], sensor[1]) if sensor else (1280, 720)
    raw = np.concatenate(list(faery.events_stream_from_file(path, dimensions_fallback=dims)))
    return {"t": raw["t"], "x": raw["x"], "y": raw["y"], "p": raw["on"]}


def _tonic_aer(path: Path):
    from tonic.io import get_aer_events_from_file, read_aedat_header_from_file

    version, start, _ = read_aedat_header_from_file(str(path))
    raw = get_aer_events_from_file(str(path), version, start)
    return raw["address"].astype(np.int64), raw["timeStamp"].astype(np.int64)


def peer_tonic_aedat3(path: Path, sensor):
    addr, t = _tonic_aer(path)
    return {"t": t, "x": (addr >> 17) & 0x1FFF, "y": (addr >> 2) & 0x1FFF, "p": (addr >> 1) & 1}


def peer_tonic_aedat2(path: Path, sensor):
    addr, t = _tonic_aer(path)
    return {
        "t": t,
        "x": 127 - ((addr >> 8) & 0x7F),
        "y": 127 - ((addr >> 1) & 0x7F),
        "p": 1 - (addr & 1),
    }


def _peer_expelliarmus(encoding: str):
    def peer(path: Path, sensor):
        from expelliarmus import Wizard

        return Wizard(encoding=encoding).read(path)

    return peer


def peer_numpy_npz(path: Path, sensor):
    with np.load(path) as f:
        return {k: f[k] for k in ("t", "x", "y", "p")}


def peer_h5py(path: Path, sensor):
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f["events"][k][()] for k in ("t", "x", "y", "p")}


def peer_tonic_nmnist(path: Path, sensor):
    from tonic.io import read_mnist_file

    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    return read_mnist_file(str(path), dtype=dtype)


PEERS = {
    "aedat4": [("aedat", peer_aedat), ("faery", peer_faery)],
    "aedat3": [("tonic aer+bits", peer_tonic_aedat3)],
    "aedat2": [("tonic aer+bits", peer_tonic_aedat2)],
    "evt2": [("expelliarmus", _peer_expelliarmus("evt2")), ("faery", peer_faery)],
    "evt3": [("expelliarmus", _peer_expelliarmus("evt3")), ("faery", peer_faery)],
    "dat": [("expelliarmus", _peer_expelliarmus("dat")), ("faery", peer_faery)],
    "npz": [("np.load", peer_numpy_npz)],
    "hdf5": [("h5py", peer_h5py)],
    "nmnist": [("tonic.read_mnist_file", peer_tonic_nmnist)],
}


def bench_file(label: str, path: Path, sensor, repeat: int) -> list[dict]:
    from sdt3_event.events.io import STREAMING_FORMATS, detect_format, iter_events, read_events

    fmt = detect_format(path)
    sec, (events, _) = best_of(lambda: read_events(path, sensor), repeat)
    n = len(events)
    base = {
        "source": label,
        "format": fmt,
        "events": n,
        "file_mb": path.stat().st_size / 2**20,
        "ours_s": sec,
        "ours_mev_s": n / sec / 1e6,
    }
    if fmt in STREAMING_FORMATS:

        def chunked():
            return sum(len(c) for c in iter_events(path, 1 << 20, sensor))

        csec, count = best_of(chunked, repeat)
        base["chunked_mev_s"] = n / csec / 1e6
        base["chunked_equal"] = count == n
    rows = []
    for peer_name, peer in PEERS.get(fmt, []):
        try:
            psec, ref = best_of(lambda peer=peer: peer(path, sensor), repeat)
        except Exception as exc:  # a peer that cannot read the file is reported, not fatal
            rows.append({**base, "peer": peer_name, "peer_error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append(
            {
                **base,
                "peer": peer_name,
                "peer_mev_s": n / psec / 1e6,
                "ratio": psec / sec,
                "equal": _same(events, ref),
            }
        )
    return rows or [base]


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'source':<34} {'format':<7} {'events':>10} {'MB':>7} {'ours Mev/s':>10} "
        f"{'chunked':>8} {'peer':<22} {'peer Mev/s':>10} {'ratio':>6} {'equal':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        peer = r.get("peer", "-")
        if "peer_error" in r:
            tail = f"{peer:<22} {'error':>10} {'':>6} {'':>5}"
        elif "peer_mev_s" in r:
            tail = (
                f"{peer:<22} {r['peer_mev_s']:>10.1f} {r['ratio']:>5.1f}x "
                f"{'yes' if r['equal'] else 'NO':>5}"
            )
        else:
            tail = f"{peer:<22}"
        chunked = f"{r['chunked_mev_s']:>8.1f}" if "chunked_mev_s" in r else f"{'-':>8}"
        print(
            f"{r['source']:<34} {r['format']:<7} {r['events']:>10,} {r['file_mb']:>7.1f} "
            f"{r['ours_mev_s']:>10.1f} {chunked} {tail}"
        )


# (format, file name, sensor (W, H, P), timestamp limit)
SYNTHETIC = [
    ("aedat4", "s.aedat4", (640, 480, 2)),
    ("aedat3", "s.aedat", (128, 128, 2)),
    ("aedat2", "s2.aedat", (128, 128, 2)),
    ("evt2", "s.raw", (640, 480, 2)),
    ("evt3", "s3.raw", (640, 480, 2)),
    ("dat", "s.dat", (640, 480, 2)),
    ("npz", "s.npz", (640, 480, 2)),
    ("hdf5", "s.h5", (640, 480, 2)),
    ("nmnist", "s.bin", (34, 34, 2)),
]

REAL = [
    ("dvxplorer_320x240.aedat4", None),
    ("davis346_346x260.aedat4", None),
    ("prophesee_gen3_640x480_evt2.raw", (640, 480, 2)),
    ("ncars_atis.dat", None),
    ("nmnist_34x34.bin", None),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small stream, one repeat")
    parser.add_argument("--events", type=int, default=None, help="synthetic stream length")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per reader")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    n_events = args.events or (200_000 if args.smoke else 10_000_000)
    repeat = args.repeat or (1 if args.smoke else 3)

    from sdt3_event.events.io import write_events

    rows: list[dict] = []
    if RECORDINGS.is_dir():
        for name, sensor in REAL:
            rows += bench_file(f"real: {name}", RECORDINGS / name, sensor, repeat)
    else:
        print(f"(real recordings not found at {RECORDINGS}; skipped)")

    with tempfile.TemporaryDirectory(prefix="bench_io_") as tmp:
        for fmt, name, sensor in SYNTHETIC:
            ev = synthetic(n_events, sensor[0], sensor[1])
            if fmt == "nmnist":  # 23-bit timestamps: squeeze the stream into 8 s
                ev["t"] = ev["t"] * ((1 << 23) - 1) // max(int(ev["t"][-1]), 1)
            path = Path(tmp) / name
            t0 = time.perf_counter()
            write_events(path, ev, sensor, format=fmt)
            write_s = time.perf_counter() - t0
            for row in bench_file(f"synthetic {n_events / 1e6:g}M", path, sensor, repeat):
                row["write_mev_s"] = n_events / write_s / 1e6
                rows.append(row)
            path.unlink()

    print_table(rows)
    out = args.out or RESULTS / ("bench_io_smoke.json" if args.smoke else "bench_io.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": "bench_io",
        "smoke": args.smoke,
        "synthetic_events": n_events,
        "repeat": repeat,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
