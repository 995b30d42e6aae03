"""DV network streams: a ``tcp://HOST:PORT`` event source and a DV-compatible replay server.

The DV network protocol (iniVation's DV software, dv-processing's ``NetworkWriter`` /
``NetworkReader``) is the AEDAT 4.0 byte stream without the magic line: on connection the server sends
the size-prefixed IOHeader (compression + info XML declaring the streams), then packets
``[stream_id:int32][size:int32][payload]`` for as long as it runs. See
:mod:`sdt3_event.events.aedat4` for the layout.

:class:`NetworkSource` is the client: it decodes the event stream into ``EVENT_DTYPE`` chunks and
reconnects with capped exponential back-off when the server goes away or sends something that is not
a DV stream. Every length field is capped before anything is read, so garbage input costs at most one
bounded buffer.

:class:`DVServer` replays events (a recording) to any number of clients, each from the start, at the
recorded speed, a multiple of it, or as fast as the client reads (``speed=0``); optionally looping.
dv-processing's ``NetworkReader`` reads it like a camera's stream.

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
from sdt3_event.stream.source import BaseEventSource

if TYPE_CHECKING:
    from sdt3_event.events.io import EventChunks

log = logging.getLogger(__name__)

_POLL_S = 0.25  # how often blocking socket calls wake up to notice close()


class _Closed(Exception):
    """The source was closed while a read was blocked."""


class _SocketReader:
    """A buffered ``read(n)`` over a socket that wakes up to notice ``close()`` and idle timeouts.

    ``read`` returns at most ``n`` bytes (possibly fewer) and ``b""`` at a clean EOF, like a file.
    """

    def __init__(
        self,
        sock: socket.socket,
        closed: threading.Event,
        idle_timeout_s: float | None,
        bufsize: int = 1 << 20,
    ) -> None:
        self.sock, self.closed, self.idle_timeout_s = sock, closed, idle_timeout_s
        self.buf = bytearray(bufsize)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        self.bytes_read = 0  # received from the socket
        self.consumed = 0  # handed to the caller (the stream position)
        sock.settimeout(_POLL_S)

    def _recv_into(self, target: memoryview) -> int:
        waited = 0.0
        while True:
            if self.closed.is_set():
                raise _Closed
            try:
                n = self.sock.recv_into(target)
            except TimeoutError:
                waited += _POLL_S
                if self.idle_timeout_s and waited >= self.idle_timeout_s:
                    raise TimeoutError(f"no data for {self.idle_timeout_s:g} s") from None
                continue
            self.bytes_read += n
            return n

    def _take(self, target: memoryview) -> int:
        k = min(len(target), self.end - self.start)
        target[:k] = self.view[self.start : self.start + k]
        self.start += k
        self.consumed += k
        return k

    def readinto(self, target: memoryview | bytearray) -> int:
        """Fill up to ``len(target)`` bytes; large reads go straight from the socket (no copy)."""
        target = memoryview(target).cast("B")
        if self.start < self.end:
            return self._take(target)
        if len(target) >= 1 << 16:
            n = self._recv_into(target)
            self.consumed += n
            return n
        self.start, self.end = 0, self._recv_into(self.view)
        return self._take(target) if self.end else 0

    def read(self, n: int) -> bytes:
        if self.start == self.end:
            self.start, self.end = 0, self._recv_into(self.view)
            if self.end == 0:
                return b""
        k = min(n, self.end - self.start)
        out = bytes(self.view[self.start : self.start + k])
        self.start += k
        self.consumed += k
        return out


class NetworkSource(BaseEventSource):
    """Events from a DV network stream (``tcp://HOST:PORT``), with reconnection.

    Args:
        host: the server's address.
        port: its TCP port.
        uri: the URI to report (default ``tcp://HOST:PORT``).
        stream: the event stream's ``originalOutputName`` when the server sends several.
        reconnect: reconnect when the server goes away or sends garbage; without it, a clean end
            of stream finishes the iteration and an error raises.
        backoff_s: the first reconnection delay; it doubles after each failed attempt...
        max_backoff_s: ...up to this cap.
        max_retries: consecutive failed attempts before giving up with ``ConnectionError``
            (0 = never give up; default 3, so a wrong address fails within seconds).
        connect_timeout_s: the TCP connect timeout.
        idle_timeout_s: treat a connection that sends nothing for this long as lost (0 = never;
            TCP keep-alive still detects dead peers).
        max_packet_bytes: the largest packet accepted (compressed and decompressed).

    Status (``self.status.state``): ``connecting`` -> ``connected`` -> (``reconnecting`` ->
    ``connected``)* -> ``finished`` | ``error``.

    Timestamps never decrease: when a stream restarts earlier in time (a replay server looping back,
    a camera reset, a reconnection), later events are shifted to continue from the last timestamp
    and ``time_jumps`` counts it. Events outside the sensor are dropped and counted
    (``events_out_of_range``).

    Raises:
        ConnectionError: from iteration, when ``max_retries`` attempts failed (or the first
            connection failed and ``reconnect`` is off).
        EventFormatError: from iteration, when the stream is not a DV event stream and
            ``reconnect`` is off.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        uri: str | None = None,
        stream: str | None = None,
        reconnect: bool = True,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        max_retries: int = 3,
        connect_timeout_s: float = 3.0,
        idle_timeout_s: float = 0.0,
        max_packet_bytes: int = aedat4.MAX_PACKET_BYTES,
    ) -> None:
        super().__init__(uri or f"tcp://{host}:{port}")
        if not 0 < int(port) < 65536:
            raise ValueError(f"{self.uri}: port must be 1..65535, got {port}")
        if backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError("need 0 < backoff_s <= max_backoff_s")
        self.host, self.port = host.strip("[]"), int(port)  # tcp://[::1]:7777 gives "[::1]"
        self.stream = stream
        self.reconnect = bool(reconnect)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.max_retries = int(max_retries)
        self.connect_timeout_s = float(connect_timeout_s)
        self.idle_timeout_s = float(idle_timeout_s) or None
        self.max_packet_bytes = int(max_packet_bytes)
        self.connections = 0
        self.events_in = 0
        self.bytes_in = 0
        self.time_jumps = 0
        self.events_out_of_range = 0
        self.last_error = ""
        self._sock: socket.socket | None = None
        self._last_t: int | None = None
        self._shift = 0
        self._header_ok = False
        self._reached = False  # a TCP connection succeeded once (someone is listening)

    # -- connection -------------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        return sock

    def _no_server(self) -> str:
        return (
            f"no server at {self.host}:{self.port} (is `sdt3-event serve` running? start one with "
            "`sdt3-event serve FILE --port N`)"
        )

    def close(self) -> None:
        super().close()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _session(self, sock: socket.socket) -> Iterator[np.ndarray]:
        """Read one connection: the header, then event packets until EOF."""
        reader = _SocketReader(sock, self._closed, self.idle_timeout_s)
        what = self.uri
        try:
            # DV streams have no magic line; accept one anyway (a recording piped into a socket).
            header = aedat4.read_io_header(reader, expect_magic=None, what=what)
            info = header.event_stream(self.stream)
            size = None if info.size is None else (info.size[0], info.size[1], 2)
            if self._sensor_size is not None and size is not None and size != self._sensor_size:
                log.warning("%s: sensor size changed from %s to %s", what, self._sensor_size, size)
            if size is not None:
                self._sensor_size = size
            self.connections += 1
            self._header_ok = True
            detail = f"{info.source or 'DV stream'} {size[0]}x{size[1]}" if size else "DV stream"
            if self.connections > 1:
                detail = f"reconnected to {self.host}:{self.port} ({detail})"
                log.warning("%s: %s", self.uri, detail)
            self._set_status("connected", detail)
            # A piped file ends with its data table: stop there (its position is in the header).
            start = reader.consumed if header.data_table_position > 0 else -1
            for pkt in aedat4.iter_packets(
                reader,
                header,
                start_offset=start,
                max_packet_bytes=self.max_packet_bytes,
                what=what,
            ):
                if pkt.stream_id != info.stream_id:
                    continue
                events = aedat4.decode_packet_events(
                    pkt, header.compression, max_packet_bytes=self.max_packet_bytes, what=what
                )
                events = self._continue_time(events, what)
                if len(events):
                    self.events_in += len(events)
                    yield events
        finally:
            self.bytes_in += reader.bytes_read

    def _continue_time(self, events: np.ndarray, what: str) -> np.ndarray:
        """Check order inside a packet, keep time non-decreasing across packets, drop strays."""
        if len(events) == 0:
            return events
        t = events["t"]
        if len(t) > 1 and bool(np.any(t[1:] < t[:-1])):
            raise EventFormatError(f"{what}: timestamps go backwards inside a packet")
        if self._shift:
            t += self._shift
        if self._last_t is not None and int(t[0]) < self._last_t:
            jump = self._last_t - int(t[0])
            self._shift += jump
            t += jump
            self.time_jumps += 1
            log.info(
                "%s: stream went back %d us in time; continuing from %d", what, jump, self._last_t
            )
        self._last_t = int(t[-1])
        if self._sensor_size is not None:
            events, n_out = validate_events(
                events, self._sensor_size, source=what, drop_out_of_range=True, require_sorted=False
            )
            if n_out:
                if not self.events_out_of_range:
                    log.warning(
                        "%s: dropping events outside the %s sensor", what, self._sensor_size
                    )
                self.events_out_of_range += n_out
        return events

    def _chunks(self) -> Iterator[np.ndarray]:
        delay = self.backoff_s
        failures = 0
        self._set_status("connecting", f"connecting to {self.host}:{self.port}")
        while not self.closed:
            reason = ""
            try:
                sock = self._connect()
            except OSError as exc:
                reason = f"cannot connect to {self.host}:{self.port}: {exc}"
                if not self.reconnect:
                    raise ConnectionError(f"{self.uri}: {self._no_server()}") from exc
            else:
                self._reached = True
                self._sock = sock
                self._header_ok = False
                try:
                    yield from self._session(sock)
                    reason = "the server closed the connection"
                    if not self.reconnect:
                        return
                except _Closed:
                    return
                except EventFormatError as exc:
                    reason = f"bad data: {exc}"
                    if not self.reconnect:
                        raise
                except (OSError, TimeoutError) as exc:
                    if self.closed:
                        return
                    reason = f"connection lost: {exc}"
                    if not self.reconnect:
                        raise ConnectionError(f"{self.uri}: {reason}") from exc
                finally:
                    self._sock = None
                    sock.close()
                if self._header_ok:  # a good connection resets the back-off
                    delay, failures = self.backoff_s, 0
            if self.closed:
                return
            failures += 1
            self.last_error = reason
            if self.max_retries and failures > self.max_retries:
                what = self._no_server() if not self._reached else f"last problem: {reason}"
                raise ConnectionError(
                    f"{self.uri}: {what}; giving up after {self.max_retries} reconnection "
                    "attempts (max_retries=0 keeps trying)"
                )
            log.warning("%s: %s; reconnecting in %.2f s", self.uri, reason, delay)
            self._set_status("reconnecting", f"{reason}; retry in {delay:.2f} s")
            if not self._sleep(delay):
                return
            delay = min(delay * 2, self.max_backoff_s)

    def stats(self) -> dict[str, int | str]:
        """Counters: connections, events and bytes in, time jumps, strays dropped, last error."""
        return {
            "connections": self.connections,
            "events_in": self.events_in,
            "bytes_in": self.bytes_in,
            "time_jumps": self.time_jumps,
            "events_out_of_range": self.events_out_of_range,
            "last_error": self.last_error,
        }


# --------------------------------------------------------------------------------------------------
# the server


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
        lst.settimeout(_POLL_S)
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
