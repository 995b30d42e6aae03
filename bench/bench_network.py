"""Network and AEDAT 4.0 codec benchmark.

    python bench/bench_network.py            # full run (10-million-event stream)
    python bench/bench_network.py --smoke    # a few seconds (CI)

1. Codec: packet encoding in memory, ``write_aedat4`` (validation + encoding + file) and
   ``read_aedat4`` speed in Mev/s, LZ4 and uncompressed, against the ``aedat`` package decoding the
   very same file (ratio; both results checked equal). CPU time, single thread.
2. TCP source: the highest event rate ``NetworkSource`` sustains over loopback without losing events.
   ``sdt3-event serve --speed 0`` (its own process, as in a real deployment) sends as fast as the
   client reads; TCP flow control means the rate measured is the rate the client keeps up with, and
   the received events are checked equal to the recording (count and content).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "data" / "recordings"


def synthetic(n: int, sensor=(346, 260, 2), rate_mev_s: float = 12.0, seed: int = 0) -> np.ndarray:
    """``n`` random events at about ``rate_mev_s`` (DAVIS346-like peak rate)."""
    from sdt3_event.events.schema import make_events

    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate_mev_s, n)).astype(np.int64) + 1_000_000
    return make_events(
        t, rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), rng.random(n) < 0.5
    )


def best_of(fn, repeat: int) -> tuple[float, object]:
    """Best CPU time of ``repeat`` runs (after a warm-up). CPU time, not wall time: the codecs are
    single-threaded and CI / shared machines are often oversubscribed."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def aedat_decode(path: Path) -> int:
    import aedat

    n = 0
    for packet in aedat.Decoder(str(path)):
        if "events" in packet:
            n += len(packet["events"])
    return n


def aedat_decode_all(path: Path) -> np.ndarray:
    import aedat

    chunks = [p["events"] for p in aedat.Decoder(str(path)) if "events" in p]
    return np.concatenate(chunks)


def bench_codec(name: str, events: np.ndarray, sensor, tmp: Path, repeat: int) -> None:
    from sdt3_event.events.aedat4 import (
        Compression,
        compress,
        encode_event_packet,
        read_aedat4,
        write_aedat4,
    )

    n = len(events)
    for compression in ("lz4", "none"):
        path = tmp / f"{name}_{compression}.aedat4"
        c = Compression.parse(compression)
        # packets in memory only: the codec without validation and file I/O
        t_pack, _ = best_of(
            lambda c=c: [
                compress(encode_event_packet(events[i : i + 16384]), c) for i in range(0, n, 16384)
            ],
            repeat,
        )
        t_enc, _ = best_of(
            lambda p=path, c=compression: write_aedat4(p, events, sensor, compression=c), repeat
        )
        t_dec, (ours, _) = best_of(lambda p=path: read_aedat4(p), repeat)
        t_ref, _ = best_of(lambda p=path: aedat_decode(p), repeat)
        ref = aedat_decode_all(path)
        same = (
            len(ref) == n
            and np.array_equal(ours, events)
            and np.array_equal(ref["t"].astype(np.int64), events["t"])
            and np.array_equal(ref["x"], events["x"].astype(np.uint16))
            and np.array_equal(ref["on"], events["p"])
        )
        mb = path.stat().st_size / 1e6
        print(
            f"  {name:<22} {compression:<5} {n / 1e6:7.3f} Mev {mb:8.1f} MB | packets "
            f"{n / t_pack / 1e6:7.1f} Mev/s | write file {n / t_enc / 1e6:6.1f} Mev/s | read file {n / t_dec / 1e6:7.1f} Mev/s | aedat "
            f"{n / t_ref / 1e6:7.1f} Mev/s | ours/aedat {t_ref / t_dec:5.2f}x | identical {same}"
        )
        if not same:
            raise SystemExit(f"{name}: decoded events differ from the aedat package's")


def bench_tcp(path: Path, events: np.ndarray, packet_us: int, compression: str) -> float:
    from sdt3_event.stream.network import NetworkSource

    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sdt3_event.apps.cli",
            "serve",
            str(path),
            "--port",
            "0",
            "--speed",
            "0",
            "--packet-us",
            str(packet_us),
            "--compression",
            compression,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = serve.stdout.readline()
        port = int(line.split(" on tcp://127.0.0.1:")[1].split()[0])
        src = NetworkSource("127.0.0.1", port, reconnect=False)
        chunks = []
        t0, c0 = time.perf_counter(), time.process_time()
        t_last, c_last = t0, c0
        for chunk in src:
            chunks.append(chunk)
            t_last, c_last = time.perf_counter(), time.process_time()
    finally:
        serve.terminate()
        serve.wait(10)
    got = np.concatenate(chunks)
    if len(got) != len(events) or not np.array_equal(got, events):
        raise SystemExit(f"TCP: received {len(got)} events, sent {len(events)}: events lost")
    rate = len(events) / (t_last - t0) / 1e6
    cpu_rate = len(events) / max(c_last - c0, 1e-9) / 1e6
    mean_packet = len(events) / max(1, len(chunks))
    print(
        f"  packets {packet_us:>6} us ({mean_packet:7.0f} ev/packet) {compression:<5} | "
        f"{len(events) / 1e6:6.2f} Mev received, none lost | {rate:7.1f} Mev/s wall | "
        f"client CPU {cpu_rate:7.1f} Mev/s per core"
    )
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--smoke", action="store_true", help="small sizes, one repetition (CI)")
    ap.add_argument("--events", type=int, default=None, help="synthetic stream length")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()
    n = args.events or (300_000 if args.smoke else 10_000_000)
    repeat = args.repeat or (1 if args.smoke else 3)
    from sdt3_event.events.aedat4 import read_aedat4, write_aedat4

    sensor = (346, 260, 2)
    events = synthetic(n, sensor)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        print(f"AEDAT 4.0 codec (best CPU time of {repeat}; aedat = the aedat package, Rust):")
        for rec in sorted(RECORDINGS.glob("*.aedat4")) if RECORDINGS.is_dir() else []:
            ev, size = read_aedat4(rec)
            bench_codec(rec.stem, ev, size, tmp, repeat)
        bench_codec(f"synthetic_{n // 1000}k", events, sensor, tmp, repeat)

        print("TCP source, loopback, server as fast as possible (events counted and compared):")
        path = write_aedat4(tmp / "stream.aedat4", events, sensor, compression="none")
        best = 0.0
        configs = [(1000, "none"), (10_000, "none"), (1000, "lz4")]
        for packet_us, compression in configs:
            best = max(best, bench_tcp(path, events, packet_us, compression))
        print(f"highest lossless TCP source rate: {best:.1f} Mev/s (wall clock, loopback)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
