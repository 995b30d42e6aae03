"""Download benchmark: ``sdt3_event.hub.download_file`` against the standard library's
``urllib.request.urlretrieve`` fetching the same file from a local HTTP server in the same run.

    python bench/bench_download.py            # a 256 MB file
    python bench/bench_download.py --smoke    # 16 MB (CI)

The server is ``python -m http.server`` in a separate process on 127.0.0.1, so the client's CPU
time is its own. The hub client does more per byte (first-bytes check, part file, fsync-free
atomic rename, size check against Content-Length); the ratio shows what that costs. Wall and CPU
times are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sdt3_event.hub import download_file, looks_like_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int) -> None:
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the http.server process did not start")


def best_of(fn, repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), max(min(cpus), 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    mb = 16 if args.smoke else args.mb
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        served = root / "srv"
        served.mkdir()
        body = b"PK\x03\x04" + os.urandom(mb * (1 << 20) - 4)  # looks like a torch zip file
        (served / "ckpt.pth").write_bytes(body)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=served,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(port)
            url = f"http://127.0.0.1:{port}/ckpt.pth"
            hub = best_of(
                lambda: download_file(url, root / "hub.pth", looks_valid=looks_like_checkpoint),
                args.repeat,
            )
            std = best_of(lambda: urllib.request.urlretrieve(url, root / "std.pth"), args.repeat)
        finally:
            server.terminate()
            server.wait()
        assert (root / "hub.pth").read_bytes() == body == (root / "std.pth").read_bytes()
    print(f"download {mb} MB from 127.0.0.1 (best of {args.repeat})")
    for name, (wall, cpu) in (("sdt3_event.hub", hub), ("urllib urlretrieve", std)):
        print(f"  {name:20s} wall {wall:6.3f} s ({mb / wall:7.1f} MB/s)  cpu {cpu:6.3f} s")
    print(f"  hub / urlretrieve: wall x{hub[0] / std[0]:.2f}, cpu x{hub[1] / std[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
