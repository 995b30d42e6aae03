"""Prophesee readers: RAW EVT 2.0, RAW EVT 3.0 and DAT, vectorised numpy.

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
    16-bit stateful words; see :func:`decode_evt3`.

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
import re

import numpy as np

from sdt3_event.events._assemble import DecodedEvents, check_truncation, header_lines, split_header
from sdt3_event.events.schema import EventFormatError, SensorSize

logger = logging.getLogger(__name__)

_EVT2_CD_OFF, _EVT2_CD_ON, _EVT2_TIME_HIGH = 0, 1, 8
_EVT2_TH_PERIOD = 1 << 28
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


def header_geometry(lines: list[str]) -> SensorSize | None:
    """``(W, H, 2)`` from ``% geometry WxH``, ``% format ...;height=H;width=W`` or
    ``% Width``/``% Height`` header lines, else ``None``."""
    width = height = None
    for line in lines:
        text = line.lstrip("%").strip()
        low = text.lower()
        m = re.match(r"geometry\s+(\d+)\s*x\s*(\d+)", low)
        if m:
            return (int(m.group(1)), int(m.group(2)), 2)
        if low.startswith("format "):
            fields = dict(kv.split("=", 1) for kv in low.split(None, 1)[1].split(";") if "=" in kv)
            if "width" in fields and "height" in fields:
                try:
                    return (int(fields["width"]), int(fields["height"]), 2)
                except ValueError:
                    return None
        m = re.match(r"(width|height)\s+(\d+)$", low)
        if m:
            if m.group(1) == "width":
                width = int(m.group(2))
            else:
                height = int(m.group(2))
    if width and height:
        return (width, height, 2)
    return None


# ------------------------------------------------------------------------------------- EVT 2.0
def decode_evt2(data: bytes, source: str, allow_truncated: bool) -> DecodedEvents:
    """Decode a Prophesee RAW EVT 2.0 file.

    Shape:
        file bytes -> columns ``[N]``.

    Raises:
        EventFormatError: a reserved word type, a time base that goes backwards (other than the
            28-bit wrap), or an incomplete last word (unless ``allow_truncated``).
    """
    start, lines = raw_header(data)
    enc = raw_encoding(lines)
    if enc not in (None, "evt2"):
        raise EventFormatError(f"{source}: the RAW header says {enc}, not EVT 2.0")
    n_extra = (len(data) - start) % 4
    truncated = check_truncation(n_extra, source, "32-bit word", allow_truncated)
    words = np.frombuffer(data, "<u4", count=(len(data) - start) // 4, offset=start)
    kind = (words >> 28).astype(np.uint8)
    # reserved types: 2-7, 9, 11-13 (known: 0, 1 CD; 8 time high; 10 trigger; 14, 15)
    bad = ((kind >= 2) & (kind <= 7)) | (kind == 9) | ((kind >= 11) & (kind <= 13))
    if bad.any():
        j = int(np.argmax(bad))
        raise EventFormatError(
            f"{source}: corrupt EVT 2.0 stream: word {j} (byte {start + 4 * j}) has the reserved "
            f"type {int(kind[j])}"
        )
    is_th = kind == _EVT2_TIME_HIGH
    th = (words[is_th] & 0x0FFFFFFF).astype(np.int64)
    if len(th) > 1:
        step = np.diff(th)
        back = step < 0
        if back.any():
            wrap = back & (step < -(_EVT2_TH_PERIOD // 2))
            if (back & ~wrap).any():
                k = int(np.argmax(back & ~wrap))
                raise EventFormatError(
                    f"{source}: corrupt EVT 2.0 stream: the time base goes backwards "
                    f"({int(th[k]) << 6} -> {int(th[k + 1]) << 6} us at time-high word {k + 1})"
                )
            th[1:] += np.cumsum(wrap) * _EVT2_TH_PERIOD
    th <<= 6
    cd_pos = np.flatnonzero(kind <= _EVT2_CD_ON)
    # the latest EVT_TIME_HIGH before every CD word (-1 = none yet)
    cd_th = np.cumsum(is_th, dtype=np.int32)[cd_pos]
    cd_th -= 1
    cd = words[cd_pos]
    if len(cd_th) and cd_th[0] < 0:
        n_orphan = int(np.searchsorted(cd_th, 0))
        logger.warning(
            "%s: dropped %d CD events that precede the first EVT_TIME_HIGH (no time base)",
            source,
            n_orphan,
        )
        cd, cd_th = cd[n_orphan:], cd_th[n_orphan:]
    t = th[cd_th]
    tmp = cd >> 22
    tmp &= 0x3F
    t |= tmp
    np.right_shift(cd, 11, out=tmp)
    tmp &= 0x7FF
    x = tmp.astype(np.uint16)
    np.bitwise_and(cd, 0x7FF, out=tmp)
    y = tmp.astype(np.uint16)
    p = cd >= (1 << 28)  # CD_ON (type 1); CD_OFF words are below
    return DecodedEvents(
        t, x, y, p, sensor_size=header_geometry(lines), ordered=False, truncated_bytes=truncated
    )


def encode_evt2(events: np.ndarray, sensor_size: SensorSize | None = None) -> bytes:
    """Write events as a Prophesee RAW EVT 2.0 file (header + words).

    Args:
        events: ``EVENT_DTYPE`` events ``[N]``, sorted by ``t``, coordinates below 2048.
        sensor_size: written as ``% geometry WxH`` when given.

    Raises:
        EventFormatError: coordinates that do not fit in 11 bits, or timestamps beyond 34 bits.
    """
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if len(events) and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 0x7FF):
        raise EventFormatError("EVT 2.0 holds coordinates 0..2047 only")
    if len(events) and (t.min() < 0 or t.max() >= (1 << 34)):
        raise EventFormatError("EVT 2.0 holds timestamps below 2**34 us only")
    lines = ["% evt 2.0", "% integrator_name sdt3-event"]
    if sensor_size is not None:
        lines.append(f"% geometry {int(sensor_size[0])}x{int(sensor_size[1])}")
    lines.append("% end")
    header = ("\n".join(lines) + "\n").encode()
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
_E3_ADDR_Y, _E3_ADDR_Y_EM, _E3_ADDR_X, _E3_VECT_BASE_X = 0x0, 0x1, 0x2, 0x3
_E3_VECT_12, _E3_VECT_8, _E3_TIME_LOW, _E3_TIME_HIGH = 0x4, 0x5, 0x6, 0x8
_E3_HIGH_LOOP = 1 << 12  # EVT_TIME_HIGH is 12 bits (timestamp bits 23-12)
_BIT_INDEX = np.arange(12, dtype=np.uint16)


def _last_index(mask: np.ndarray) -> np.ndarray:
    """For every position, the index of the latest ``True`` at or before it (-1: none yet)."""
    out = np.where(mask, np.arange(len(mask), dtype=np.int32), np.int32(-1))
    np.maximum.accumulate(out, out=out)
    return out


def decode_evt3(data: bytes, source: str, allow_truncated: bool) -> DecodedEvents:
    """Decode a Prophesee RAW EVT 3.0 file (vectorised: every decoder state is a running
    "latest word of type k" index).

    EVT 3.0 facts (Prophesee's format page and the OpenEB decoder's behaviour): 16-bit words,
    type in bits 15-12, content in bits 11-0. ``EVT_ADDR_Y`` (0) sets y (bits 10-0) and marks the
    following events as CD (type 1 marks them as EM events, which are skipped); ``EVT_ADDR_X``
    (2) is one event at x (bits 10-0) with polarity bit 11; ``VECT_BASE_X`` (3) sets a base x and
    polarity; ``VECT_12`` (4) / ``VECT_8`` (5) hold 12 / 8 validity bits for x = base + bit, after
    which the base advances by 12 / 8; ``EVT_TIME_LOW`` (6) sets timestamp bits 11-0;
    ``EVT_TIME_HIGH`` (8) sets bits 23-12 (and zeroes the low bits when the high part changes);
    a high part that drops by 2048 or more is the 24-bit time loop (2**24 us). Words before the
    first ``EVT_TIME_HIGH`` carry no time base and are skipped; types 7, 10, 13-15 (continued
    data, triggers, IMU, system events) carry no CD events.

    Shape:
        file bytes -> columns ``[N]``.

    Raises:
        EventFormatError: the header names another encoding, a reserved word type, a time base
            that goes backwards (other than the loop), or an incomplete last 16-bit word (unless
            ``allow_truncated``).
    """
    start, lines = raw_header(data)
    enc = raw_encoding(lines)
    if enc not in (None, "evt3"):
        raise EventFormatError(f"{source}: the RAW header says {enc}, not EVT 3.0")
    n_extra = (len(data) - start) % 2
    truncated = check_truncation(n_extra, source, "16-bit word", allow_truncated)
    words = np.frombuffer(data, "<u2", count=(len(data) - start) // 2, offset=start)
    sensor = header_geometry(lines)
    kind = (words >> 12).astype(np.uint8)
    bad = (kind == 0x9) | (kind == 0xB) | (kind == 0xC)  # reserved types
    if bad.any():
        j = int(np.argmax(bad))
        raise EventFormatError(
            f"{source}: corrupt EVT 3.0 stream: word {j} (byte {start + 2 * j}) has the reserved "
            f"type {int(kind[j])}"
        )
    is_th = kind == _E3_TIME_HIGH
    empty = DecodedEvents(
        np.zeros(0, np.int64),
        np.zeros(0, np.uint16),
        np.zeros(0, np.uint16),
        np.zeros(0, bool),
        sensor_size=sensor,
        ordered=False,
        truncated_bytes=truncated,
    )
    if not is_th.any():
        return empty
    first = int(np.argmax(is_th))
    if first:
        logger.debug("%s: skipped %d EVT 3.0 words before the first time base", source, first)
        words, kind, is_th = words[first:], kind[first:], is_th[first:]

    # --- time base: EVT_TIME_HIGH with its 24-bit loop
    th_pos = np.flatnonzero(is_th)
    high = (words[th_pos] & 0x0FFF).astype(np.int64)
    prev = np.concatenate([high[:1], high[:-1]])
    loop = prev >= high + (_E3_HIGH_LOOP // 2)
    back = (high < prev) & ~loop
    if back.any():
        k = int(np.argmax(back))
        raise EventFormatError(
            f"{source}: corrupt EVT 3.0 stream: the time base goes backwards "
            f"({int(prev[k]) << 12} -> {int(high[k]) << 12} us at time-high word {k})"
        )
    high_full = (np.cumsum(loop) * _E3_HIGH_LOOP + high) << 12
    changed = high != prev
    changed[0] = True
    # for every time-high word, the position of the latest one that changed the high part
    last_change_of_th = th_pos[_last_index(changed)]

    # --- decoder state, evaluated only at the words that carry events ("the latest word of
    # type k before position i" = positions_k[count of type-k words up to i - 1])
    is_vec = (kind == _E3_VECT_12) | (kind == _E3_VECT_8)
    has_vec = bool(is_vec.any())
    ev_mask = (kind == _E3_ADDR_X) | is_vec if has_vec else kind == _E3_ADDR_X
    ev_pos = np.flatnonzero(ev_mask)
    is_row = kind <= _E3_ADDR_Y_EM  # EVT_ADDR_Y (CD rows) or the EM row type
    row_pos = np.flatnonzero(is_row)
    row_k = np.cumsum(is_row, dtype=np.int32)[ev_pos]
    keep = row_k > 0
    row = row_pos[np.maximum(row_k - 1, 0)]
    keep &= kind[row] == _E3_ADDR_Y
    if not keep.all():
        ev_pos, row = ev_pos[keep], row[keep]
    y_ev = words[row] & 0x7FF
    th_k = np.cumsum(is_th, dtype=np.int32)[ev_pos]
    th_k -= 1  # >= 0: the stream was trimmed to start at a time-high word
    t_ev = high_full[th_k]
    is_low = kind == _E3_TIME_LOW
    low_pos = np.flatnonzero(is_low)
    low_k = np.cumsum(is_low, dtype=np.int32)[ev_pos]
    last_low = np.where(low_k > 0, low_pos[np.maximum(low_k - 1, 0)], -1)
    t_ev += np.where(last_low > last_change_of_th[th_k], words[np.maximum(last_low, 0)] & 0x0FFF, 0)
    content = words[ev_pos]

    if not has_vec:  # the common case on sparse scenes: single events only
        return DecodedEvents(
            t_ev,
            content & 0x7FF,
            y_ev,
            ((content >> 11) & 1).astype(np.bool_),
            sensor_size=sensor,
            ordered=False,
            truncated_bytes=truncated,
        )

    # --- vectors: x = base + bits consumed since VECT_BASE_X + bit index
    ev_kind = kind[ev_pos]
    single = ev_kind == _E3_ADDR_X
    base_idx = _last_index(kind == _E3_VECT_BASE_X)
    width = np.zeros(len(words), np.int32)
    width[kind == _E3_VECT_12] = 12
    width[kind == _E3_VECT_8] = 8
    consumed = np.cumsum(width, dtype=np.int64)
    vec_sel = np.flatnonzero(~single)
    vpos = ev_pos[vec_sel]
    vbase = base_idx[vpos]
    has_base = vbase >= 0
    vec_sel, vpos, vbase = vec_sel[has_base], vpos[has_base], vbase[has_base]
    base_word = words[vbase]
    offset = consumed[vpos] - width[vpos] - consumed[vbase]
    mask = content[vec_sel] & np.where(kind[vpos] == _E3_VECT_12, 0xFFF, 0xFF).astype(np.uint16)
    bits = ((mask[:, None] >> _BIT_INDEX) & 1).astype(bool)  # [n_vec, 12]

    # merge single and vector events in stream order
    count = single.astype(np.int64)
    count[vec_sel] = bits.sum(axis=1)
    first_slot = np.cumsum(count) - count
    n = int(count.sum())
    t = np.empty(n, np.int64)
    x = np.empty(n, np.int64)
    y = np.empty(n, np.int64)
    p = np.empty(n, bool)
    s_sel = np.flatnonzero(single)
    slot = first_slot[s_sel]
    t[slot], y[slot] = t_ev[s_sel], y_ev[s_sel]
    x[slot] = content[s_sel] & 0x7FF
    p[slot] = (content[s_sel] >> 11) & 1 == 1
    rows, cols = np.nonzero(bits)
    rank = (np.cumsum(bits, axis=1) - 1)[rows, cols]
    sel = vec_sel[rows]
    slot = first_slot[sel] + rank
    t[slot], y[slot] = t_ev[sel], y_ev[sel]
    x[slot] = (base_word[rows] & 0x7FF).astype(np.int64) + offset[rows] + cols
    p[slot] = (base_word[rows] >> 11) & 1 == 1
    return DecodedEvents(t, x, y, p, sensor_size=sensor, ordered=False, truncated_bytes=truncated)


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
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if len(events) and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 0x7FF):
        raise EventFormatError("EVT 3.0 holds coordinates 0..2047 only")
    lines = ["% evt 3.0", "% integrator_name sdt3-event"]
    if sensor_size is not None:
        lines.append(f"% format EVT3;height={int(sensor_size[1])};width={int(sensor_size[0])}")
    lines.append("% end")
    header = ("\n".join(lines) + "\n").encode()
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


# ------------------------------------------------------------------------------------------ DAT
def decode_dat(data: bytes, source: str, allow_truncated: bool) -> DecodedEvents:
    """Decode a Prophesee DAT file (CD / Event2d records).

    Shape:
        file bytes -> columns ``[N]``.

    Raises:
        EventFormatError: a missing header, an event type/size this reader does not know, a
            polarity other than 0/1, or an incomplete last record (unless ``allow_truncated``).
    """
    if not data.startswith(b"%"):
        raise EventFormatError(f"{source}: not a Prophesee DAT file (no '%' header)")
    start, lines = raw_header(data)
    version = 0
    for line in lines:
        m = re.match(r"%\s*version\s+(\d+)", line.strip().lower())
        if m:
            version = int(m.group(1))
    ev_size = 8
    if version >= 2:
        if len(data) - start < 2:
            raise EventFormatError(f"{source}: truncated DAT file: no event type/size bytes")
        ev_type, ev_size = data[start], data[start + 1]
        start += 2
        if ev_type not in _DAT_CD_TYPES or ev_size != 8:
            raise EventFormatError(
                f"{source}: DAT event type {ev_type} with {ev_size}-byte records is not a CD event "
                "file this reader knows (types 0 and 12, 8-byte records)"
            )
    n_extra = (len(data) - start) % ev_size
    truncated = check_truncation(n_extra, source, f"{ev_size}-byte record", allow_truncated)
    raw = np.frombuffer(data, _DAT_RECORD, count=(len(data) - start) // ev_size, offset=start)
    word = raw["data"]
    pol = word >> 28
    if len(pol) and int(pol.max()) > 1:
        j = int(np.argmax(pol > 1))
        raise EventFormatError(
            f"{source}: corrupt DAT record {j}: polarity field {int(pol[j])} (expected 0 or 1)"
        )
    return DecodedEvents(
        t=raw["t"],
        x=word & 0x3FFF,
        y=(word >> 14) & 0x3FFF,
        p=pol == 1,
        sensor_size=header_geometry(lines),
        ordered=True,
        truncated_bytes=truncated,
    )


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
