"""DV network streams over loopback: the project's client and server, dv-processing both ways, bad input."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

from sdt3_event.events import aedat4
from sdt3_event.events.aedat4 import Compression, StreamInfo
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, make_events
from sdt3_event.stream.base import EventSource
from sdt3_event.stream.dv_server import DVServer
from sdt3_event.stream.factory import open_source
from sdt3_event.stream.network import NetworkSource

SENSOR = (64, 48, 2)
HOST = "127.0.0.1"


def random_events(n: int, seed: int = 0, t0: int = 5_000, span_us: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, span_us, n))
    return make_events(
        t, rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), rng.random(n) < 0.5
    )


def collect(source, *, limit: int | None = None, timeout_s: float = 10.0) -> np.ndarray:
    """Iterate a source in a thread until it ends, ``limit`` events arrive, or the timeout."""
    chunks: list[np.ndarray] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def run():
        try:
            for c in source:
                chunks.append(c)
                if limit is not None and sum(map(len, chunks)) >= limit:
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(timeout_s):
        source.close()
        done.wait(5)
        raise AssertionError(f"source did not finish within {timeout_s} s")
    if errors:
        raise errors[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, EVENT_DTYPE)


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class RawServer:
    """A loopback server that sends fixed bytes to each client, then holds or closes the connection."""

    def __init__(self, payload: bytes, hold_s: float = 0.0) -> None:
        self.payload, self.hold_s = payload, hold_s
        self.sock = socket.create_server((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                conn.sendall(self.payload)
                self.stop.wait(self.hold_s)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def dv_header(compression=Compression.NONE) -> bytes:
    xml = aedat4.build_info_xml([StreamInfo(0, "EVTS", "events", size=SENSOR[:2])], compression)
    return aedat4.encode_io_header(compression, xml)


# -- the project's server and client ---------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_server_to_client_exact(compression):
    ev = random_events(20_000)
    with DVServer(ev, SENSOR, speed=0, compression=compression, linger_s=0) as server:
        src = NetworkSource(HOST, server.port, reconnect=False)
        assert isinstance(src, EventSource)
        got = collect(src)
    np.testing.assert_array_equal(got, ev)
    assert src.sensor_size == SENSOR
    assert src.status.state == "finished"
    assert src.stats()["connections"] == 1


def test_open_source_dispatches_tcp_uris():
    ev = random_events(3000)
    with DVServer(ev, SENSOR, speed=0, linger_s=0) as server:
        src = open_source(f"tcp://{HOST}:{server.port}?reconnect=false&backoff_s=0.05")
        assert isinstance(src, NetworkSource) and src.backoff_s == 0.05
        np.testing.assert_array_equal(collect(src), ev)


def test_multiple_clients_each_get_the_whole_replay():
    ev = random_events(5000)
    with DVServer(ev, SENSOR, speed=0, linger_s=0.2) as server:
        sources = [NetworkSource(HOST, server.port, reconnect=False) for _ in range(3)]
        results = [None] * 3

        def run(i):
            results[i] = collect(sources[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert server.clients_served == 3
    for r in results:
        np.testing.assert_array_equal(r, ev)


def test_looping_replay_keeps_time_increasing():
    ev = random_events(1000, span_us=20_000)
    with DVServer(ev, SENSOR, speed=0, loop=True, packet_us=500) as server:
        src = NetworkSource(HOST, server.port, reconnect=False)
        got = collect(src, limit=3 * len(ev) + 1)
        src.close()
    assert np.all(np.diff(got["t"]) >= 0)
    first, second = got[: len(ev)], got[len(ev) : 2 * len(ev)]
    np.testing.assert_array_equal(first, ev)
    shift = int(second["t"][0] - ev["t"][0])
    assert shift > int(ev["t"][-1] - ev["t"][0])
    np.testing.assert_array_equal(second["t"] - shift, ev["t"])
    np.testing.assert_array_equal(second[["x", "y", "p"]], ev[["x", "y", "p"]])


@pytest.mark.parametrize("name, fmt", [("rec.raw", "evt2"), ("rec.aedat4", "aedat4")])
def test_a_served_file_is_read_chunk_by_chunk_by_each_client(tmp_path, name, fmt):
    from sdt3_event.events import write_events

    ev = random_events(20_000)
    path = write_events(tmp_path / name, ev, SENSOR, format=fmt)
    server = DVServer.from_file(path, SENSOR, speed=0, loop=True, linger_s=0)
    assert server.n_events == (len(ev) if fmt == "aedat4" else None)  # the data table says
    with server:
        src = NetworkSource(HOST, server.port, reconnect=False)
        got = collect(src, limit=2 * len(ev))
        src.close()
    np.testing.assert_array_equal(got[: len(ev)], ev)
    assert np.all(np.diff(got["t"]) >= 0)  # the second pass continues the time line
    np.testing.assert_array_equal(got[len(ev) :][["x", "y", "p"]], ev[["x", "y", "p"]])


def test_paced_replay_delivers_everything():
    ev = random_events(2000, span_us=150_000)  # 0.15 s of events at speed 2 -> ~0.08 s
    with DVServer(ev, SENSOR, speed=2.0, linger_s=0) as server:
        got = collect(NetworkSource(HOST, server.port, reconnect=False))
    np.testing.assert_array_equal(got, ev)


def test_reconnects_after_the_server_dies(caplog):
    ev = random_events(2000, span_us=50_000)
    server = DVServer(ev, SENSOR, speed=1.0, loop=True).start()
    port = server.port
    src = NetworkSource(HOST, port, backoff_s=0.05, max_backoff_s=0.2, max_retries=0)
    chunks: list[np.ndarray] = []
    states: list[str] = []
    t = threading.Thread(target=lambda: chunks.extend(src), daemon=True)
    t.start()
    try:
        wait_for(lambda: sum(map(len, chunks)) > 500)
        server.stop()
        wait_for(lambda: src.status.state == "reconnecting")
        states.append(src.status.state)
        time.sleep(0.3)  # a few refused attempts with back-off
        assert src.status.state == "reconnecting"
        assert "retry in" in src.status.message
        n_before = sum(map(len, chunks))
        server = DVServer(ev, SENSOR, port=port, speed=0, loop=True).start()
        wait_for(
            lambda: src.stats()["connections"] == 2 and sum(map(len, chunks)) > n_before + 2000
        )
        assert src.status.state == "connected"
        assert src.status.message.startswith(f"reconnected to {HOST}:{port}")  # announced
    finally:
        src.close()
        server.stop()
        t.join(5)
    got = np.concatenate(chunks)
    assert np.all(np.diff(got["t"]) >= 0), "time must keep increasing across the reconnection"
    assert src.time_jumps >= 1
    assert src.status.state == "finished"
    assert "reconnected to" in caplog.text  # on stderr too (a warning)


def test_gives_up_after_max_retries_when_nobody_listens():
    probe = socket.create_server((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()
    src = NetworkSource(HOST, port, backoff_s=0.01, max_backoff_s=0.02, max_retries=3)
    with pytest.raises(ConnectionError, match="giving up after 3 reconnection attempts"):
        collect(src)
    assert src.status.state == "error"
    no_retry = NetworkSource(HOST, port, reconnect=False)
    with pytest.raises(ConnectionError, match="sdt3-event serve"):
        collect(no_retry)


def test_close_from_another_thread_ends_a_silent_stream():
    with RawServer(dv_header(), hold_s=30) as raw:
        src = NetworkSource(HOST, raw.port)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("ev", list(src)), daemon=True)
        t.start()
        wait_for(lambda: src.status.state == "connected")
        assert src.sensor_size == SENSOR
        src.close()
        t.join(3)
        assert not t.is_alive() and result["ev"] == []
        assert src.status.state == "finished"


def test_idle_timeout_treats_a_silent_connection_as_lost():
    with RawServer(dv_header(), hold_s=10) as raw:
        src = NetworkSource(HOST, raw.port, reconnect=False, idle_timeout_s=0.5)
        with pytest.raises(ConnectionError, match="no data for 0.5 s"):
            collect(src, timeout_s=8)


def test_a_recording_piped_into_a_socket_is_read_whole(tmp_path):
    # magic line, header with a data table position, packets, data table: as `nc -l < rec.aedat4`
    ev = random_events(4000)
    with RawServer(
        aedat4.write_aedat4(tmp_path / "r.aedat4", ev, SENSOR, packet_size=900).read_bytes()
    ) as raw:
        src = NetworkSource(HOST, raw.port, reconnect=False)
        np.testing.assert_array_equal(collect(src), ev)
        assert src.status.state == "finished"


# -- bad input -------------------------------------------------------------------------------------


def assert_read_fails(payload: bytes, match: str) -> None:
    """A client reading ``payload`` from a server, without reconnecting, raises
    ``EventFormatError`` matching ``match``."""
    with RawServer(payload) as raw:
        with pytest.raises(EventFormatError, match=match):
            collect(NetworkSource(HOST, raw.port, reconnect=False))


def test_garbage_server_raises_or_reconnects_with_a_clear_message():
    with RawServer(bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))) as raw:
        with pytest.raises(EventFormatError, match="not plausible|IOHE|not AEDAT"):
            collect(NetworkSource(HOST, raw.port, reconnect=False))
        src = NetworkSource(HOST, raw.port, backoff_s=0.01, max_backoff_s=0.02, max_retries=2)
        with pytest.raises(ConnectionError, match="last problem: bad data"):
            collect(src)
        assert raw.accepted >= 3


def test_truncated_packet_raises():
    packet = aedat4.encode_packet(0, random_events(100))
    assert_read_fails(dv_header() + packet[: len(packet) // 2], "truncated")


def test_absurd_length_is_never_allocated():
    with RawServer(dv_header() + struct.pack("<ii", 0, 0x7FFFFFF0) + bytes(64), hold_s=5) as raw:
        tracemalloc.start()
        with pytest.raises(EventFormatError, match="claims 2147483632 bytes"):
            collect(NetworkSource(HOST, raw.port, reconnect=False), timeout_s=4)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 16 * 1024 * 1024


def test_corrupt_compressed_packet_and_undeclared_stream_raise():
    good = aedat4.compress(aedat4.encode_event_packet(random_events(50)), Compression.LZ4)
    bad = bytearray(good)
    bad[20:40] = bytes(20)
    # no checksums in DV's LZ4 frames: the zeroed bytes surface as a broken flatbuffer
    lz4_packet = struct.pack("<ii", 0, len(bad)) + bytes(bad)
    assert_read_fails(dv_header(Compression.LZ4) + lz4_packet, "LZ4|identifier")
    assert_read_fails(dv_header() + struct.pack("<ii", 9, 16) + bytes(16), "stream id 9")


def test_events_outside_the_sensor_are_dropped_and_counted():
    ev = random_events(100)
    ev["x"][::10] = 500  # 10 strays
    with RawServer(dv_header() + aedat4.encode_packet(0, ev)) as raw:
        src = NetworkSource(HOST, raw.port, reconnect=False)
        got = collect(src)
    assert len(got) == 90 and src.events_out_of_range == 10


def test_server_rejects_bad_arguments():
    ev = random_events(10)
    with pytest.raises(ValueError, match="speed must be >= 0"):
        DVServer(ev, SENSOR, speed=-1)
    with pytest.raises(EventFormatError, match="outside the 8x8 sensor"):
        DVServer(ev, (8, 8, 2))


# -- dv-processing interoperability ----------------------------------------------------------------


_DV_WRITER = r"""
import os, sys, time
import numpy as np
import dv_processing as dv
ev = np.load(sys.argv[2])
stream = dv.io.Stream.EventStream(0, "events", "DVXplorer_test", (64, 48))
writer = dv.io.NetworkWriter("127.0.0.1", int(sys.argv[1]), stream)
print("listening", flush=True)
deadline = time.time() + 20
while writer.getClientCount() < 1 and time.time() < deadline:
    time.sleep(0.01)
time.sleep(0.2)  # let the client read the header
for part in np.array_split(ev, 6):
    store = dv.EventStore()
    for e in part:
        store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
    writer.writeEvents(store)
while writer.getClientCount() > 0 and time.time() < deadline:
    time.sleep(0.01)
# Skip the writer's destructor: it can deadlock on the GIL with its error callback thread.
os._exit(0)
"""


def test_dv_processing_network_writer_feeds_our_client(tmp_path):
    pytest.importorskip("dv_processing")
    probe = socket.create_server((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()
    ev = random_events(3000)
    np.save(tmp_path / "ev.npy", ev)
    writer = subprocess.Popen(
        [sys.executable, "-c", _DV_WRITER, str(port), str(tmp_path / "ev.npy")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "listening"
        src = NetworkSource(HOST, port, reconnect=False)
        got = collect(src, limit=len(ev), timeout_s=30)
        src.close()
        writer.wait(20)
    finally:
        writer.kill()
    np.testing.assert_array_equal(got, ev)
    assert src.sensor_size == SENSOR


_DV_READER = r"""
import sys, time
import numpy as np
import dv_processing as dv
reader = dv.io.NetworkReader("127.0.0.1", int(sys.argv[1]))
w, h = reader.getEventResolution()
chunks, deadline = [], time.time() + 20
while time.time() < deadline:
    batch = reader.getNextEventBatch()
    if batch is not None:
        chunks.append(batch.numpy())
    elif not reader.isRunning():
        break
    else:
        time.sleep(0.001)
a = np.concatenate(chunks)
np.savez(sys.argv[2], t=a["timestamp"], x=a["x"], y=a["y"], p=a["polarity"], size=[w, h])
"""


def test_our_server_feeds_dv_processing_network_reader(tmp_path):
    pytest.importorskip("dv_processing")
    ev = random_events(30_000)
    rec = aedat4.write_aedat4(tmp_path / "rec.aedat4", ev, SENSOR)
    # The server runs as `sdt3-event serve` in its own process: dv-processing's reader blocks
    # without releasing the GIL, so it cannot share a process with a Python server thread.
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sdt3_event.apps.cli",
            "serve",
            str(rec),
            "--port",
            "0",
            "--speed",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = serve.stdout.readline()
        assert line.startswith("serving 30000 events (64x48)"), line
        port = int(line.split(" on tcp://127.0.0.1:")[1].split()[0])
        out = tmp_path / "dv.npz"
        subprocess.run(
            [sys.executable, "-c", _DV_READER, str(port), str(out)], check=True, timeout=60
        )
    finally:
        serve.terminate()
        serve.wait(10)
    got = np.load(out)
    assert list(got["size"]) == [64, 48]
    np.testing.assert_array_equal(make_events(got["t"], got["x"], got["y"], got["p"] != 0), ev)


def test_serve_command_reports_a_missing_file(tmp_path, capsys):
    from sdt3_event.apps.cli import main

    assert main(["serve", str(tmp_path / "none.aedat4"), "--port", "0"]) == 2  # a user mistake
    assert "no such recording" in capsys.readouterr().err
