"""A DV-compatible replay server: events or a recording served as a DV network stream.

:class:`DVServer` replays events (a recording) to any number of clients, each from the start, at the
recorded speed, a multiple of it, or as fast as the client reads (``speed=0``); optionally looping.
dv-processing's ``NetworkReader`` reads it like a camera's stream, and so does
:class:`~sdt3_event.stream.network.NetworkSource` (``tcp://HOST:PORT``). The protocol is described in
:mod:`sdt3_event.stream.network`.

Example:
    >>> with DVServer.from_file("rec.aedat4", port=7777, speed=1.0) as server:  # doctest: +SKIP
    ...     for chunk in NetworkSource("127.0.0.1", server.port):
    ...         ...
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sdt3_event.events import aedat4
from sdt3_event.events.aedat4 import Compression, StreamInfo
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, SensorSize, validate_events
from sdt3_event.stream.network import POLL_S

if TYPE_CHECKING:
    from sdt3_event.events.io import EventChunks

log = logging.getLogger(__name__)


def _split_packets(
    events: np.ndarray, packet_us: int, max_events: int, t0: int | None = None
) -> list[np.ndarray]:
    """Cut time-sorted events into packets on a ``packet_us`` grid from ``t0`` (default: the first
    event), at most ``max_events`` each."""
    if len(events) == 0:
        return []
    t = events["t"]
    t0 = int(t[0]) if t0 is None else t0
    cell = (t - t0) // packet_us
    cuts = np.flatnonzero(np.diff(cell)) + 1
    out = []
    for seg in np.split(events, cuts):
        out.extend(seg[i : i + max_events] for i in range(0, len(seg), max_events))
    return out


class DVServer:
    """Serve events as a DV network stream (what dv-processing's ``NetworkReader`` reads).

    Each client gets the IOHeader first, then its own replay of the events from the start.

    Args:
        events: time-sorted ``EVENT_DTYPE`` events, or a file's
            :func:`~sdt3_event.events.io.iter_events` chunks (each client reads them afresh).
        sensor_size: ``(W, H, P)`` announced in the header.
        host / port: where to listen (``port=0`` picks a free port; see ``self.port``).
        speed: multiple of the recorded speed; ``0`` = as fast as the client reads.
        loop: replay forever; timestamps keep increasing from one pass to the next.
        packet_us: packet duration in event time (DV cameras send about one packet per ms).
        max_packet_events: split denser packets.
        compression: ``"none"`` (what dv-processing's NetworkWriter sends), ``"lz4"``, ``"zstd"``.
        max_clients: more simultaneous clients are refused (the connection is closed).
        source_name: the camera name announced in the header.
        linger_s: after a (non-looping) replay, keep the connection open this long before
            closing it: dv-processing's ``NetworkReader`` discards packets still in flight when the
            server closes, so a short linger lets it drain.

    Raises:
        EventFormatError: invalid or unsorted events, or events outside the sensor.
        ValueError: bad speed / packet settings / compression.
    """

    def __init__(
        self,
        events: np.ndarray | EventChunks,
        sensor_size: SensorSize,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        loop: bool = False,
        packet_us: int = 1000,
        max_packet_events: int = 1 << 16,
        compression: str | Compression = "none",
        max_clients: int = 16,
        source_name: str = "sdt3-event",
        linger_s: float = 0.5,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if packet_us < 1 or max_packet_events < 1 or max_clients < 1:
            raise ValueError("packet_us, max_packet_events and max_clients must be >= 1")
        from sdt3_event.events.io import EventChunks

        self._chunks: EventChunks | None = None
        if isinstance(events, EventChunks):  # a file, read chunk by chunk by every client
            self._chunks = events
            events = next(iter(events), np.empty(0, EVENT_DTYPE))[:1]
        validate_events(events, sensor_size, source="DVServer events")
        self.sensor_size = tuple(int(s) for s in sensor_size)
        self.host, self._want_port = host, int(port)
        self.speed, self.loop = float(speed), bool(loop)
        self.compression = Compression.parse(compression)
        self.packet_us, self.max_packet_events = int(packet_us), int(max_packet_events)
        self.max_clients = int(max_clients)
        self.linger_s = float(linger_s)
        info = StreamInfo(
            0, aedat4.EVENT_TYPE_ID, "events", "DVServer", self.sensor_size[:2], source_name
        )
        xml = aedat4.build_info_xml([info], self.compression)
        self._header = aedat4.encode_io_header(self.compression, xml, -1)
        raw = [aedat4.events_to_dv(p) for p in _split_packets(events, packet_us, max_packet_events)]
        self._encoded = [self._encode(p, 0) for p in raw]
        self._t_end = [int(p["t"][-1]) for p in raw]
        self._raw = raw if self.loop else []  # later passes re-encode with shifted timestamps
        if len(events):
            self._t_first = int(events["t"][0])
            self._period = int(events["t"][-1]) - self._t_first + packet_us
        else:
            self._t_first, self._period = 0, packet_us
        #: events served per pass (for a file, what it declares; ``None``: not known ahead)
        self.n_events: int | None = self._chunks.n_events if self._chunks else len(events)
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self.clients_served = 0
        self.clients_refused = 0
        self.port = 0

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        sensor_size: SensorSize | None = None,
        *,
        allow_truncated: bool = False,
        **kwargs,
    ) -> DVServer:
        """A server replaying a recording, read chunk by chunk with ``iter_events`` for every
        client (constant memory for recordings larger than RAM); ``allow_truncated`` replays the
        complete part of a file cut short.

        Raises:
            FileNotFoundError: no such file.
            EventFormatError: unreadable recording, or no sensor size known (pass ``sensor_size``).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such recording")
        from sdt3_event.events.io import iter_events

        # clients read it chunk by chunk
        events = iter_events(path, 1 << 20, sensor_size, allow_truncated=allow_truncated)
        size = events.sensor_size
        if size is None:
            raise EventFormatError(
                f"{path}: the file does not state its sensor size; pass sensor_size=(W, H, 2)"
            )
        if len(size) == 2:
            size = (int(size[0]), int(size[1]), 2)
        kwargs.setdefault("source_name", path.stem)
        return cls(events, size, **kwargs)

    def _encode(self, raw: np.ndarray, shift: int) -> bytes:
        if shift:
            raw = raw.copy()
            raw["t"] += shift
        payload = aedat4.compress(aedat4.encode_event_packet(raw), self.compression)
        return aedat4.PACKET_HEADER.pack(0, len(payload)) + payload

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def start(self) -> DVServer:
        """Bind and start accepting clients in a background thread. Returns ``self``.

        Raises:
            OSError: the address is in use or cannot be bound.
        """
        if self._listener is not None:
            return self
        lst = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lst.bind((self.host, self._want_port))
            lst.listen(self.max_clients)
        except OSError:
            lst.close()
            raise
        lst.settimeout(POLL_S)
        self._listener, self.port = lst, lst.getsockname()[1]
        self._stop.clear()
        t = threading.Thread(target=self._accept_loop, name=f"DVServer:{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        log.info("DVServer: serving %s events on %s", self.n_events or "streamed", self.address)
        return self

    def serve_forever(self) -> None:
        """Start (if needed) and block until ``stop()`` (or Ctrl-C)."""
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, drop every client, join the threads. Idempotent."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients = list(self._clients.values())
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    @property
    def n_clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def __enter__(self) -> DVServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- threads ----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        lst = self._listener
        ids = itertools.count()
        while not self._stop.is_set() and lst is not None:
            try:
                conn, peer = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                full = len(self._clients) >= self.max_clients
                if not full:
                    cid = next(ids)
                    self._clients[cid] = conn
                    self.clients_served += 1
            if full:
                self.clients_refused += 1
                log.warning("DVServer: refusing %s: %d clients already", peer, self.max_clients)
                conn.close()
                continue
            t = threading.Thread(
                target=self._serve_client, args=(cid, conn, peer), name=f"DVServer-client{cid}"
            )
            t.daemon = True
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _pass(self, k: int, shift: int) -> Iterator[tuple[int, bytes]]:
        """``(last t before the shift, encoded packet)`` for replay pass ``k``."""
        if self._chunks is None:
            for i, enc in enumerate(self._encoded):
                yield self._t_end[i], (enc if k == 0 else self._encode(self._raw[i], shift))
            return
        try:
            for chunk in self._chunks:
                for p in _split_packets(
                    chunk, self.packet_us, self.max_packet_events, self._t_first
                ):
                    yield int(p["t"][-1]), self._encode(aedat4.events_to_dv(p), shift)
        except EventFormatError as exc:  # corrupt further in: the replay ends there
            log.error("DVServer: %s", exc)

    def _serve_client(self, cid: int, conn: socket.socket, peer) -> None:
        log.info("DVServer: client %s connected", peer)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            conn.sendall(self._header)
            wall0 = time.monotonic()
            period = self._period
            for k in itertools.count():
                shift = k * period
                t_end = None
                for t_end, enc in self._pass(k, shift):
                    if self._stop.is_set():
                        return
                    if self.speed > 0:
                        t_rel = t_end + shift - self._t_first
                        wait = wall0 + t_rel / 1e6 / self.speed - time.monotonic()
                        if wait > 0 and self._stop.wait(wait):
                            return
                    conn.sendall(enc)
                if not self.loop or t_end is None:
                    break
                if self._chunks is not None and k == 0:
                    period = t_end - self._t_first + self.packet_us
            log.info("DVServer: finished replay to %s", peer)
            if self.linger_s > 0:
                self._stop.wait(self.linger_s)
        except OSError as exc:
            log.info("DVServer: client %s gone (%s)", peer, exc)
        finally:
            with self._lock:
                self._clients.pop(cid, None)
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
