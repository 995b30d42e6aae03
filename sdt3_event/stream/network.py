"""DV network streams: the ``tcp://HOST:PORT`` event source.

The DV network protocol (iniVation's DV software, dv-processing's ``NetworkWriter`` /
``NetworkReader``) is the AEDAT 4.0 byte stream without the magic line: on connection the server sends
the size-prefixed IOHeader (compression + info XML declaring the streams), then packets
``[stream_id:int32][size:int32][payload]`` for as long as it runs. See
:mod:`sdt3_event.events.aedat4` for the layout.

:class:`NetworkSource` is the client: it decodes the event stream into ``EVENT_DTYPE`` chunks and
reconnects with capped exponential back-off when the server goes away or sends something that is not
a DV stream. Every length field is capped before anything is read, so garbage input costs at most one
bounded buffer. :class:`~sdt3_event.stream.dv_server.DVServer` is the matching server.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import numpy as np

from sdt3_event.events import aedat4
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, validate_events
from sdt3_event.stream.base import BaseEventSource

log = logging.getLogger(__name__)

POLL_S = 0.25  # seconds: how often blocking socket calls wake up to notice close()


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
        sock.settimeout(POLL_S)

    def _recv_into(self, target: memoryview) -> int:
        waited = 0.0
        while True:
            if self.closed.is_set():
                raise _Closed
            try:
                n = self.sock.recv_into(target)
            except TimeoutError:
                waited += POLL_S
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
                rows = aedat4.packet_event_rows(
                    pkt, header.compression, max_packet_bytes=self.max_packet_bytes, what=what
                )
                events = self._decode(rows, what)
                if len(events):
                    self.events_in += len(events)
                    yield events
        finally:
            self.bytes_in += reader.bytes_read

    def _decode(self, raw: np.ndarray, what: str) -> np.ndarray:
        """On-wire rows -> events: one compiled pass converts them and gathers the order and the
        coordinate bounds; then time is kept non-decreasing across packets and strays dropped.

        Raises:
            EventFormatError: timestamps going backwards inside the packet, or negative.
        """
        from sdt3_event.events import _kernels as k

        events = np.empty(len(raw), dtype=EVENT_DTYPE)
        if len(raw) == 0:
            return events
        st = k.new_state()
        k.dv16(raw, st, events, 0)
        if st[k.N_BACK]:
            raise EventFormatError(f"{what}: timestamps go backwards inside a packet")
        t = events["t"]
        first = int(t[0]) + self._shift
        if self._last_t is not None and first < self._last_t:
            jump = self._last_t - first
            self._shift += jump
            first += jump
            self.time_jumps += 1
            log.info(
                "%s: stream went back %d us in time; continuing from %d", what, jump, self._last_t
            )
        if first < 0:
            raise EventFormatError(f"{what}: negative timestamp {first} us")
        if self._shift:
            t += self._shift
        self._last_t = int(st[k.LAST_T]) + self._shift
        size = self._sensor_size
        if size is not None and (
            st[k.MIN_X] < 0 or st[k.MAX_X] >= size[0] or st[k.MIN_Y] < 0 or st[k.MAX_Y] >= size[1]
        ):
            events, n_out = validate_events(
                events, size, source=what, drop_out_of_range=True, require_sorted=False
            )
            if not self.events_out_of_range:
                log.warning("%s: dropping events outside the %s sensor", what, size)
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
