"""Prophesee readers: RAW EVT 2.0, RAW EVT 3.0 and DAT, through compiled (numba) kernels.

Format facts (Prophesee's encoding-format documentation and the behaviour of its OpenEB decoders;
expelliarmus is the peer decoder that the tests and ``bench/bench_io.py`` compare against; it is
not used for reading because its EVT 3.0 decoder adds 4096 us whenever EVT_TIME_LOW decreases,
even right after an EVT_TIME_HIGH that already advanced the time base, and its writer omits
EVT_TIME_HIGH words across gaps of 4096 us or more, so the two only agree on dense streams):

RAW header
    Text lines starting with ``%`` (``% evt 2.0`` / ``% evt 3.0`` or ``% format EVT3;height=H;
    width=W``, optionally ``% geometry WxH``), newer files close it with ``% end``.

EVT 2.0
    Little-endian 32-bit words, the 4 most significant bits give the type: ``0`` CD_OFF,
    ``1`` CD_ON (``ts_low:6 | x:11 | y:11`` in bits 27-22, 21-11, 10-0), ``8`` EVT_TIME_HIGH
    (bits 27-0 = timestamp bits 33-6), ``10`` EXT_TRIGGER, ``14`` OTHERS, ``15`` CONTINUED; other
    types are reserved. ``t = time_high << 6 | ts_low``; the 28-bit time high wraps after
    2**34 µs (~4.8 h), which is unwrapped here. CD events before the first EVT_TIME_HIGH have no
    time base and are dropped (counted in the log). The header holds no geometry on Gen3
    cameras, so the caller passes the sensor size.

EVT 3.0
    16-bit stateful words; see :func:`sdt3_event.events._kernels.evt3`.

Neither RAW encoding promises time order across readout groups, so their events are sorted
stably by ``t`` (the count is logged); DAT files are checked to be in order.

DAT
    ``%`` header lines (``% Version 2`` files then hold two bytes: event type, event size), then
    ``event size``-byte records ``t:u32, data:u32`` with ``x = data & 0x3FFF``,
    ``y = data >> 14 & 0x3FFF``, ``p = data >> 28``. Geometry from ``% Width``/``% Height`` or
    ``% geometry`` lines when present.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sdt3_event.events._assemble import (
    _V13,
    DecodedRecords,
    check_truncation,
    header_lines,
    split_header,
)
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, SensorSize

logger = logging.getLogger(__name__)

_EVT2_TIME_HIGH = 8
_DAT_RECORD = np.dtype([("t", "<u4"), ("data", "<u4")])
_DAT_CD_TYPES = (0, 12)  # Event2d (N-CARS, ATIS era) and EventCD


def raw_header(data: bytes) -> tuple[int, list[str]]:
    """Offset of the first event byte of a Prophesee RAW/DAT file and its header lines."""
    end = split_header(data, b"%", end_line=b"% end")
    return end, header_lines(data, end)


def raw_encoding(lines: list[str]) -> str | None:
    """``"evt2"``, ``"evt3"``, ``"evt21"`` or ``None`` from RAW header lines."""
    for line in lines:
        text = line.lstrip("%").strip().lower()
        if text.startswith("evt "):
            version = text.split()[1]
            return {"2.0": "evt2", "3.0": "evt3", "2.1": "evt21"}.get(version, f"evt{version}")
        if text.startswith("format "):
            name = text.split()[1].split(";")[0]
            return {"evt2": "evt2", "evt3": "evt3", "evt21": "evt21", "evt2.1": "evt21"}.get(
                name, name
            )
    return None


_GEOMETRY_LINE = re.compile(r"geometry\s+(\d+)\s*x\s*(\d+)")
_SIDE_LINE = re.compile(r"(width|height)\s+(\d+)$")
_VERSION_LINE = re.compile(r"%\s*version\s+(\d+)")


def header_geometry(lines: list[str]) -> SensorSize | None:
    """``(W, H, 2)`` from ``% geometry WxH``, ``% format ...;height=H;width=W`` or
    ``% Width``/``% Height`` header lines, else ``None``."""
    width = height = None
    for line in lines:
        text = line.lstrip("%").strip()
        low = text.lower()
        m = _GEOMETRY_LINE.match(low)
        if m:
            return (int(m.group(1)), int(m.group(2)), 2)
        if low.startswith("format "):
            fields = dict(kv.split("=", 1) for kv in low.split(None, 1)[1].split(";") if "=" in kv)
            if "width" in fields and "height" in fields:
                try:
                    return (int(fields["width"]), int(fields["height"]), 2)
                except ValueError:
                    return None
        m = _SIDE_LINE.match(low)
        if m:
            if m.group(1) == "width":
                width = int(m.group(2))
            else:
                height = int(m.group(2))
    if width and height:
        return (width, height, 2)
    return None


# -------------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class RawLayout:
    """Where the words of a RAW / DAT file start and how they are laid out.

    Attributes:
        fmt: ``"evt2"``, ``"evt3"`` or ``"dat"``.
        start: byte offset of the first word / record.
        word_bytes: 4 (EVT 2.0), 2 (EVT 3.0), 8 (DAT records).
        sensor_size: the header's geometry, else ``None``.
    """

    fmt: str
    start: int
    word_bytes: int
    sensor_size: SensorSize | None

    @property
    def ordered(self) -> bool:
        """DAT files promise time order; the RAW encodings do not."""
        return self.fmt == "dat"

    def words(self, buf, count: int) -> np.ndarray:
        """The first ``count`` words of ``buf`` (a zero-copy view) in the kernel's layout."""
        if self.fmt == "evt3":
            return np.frombuffer(buf, "<u2", count=count)
        if self.fmt == "dat":
            return np.frombuffer(buf, "<u4", count=2 * count).reshape(count, 2)  # [R, (t, data)]
        return np.frombuffer(buf, "<u4", count=count)


_WORD_BYTES = {"evt2": 4, "evt3": 2, "dat": 8}
_NAMES = {"evt2": "EVT 2.0", "evt3": "EVT 3.0", "dat": "DAT"}


def raw_layout(head: bytes, fmt: str, source: str) -> RawLayout:
    """Parse the text header (and DAT's type/size bytes) from the first bytes of a file.

    Args:
        head: the file's first bytes: at least the header, up to 1 MiB + 2.
        fmt: ``"evt2"``, ``"evt3"`` or ``"dat"``.

    Raises:
        EventFormatError: the header names another encoding, or a DAT event type/size this
            reader does not know.
    """
    if fmt == "dat" and not head.startswith(b"%"):
        raise EventFormatError(f"{source}: not a Prophesee DAT file (no '%' header)")
    start, lines = raw_header(head)
    if fmt in ("evt2", "evt3"):
        enc = raw_encoding(lines)
        if enc not in (None, fmt):
            raise EventFormatError(f"{source}: the RAW header says {enc}, not {_NAMES[fmt]}")
    else:
        version = 0
        for line in lines:
            m = _VERSION_LINE.match(line.strip().lower())
            if m:
                version = int(m.group(1))
        if version >= 2:
            if len(head) - start < 2:
                raise EventFormatError(f"{source}: truncated DAT file: no event type/size bytes")
            ev_type, ev_size = head[start], head[start + 1]
            start += 2
            if ev_type not in _DAT_CD_TYPES or ev_size != 8:
                raise EventFormatError(
                    f"{source}: DAT event type {ev_type} with {ev_size}-byte records is not a CD "
                    "event file this reader knows (types 0 and 12, 8-byte records)"
                )
    return RawLayout(fmt, start, _WORD_BYTES[fmt], header_geometry(lines))


def _kernel(fmt: str):
    from sdt3_event.events import _kernels

    return {"evt2": _kernels.evt2, "evt3": _kernels.evt3, "dat": _kernels.dat}[fmt]


def _raise_kernel_error(st: np.ndarray, layout: RawLayout, source: str, word0: int) -> None:
    """Raise the error a kernel left in its state; ``word0``: file offset of ``words[0]``."""
    from sdt3_event.events import _kernels as k

    code = int(st[k.ERR])
    if not code:
        return
    at = word0 + int(st[k.ERR_AT]) * layout.word_bytes
    name = _NAMES[layout.fmt]
    if code == k.ERR_RESERVED:
        raise EventFormatError(
            f"{source}: corrupt {name} stream: the word at byte {at} has the reserved type "
            f"{int(st[k.ERR_A])}"
        )
    if code == k.ERR_TIME_BACK:
        raise EventFormatError(
            f"{source}: corrupt {name} stream: the time base goes backwards "
            f"({int(st[k.ERR_A])} -> {int(st[k.ERR_B])} us at byte {at})"
        )
    raise EventFormatError(
        f"{source}: corrupt DAT record at byte {at}: polarity field {int(st[k.ERR_A])} "
        "(expected 0 or 1)"
    )


def _log_skipped(st: np.ndarray, fmt: str, source: str) -> None:
    from sdt3_event.events import _kernels as k

    skipped = int(st[k.N_SKIPPED])
    if skipped and fmt == "evt2":
        logger.warning(
            "%s: dropped %d CD events that precede the first EVT_TIME_HIGH (no time base)",
            source,
            skipped,
        )
    elif skipped:
        logger.debug("%s: skipped %d EVT 3.0 words before the first time base", source, skipped)


def decode_raw(
    path, fmt: str, source: str, allow_truncated: bool, data: bytes | None = None
) -> DecodedRecords:
    """Decode a whole EVT 2.0 / EVT 3.0 / DAT file with its compiled kernel.

    The file is memory-mapped (read-only) rather than copied: the kernel reads the page cache
    directly, which is what makes a single pass faster than reading the bytes first. A file
    below :data:`SMALL_FILE_BYTES` is read instead, or taken from ``data`` (its whole content,
    when the caller has read it already).

    Shape:
        file bytes -> records ``[N]``.

    Raises:
        EventFormatError: see :func:`raw_layout`; a reserved word type, a time base that goes
            backwards (other than the counter's wrap), a DAT polarity other than 0/1, or an
            incomplete last word / record (unless ``allow_truncated``).
    """
    if data is not None:
        return _decode_words(data, fmt, source, allow_truncated)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < SMALL_FILE_BYTES:  # one read costs less than setting up a mapping
            return _decode_words(f.read(), fmt, source, allow_truncated)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _decode_words(mapped, fmt, source, allow_truncated)


#: Files below this size are read into memory rather than mapped.
SMALL_FILE_BYTES = 1 << 20

#: DAT files with at least this many records decode in two threads (records are independent).
_SPLIT_RECORDS = 1 << 21


def _dat_two_halves(words: np.ndarray, st: np.ndarray, out: np.ndarray) -> tuple[int, int]:
    """Decode DAT records as two halves in two threads (the kernel releases the GIL), then merge
    the halves' statistics into ``st`` as one pass over the whole would have left them.

    Returns:
        ``(pos, n)`` as the kernel: records read and events written (they stop at an error).
    """
    from concurrent.futures import ThreadPoolExecutor

    from sdt3_event.events import _kernels as k

    h = len(words) // 2
    st2 = k.new_state()
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(k.dat, words[h:], 0, st2, out[h:], 0)
        pos, n = k.dat(words[:h], 0, st, out[:h], 0)
        pos2, n2 = second.result()
    if st[k.ERR] or pos < h:  # the first half stopped early: the second half does not count
        return pos, n
    if st2[k.ERR]:
        st[k.ERR : k.ERR_B + 1] = st2[k.ERR : k.ERR_B + 1]
        st[k.ERR_AT] += h
    if n2:
        first_t = int(out["t"][h])
        st[k.N_BACK] += st2[k.N_BACK] + (n and first_t < st[k.LAST_T])
        st[k.LAST_T] = st2[k.LAST_T]
        st[k.MIN_X] = min(st[k.MIN_X], st2[k.MIN_X])
        st[k.MAX_X] = max(st[k.MAX_X], st2[k.MAX_X])
        st[k.MIN_Y] = min(st[k.MIN_Y], st2[k.MIN_Y])
        st[k.MAX_Y] = max(st[k.MAX_Y], st2[k.MAX_Y])
        st[k.N_TOTAL] += st2[k.N_TOTAL]
    return h + pos2, n + n2


def _decode_words(data, fmt: str, source: str, allow_truncated: bool) -> DecodedRecords:
    from sdt3_event.events import _kernels

    limit = SMALL_FILE_BYTES + 2
    head = data if isinstance(data, bytes) and len(data) <= limit else bytes(data[:limit])
    layout = raw_layout(head, fmt, source)
    body = memoryview(data)[layout.start :]
    words = None
    try:
        n_words = len(body) // layout.word_bytes
        truncated = check_truncation(
            len(body) % layout.word_bytes,
            source,
            f"{layout.word_bytes * 8}-bit word",
            allow_truncated,
        )
        words = layout.words(body, n_words)
        st = _kernels.new_state()
        kernel = _kernel(fmt)
        # Capacity: one event per word at most, except EVT 3.0 vectors. Starting at one per word
        # saves a counting pass; when vectors fill it, the kernel stops (it is resumable) and the
        # output grows by the exact count of the words left. Untouched pages cost no memory.
        out = np.empty(n_words, EVENT_DTYPE)
        if fmt == "dat" and n_words >= _SPLIT_RECORDS and (os.cpu_count() or 1) > 1:
            pos, n = _dat_two_halves(words, st, out)
        else:
            pos, n = kernel(words, 0, st, out, 0)
        if fmt == "evt3" and pos < n_words and not st[_kernels.ERR]:
            grown = np.empty(n + _kernels.evt3_capacity(words[pos:]), EVENT_DTYPE)
            grown.view(_V13)[:n] = out.view(_V13)[:n]
            out = grown
            pos, n = kernel(words, pos, st, out, n)
    finally:
        words = None
        body.release()  # no view may outlive the mapping
    _raise_kernel_error(st, layout, source, layout.start)
    assert pos == n_words, "the capacity is an upper bound"
    _log_skipped(st, fmt, source)
    return DecodedRecords(
        out[:n], st, layout.sensor_size, ordered=layout.ordered, truncated_bytes=truncated
    )


def iter_raw(
    path, fmt: str, source: str, chunk_events: int, allow_truncated: bool
) -> Iterator[tuple[np.ndarray, np.ndarray, int, int, int]]:
    """Decode an EVT 2.0 / EVT 3.0 / DAT file block by block, in constant memory.

    Yields:
        ``(records, stats, first_event, floor, truncated_bytes)`` per block of at most
        ``max(chunk_events, 16)`` records: fresh arrays in file order (not yet validated), the kernel's
        statistics for exactly these records, the file index of the first one, the lowest
        timestamp any later event can have (-1 when unknown), and the bytes of an incomplete
        tail (only in the last chunk, only with ``allow_truncated``).

    Raises:
        EventFormatError: as :func:`decode_raw`, at the chunk where the problem lies.
    """
    from sdt3_event.events import _kernels as k

    kernel = _kernel(fmt)
    with open(path, "rb") as f:
        layout = raw_layout(f.read((1 << 20) + 2), fmt, source)
        wb = layout.word_bytes
        f.seek(layout.start)
        block = max(wb, min(chunk_events, 1 << 20) * wb)
        st = k.new_state()
        fresh = k.new_state()
        cap = max(chunk_events, 16)  # an EVT 3.0 vector word must fit whole: up to 12 events
        out = np.empty(cap, EVENT_DTYPE)
        n = 0
        first = 0
        pending = b""
        offset = layout.start  # file offset of pending[0]

        def emit():
            chunk_stats = st.copy()
            st[k.N_BACK : k.MAX_Y + 1] = fresh[k.N_BACK : k.MAX_Y + 1]
            return chunk_stats

        while True:
            raw = f.read(block)
            data = pending + raw if pending else raw
            n_words = len(data) // wb
            words = layout.words(data, n_words)
            pos = 0
            while pos < n_words:
                pos, n = kernel(words, pos, st, out, n)
                _raise_kernel_error(st, layout, source, offset)
                if pos < n_words:  # out is full
                    yield out[:n], emit(), first, int(st[k.TBASE]), 0
                    first += n
                    out = np.empty(cap, EVENT_DTYPE)
                    n = 0
            pending = data[n_words * wb :]
            offset += n_words * wb
            if not raw:
                break
        truncated = check_truncation(len(pending), source, f"{wb * 8}-bit word", allow_truncated)
        _log_skipped(st, fmt, source)
        if n or truncated:
            yield out[:n], emit(), first, -1, truncated


def _encodable(events: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t, x, y)`` as int64 for an encoder, after checking the 11-bit coordinates of EVT 2/3.

    Raises:
        EventFormatError: a coordinate outside 0..2047.
    """
    t, x, y = (events[f].astype(np.int64) for f in "txy")
    if len(events) and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 0x7FF):
        raise EventFormatError(f"{fmt} holds coordinates 0..2047 only")
    return t, x, y


def _raw_file_header(version: str, geometry: str | None) -> bytes:
    """The ``%`` header of a RAW file this project writes (``geometry``: the size line, if any)."""
    lines = [f"% evt {version}", "% integrator_name sdt3-event"]
    lines += [f"% {geometry}"] if geometry else []
    return ("\n".join([*lines, "% end"]) + "\n").encode()


def encode_evt2(events: np.ndarray, sensor_size: SensorSize | None = None) -> bytes:
    """Write events as a Prophesee RAW EVT 2.0 file (header + words).

    Args:
        events: ``EVENT_DTYPE`` events ``[N]``, sorted by ``t``, coordinates below 2048.
        sensor_size: written as ``% geometry WxH`` when given.

    Raises:
        EventFormatError: coordinates that do not fit in 11 bits, or timestamps beyond 34 bits.
    """
    t, x, y = _encodable(events, "EVT 2.0")
    if len(events) and (t.min() < 0 or t.max() >= (1 << 34)):
        raise EventFormatError("EVT 2.0 holds timestamps below 2**34 us only")
    geometry = (
        None if sensor_size is None else f"geometry {int(sensor_size[0])}x{int(sensor_size[1])}"
    )
    header = _raw_file_header("2.0", geometry)
    high = t >> 6
    new_high = np.ones(len(t), bool)
    new_high[1:] = high[1:] != high[:-1]
    n_th = int(np.count_nonzero(new_high))
    out = np.empty(len(t) + n_th, np.uint32)
    # every event's slot is shifted by the number of time-high words written before (and at) it
    slot = np.arange(len(t)) + np.cumsum(new_high)
    th_slot = slot[new_high] - 1
    out[th_slot] = (np.uint32(_EVT2_TIME_HIGH) << 28) | (high[new_high] & 0x0FFFFFFF).astype(
        np.uint32
    )
    out[slot] = (
        (events["p"].astype(np.uint32) << 28)
        | ((t & 0x3F).astype(np.uint32) << 22)
        | (x.astype(np.uint32) << 11)
        | y.astype(np.uint32)
    )
    return header + out.astype("<u4").tobytes()


# ------------------------------------------------------------------------------------- EVT 3.0
_E3_HIGH_LOOP = 1 << 12  # EVT_TIME_HIGH is 12 bits (timestamp bits 23-12)
_E3_TIME_HIGH, _E3_TIME_LOW, _E3_ADDR_Y, _E3_ADDR_X = 0x8, 0x6, 0x0, 0x2


def encode_evt3(events: np.ndarray, sensor_size: SensorSize | None = None) -> bytes:
    """Write events as a Prophesee RAW EVT 3.0 file (one ``EVT_ADDR_X`` word per event).

    ``EVT_TIME_HIGH`` words are written from 0 up to the first event and across long gaps in
    steps of at most 2047, so the decoder's 24-bit loop detection recovers absolute timestamps.

    Args:
        events: ``EVENT_DTYPE`` events ``[N]``, sorted by ``t``, coordinates below 2048.
        sensor_size: written as ``% format EVT3;height=H;width=W`` when given.

    Raises:
        EventFormatError: coordinates that do not fit in 11 bits.
    """
    t, x, y = _encodable(events, "EVT 3.0")
    geometry = None
    if sensor_size is not None:
        geometry = f"format EVT3;height={int(sensor_size[1])};width={int(sensor_size[0])}"
    header = _raw_file_header("3.0", geometry)
    n = len(t)
    if n == 0:
        return header
    high = t >> 12
    prev_high = np.concatenate([[-1], high[:-1]])
    step = _E3_HIGH_LOOP // 2 - 1  # 2047: always below the loop threshold
    n_th = np.where(high != prev_high, -(-(high - np.maximum(prev_high, 0)) // step), 0)
    n_th[0] = max(1, -(-int(high[0]) // step))
    new_low = np.ones(n, bool)
    new_low[1:] = (t[1:] != t[:-1]) | (n_th[1:] > 0)
    new_y = np.ones(n, bool)
    new_y[1:] = y[1:] != y[:-1]
    size = n_th + new_low + new_y + 1
    base = np.cumsum(size) - size
    out = np.empty(int(size.sum()), np.uint16)
    # time-high words: from the previous high (or 0) up to this event's high in <= 2047 steps
    total_th = int(n_th.sum())
    owner = np.repeat(np.arange(n), n_th)
    within = np.arange(total_th) - np.repeat(np.cumsum(n_th) - n_th, n_th)
    start_high = np.maximum(prev_high, 0)[owner]
    value = np.minimum(start_high + (within + 1) * step, high[owner])
    out[base[owner] + within] = (_E3_TIME_HIGH << 12) | (value & 0x0FFF)
    pos = base + n_th
    low_ev = np.flatnonzero(new_low)
    out[pos[low_ev]] = (_E3_TIME_LOW << 12) | (t[low_ev] & 0x0FFF)
    pos = pos + new_low
    y_ev = np.flatnonzero(new_y)
    out[pos[y_ev]] = (_E3_ADDR_Y << 12) | y[y_ev]
    pos = pos + new_y
    out[pos] = (_E3_ADDR_X << 12) | (events["p"].astype(np.int64) << 11) | x
    return header + out.astype("<u2").tobytes()


def encode_dat(events: np.ndarray, sensor_size: SensorSize | None = None) -> bytes:
    """Write events as a Prophesee DAT (version 2, CD type 12) file.

    Raises:
        EventFormatError: coordinates beyond 14 bits or timestamps beyond 32 bits.
    """
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if len(events) and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 0x3FFF):
        raise EventFormatError("DAT holds coordinates 0..16383 only")
    if len(events) and (t.min() < 0 or t.max() > 0xFFFFFFFF):
        raise EventFormatError("DAT holds 32-bit microsecond timestamps only")
    lines = ["% Data file containing EventCD events.", "% Version 2"]
    if sensor_size is not None:
        lines += [f"% Width {int(sensor_size[0])}", f"% Height {int(sensor_size[1])}"]
    header = ("\n".join(lines) + "\n").encode() + bytes([12, 8])
    rec = np.empty(len(events), _DAT_RECORD)
    rec["t"] = t
    rec["data"] = (events["p"].astype(np.int64) << 28) | (y << 14) | x
    return header + rec.tobytes()
