"""Shared machinery of the event readers: decoded columns -> one validated ``EVENT_DTYPE`` array.

Every private reader module decodes its format into a :class:`DecodedEvents` (raw columns in
whatever integer width the format uses, plus what the file says about itself); :func:`assemble`
then checks the ranges *before* narrowing to the schema's widths (so nothing wraps silently),
sorts where the format allows out-of-order events, and validates with
:func:`~sdt3_event.events.schema.validate_events`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, SensorSize, validate_events

logger = logging.getLogger(__name__)

_INT16_MAX = np.iinfo(np.int16).max
_V13 = np.dtype("V13")  # one packed EVENT_DTYPE record as an opaque item
assert EVENT_DTYPE.itemsize == _V13.itemsize


@dataclass
class DecodedEvents:
    """Columns decoded from one file, before validation.

    Attributes:
        t: timestamps in microseconds, any integer dtype, ``[N]``.
        x: column, any integer dtype, ``[N]``.
        y: row, any integer dtype, ``[N]``.
        p: polarity, bool or 0/1 integers, ``[N]``.
        sensor_size: ``(W, H, P)`` when the file (or its format) states it, else ``None``.
        ordered: the format guarantees non-decreasing timestamps (so a decrease is an error); when
            ``False`` the events are sorted stably by ``t``.
        truncated_bytes: bytes of an incomplete trailing record/packet that were left out (only
            non-zero when the caller allowed truncation).
    """

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    sensor_size: SensorSize | None = None
    ordered: bool = True
    truncated_bytes: int = 0


@dataclass
class DecodedRecords:
    """Events a compiled kernel already wrote as ``EVENT_DTYPE`` records, before validation.

    Attributes:
        events: ``[N]`` records, in file order.
        stats: the kernel state (see :mod:`sdt3_event.events._kernels`): timestamp decreases and
            coordinate bounds, gathered while writing, so validation never re-reads the events.
        sensor_size: ``(W, H, P)`` when the file states it, else ``None``.
        ordered: as in :class:`DecodedEvents`.
        truncated_bytes: as in :class:`DecodedEvents`.
    """

    events: np.ndarray
    stats: np.ndarray
    sensor_size: SensorSize | None = None
    ordered: bool = True
    truncated_bytes: int = 0


@dataclass(frozen=True)
class AssembledEvents:
    """The result of :func:`assemble`: validated events and what happened on the way."""

    events: np.ndarray
    n_dropped: int
    n_reordered: int


def take(events: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``events[index]`` (an index or mask array), copied as whole 13-byte items: numpy copies
    packed structured records field by field, many times slower."""
    return events.view(_V13)[index].view(EVENT_DTYPE)


def concat(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate`` of ``EVENT_DTYPE`` arrays, copied as whole 13-byte items."""
    return np.concatenate([p.view(_V13) for p in parts]).view(EVENT_DTYPE)


def _log_dropped(source: str, n_dropped: int, sensor_size: SensorSize | None) -> None:
    if n_dropped:
        w, h = int(sensor_size[0]), int(sensor_size[1])
        logger.warning("%s: dropped %d events outside the %dx%d sensor", source, n_dropped, w, h)


def check_truncation(n_extra: int, source: str, what: str, allow_truncated: bool) -> int:
    """Raise for an incomplete trailing record unless the caller allowed truncation.

    Args:
        n_extra: bytes after the last complete record/packet.
        source: the file, for the message.
        what: what the incomplete piece is ("8-byte record", "packet").
        allow_truncated: return ``n_extra`` (to be counted) instead of raising.

    Returns:
        ``n_extra`` (``0`` when the file is complete).

    Raises:
        EventFormatError: ``n_extra > 0`` and truncation is not allowed.
    """
    if n_extra and not allow_truncated:
        raise EventFormatError(
            f"{source}: truncated file: the last {what} is incomplete ({n_extra} stray bytes at "
            "the end); re-copy the file, or pass allow_truncated=True to read the complete part"
        )
    return int(n_extra)


def assemble(
    decoded: DecodedEvents | DecodedRecords,
    *,
    source: str,
    sensor_size: SensorSize | None,
    drop_out_of_range: bool = False,
) -> AssembledEvents:
    """Turn decoded columns into a validated, time-sorted ``EVENT_DTYPE`` array.

    Args:
        decoded: the reader's columns.
        source: the file, named in every error message.
        sensor_size: ``(W, H, P)`` to check the coordinates against, or ``None`` (then only
            non-negativity and the int16 range are checked).
        drop_out_of_range: drop (and count) events outside the sensor instead of raising.

    Returns:
        The events, the number dropped as out of range and the number that were out of time order
        (only non-zero for formats that allow it).

    Shape:
        columns ``[N]`` -> events ``[N - n_dropped]``.

    Raises:
        EventFormatError: unequal column lengths, timestamps that overflow int64 or are negative or
            (for ordered formats) go backwards, coordinates outside the sensor (unless dropped) or
            outside the int16 range.
    """
    if isinstance(decoded, DecodedRecords):
        return assemble_records(
            decoded.events,
            decoded.stats,
            source=source,
            sensor_size=sensor_size,
            ordered=decoded.ordered,
            drop_out_of_range=drop_out_of_range,
        )
    t, x, y, p = decoded.t, decoded.x, decoded.y, decoded.p
    n = len(t)
    if not (len(x) == len(y) == len(p) == n):
        raise EventFormatError(
            f"{source}: t, x, y, p have different lengths ({n}, {len(x)}, {len(y)}, {len(p)})"
        )
    if t.dtype == np.uint64:
        # viewed as int64, a value above the int64 range turns negative: one reduction, no copy
        t = t.view(np.int64)
        if n and int(t.min()) < 0:
            raise EventFormatError(
                f"{source}: timestamp {int(t.view(np.uint64).max())} us overflows int64; the file "
                "is corrupt"
            )
    t = t.astype(np.int64, copy=False)

    # Coordinates: four reductions on the raw (wide) columns decide; the per-event mask is only
    # built when something lies outside, so nothing is narrowed to int16 before it is checked.
    n_dropped = 0
    if n:
        w, h = (
            (int(sensor_size[0]), int(sensor_size[1]))
            if sensor_size is not None
            else (_INT16_MAX + 1, _INT16_MAX + 1)
        )
        if int(x.min()) < 0 or int(y.min()) < 0 or int(x.max()) >= w or int(y.max()) >= h:
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            n_out = n - int(np.count_nonzero(inside))
            if not (drop_out_of_range and sensor_size is not None):
                j = int(np.argmin(inside))
                where = f"the {w}x{h} sensor" if sensor_size is not None else "the int16 range"
                raise EventFormatError(
                    f"{source}: {n_out} events lie outside {where} (first at event {j}: "
                    f"x={int(x[j])}, y={int(y[j])}); pass the right sensor_size, or "
                    "drop_out_of_range=True to drop and count them"
                )
            t, x, y, p = t[inside], x[inside], y[inside], p[inside]
            n_dropped = n_out
            n = len(t)

    # Time order, checked on the contiguous int64 column (cheaper than on the record view).
    n_reordered = 0
    order = None
    if n > 1:
        backwards = t[1:] < t[:-1]
        if backwards.any():
            if decoded.ordered:
                i = int(np.argmax(backwards))
                raise EventFormatError(
                    f"{source}: timestamps go backwards at event {i + 1} ({int(t[i])} -> "
                    f"{int(t[i + 1])} us; {int(np.count_nonzero(backwards))} such places); the "
                    "file is corrupt or was written unsorted"
                )
            n_reordered = int(np.count_nonzero(backwards))
            order = np.argsort(t, kind="stable")
            logger.debug("%s: sorted %d out-of-order events by time", source, n_reordered)
    if n and int(t.min() if order is not None else t[0]) < 0:
        raise EventFormatError(
            f"{source}: negative timestamp {int(t.min())} us; the file is corrupt or its time "
            "base is not microseconds since a start"
        )

    events = np.empty(n, dtype=EVENT_DTYPE)
    if order is None:
        events["t"] = t
        events["x"] = x
        events["y"] = y
        events["p"] = p if p.dtype == np.bool_ else p != 0
    else:
        events["t"] = t[order]
        events["x"] = x[order]
        events["y"] = y[order]
        events["p"] = p[order] if p.dtype == np.bool_ else p[order] != 0

    # The schema's own validation (dtype, shape, sign). Coordinates and order were checked above,
    # once, on the wide contiguous columns (before narrowing to int16), so they are not repeated.
    events, _ = validate_events(events, None, source=source, require_sorted=False)
    _log_dropped(source, n_dropped, sensor_size)
    return AssembledEvents(events=events, n_dropped=n_dropped, n_reordered=n_reordered)


def split_header(data: bytes | memoryview, marker: bytes, *, end_line: bytes | None = None) -> int:
    """Length of a text header made of lines that start with ``marker``.

    Args:
        data: the file's bytes.
        marker: the first byte(s) of every header line (``b"%"``, ``b"#"``).
        end_line: a line that closes the header (e.g. ``b"% end"``); the header stops after it.

    Returns:
        The offset of the first byte after the header.
    """
    buf = bytes(data[: 1 << 20]) if len(data) > (1 << 20) else bytes(data)
    pos = 0
    while buf.startswith(marker, pos):
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return len(buf) if len(buf) == len(data) else pos
        line = buf[pos:nl].rstrip(b"\r")
        pos = nl + 1
        if end_line is not None and line.strip() == end_line:
            break
    return pos


def header_lines(data: bytes | memoryview, end: int) -> list[str]:
    """The header ``data[:end]`` as text lines (undecodable bytes replaced)."""
    return bytes(data[:end]).decode("utf-8", errors="replace").splitlines()


def assemble_records(
    events: np.ndarray,
    stats: np.ndarray,
    *,
    source: str,
    sensor_size: SensorSize | None,
    ordered: bool,
    drop_out_of_range: bool = False,
    first_event: int = 0,
    prev_t: int | None = None,
) -> AssembledEvents:
    """:func:`assemble` for records written by a compiled kernel, using the kernel's statistics.

    Args:
        events: ``[N]`` ``EVENT_DTYPE`` records in file order (sorted here in place of a copy
            when the format allows disorder).
        stats: the kernel state after writing exactly these events (bounds, decreases).
        first_event: the index of ``events[0]`` in the file (for messages of chunked reads).
        prev_t: the last timestamp of the previous chunk (ordered formats may not go below it).

    Raises:
        EventFormatError: as :func:`assemble`.
    """
    from sdt3_event.events import _kernels as k

    n = len(events)
    n_dropped = 0
    n_back = int(stats[k.N_BACK]) if n > 1 else 0
    if n:
        w, h = (
            (int(sensor_size[0]), int(sensor_size[1]))
            if sensor_size is not None
            else (_INT16_MAX + 1, _INT16_MAX + 1)
        )
        lo_x, hi_x, lo_y, hi_y = (int(stats[i]) for i in (k.MIN_X, k.MAX_X, k.MIN_Y, k.MAX_Y))
        if lo_x < 0 or lo_y < 0 or hi_x >= w or hi_y >= h:
            x, y = events["x"], events["y"]
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            n_out = n - int(np.count_nonzero(inside))
            where = f"the {w}x{h} sensor" if sensor_size is not None else "the int16 range"
            if max(hi_x, hi_y) > _INT16_MAX:  # beyond what int16 records hold: not droppable
                raise EventFormatError(
                    f"{source}: an event lies outside {where} (x up to {hi_x}, y up to {hi_y}); "
                    "the file is corrupt"
                )
            if not (drop_out_of_range and sensor_size is not None):
                j = int(np.argmin(inside))
                raise EventFormatError(
                    f"{source}: {n_out} events lie outside {where} (first at event "
                    f"{first_event + j}: x={int(x[j])}, y={int(y[j])}); pass the right "
                    "sensor_size, or drop_out_of_range=True to drop and count them"
                )
            events = take(events, inside)
            n_dropped = n_out
            n = len(events)
            if n_back:  # the decreases may have been among the dropped events: count again
                t = events["t"]
                n_back = int(np.count_nonzero(t[1:] < t[:-1]))
    n_reordered = 0
    if ordered and n and prev_t is not None and int(events["t"][0]) < prev_t:
        raise EventFormatError(
            f"{source}: timestamps go backwards at event {first_event} ({prev_t} -> "
            f"{int(events['t'][0])} us); the file is corrupt or was written unsorted"
        )
    if n > 1 and n_back:
        t = events["t"]
        if ordered:
            at = int(np.argmax(t[1:] < t[:-1]))
            raise EventFormatError(
                f"{source}: timestamps go backwards at event {first_event + at + 1} "
                f"({int(t[at])} -> {int(t[at + 1])} us; {n_back} such places); the file is "
                "corrupt or was written unsorted"
            )
        n_reordered = n_back
        events = take(events, np.argsort(t, kind="stable"))
        logger.debug("%s: sorted %d out-of-order events by time", source, n_reordered)
    if n and int(events["t"][0]) < 0:  # sorted: the first is the smallest
        raise EventFormatError(
            f"{source}: negative timestamp {int(events['t'][0])} us; the file is corrupt or its "
            "time base is not microseconds since a start"
        )
    _log_dropped(source, n_dropped, sensor_size)
    return AssembledEvents(events=events, n_dropped=n_dropped, n_reordered=n_reordered)
