"""The one event schema of the project and its validation.

Every reader returns, and every transform takes, a 1-D numpy structured array of ``EVENT_DTYPE``:
``t`` (int64, microseconds), ``x`` and ``y`` (int16, pixels), ``p`` (bool, True = ON). The field names
match Tonic's, so the arrays go straight into ``tonic.transforms``.

Sensor sizes follow Tonic's convention ``(W, H, P)``.
"""

from __future__ import annotations

import bisect

import numpy as np

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])

SensorSize = tuple[int, int, int]


class EventFormatError(ValueError):
    """A file, packet or array that does not hold valid events. The message names the source."""


def empty_events(n: int = 0) -> np.ndarray:
    """A zero-initialised event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(t, x, y, p) -> np.ndarray:
    """Build an event array from four equal-length sequences.

    Raises:
        EventFormatError: when the lengths differ.
    """
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    n = len(t)
    if not (len(x) == len(y) == len(p) == n):
        raise EventFormatError(
            f"t, x, y, p must have equal lengths, got {n}, {len(x)}, {len(y)}, {len(p)}"
        )
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p.astype(bool) if p.dtype != bool else p
    return ev


def validate_events(
    events: np.ndarray,
    sensor_size: SensorSize | None = None,
    *,
    source: str = "events",
    drop_out_of_range: bool = False,
    require_sorted: bool = True,
) -> tuple[np.ndarray, int]:
    """Check an event array against the schema and (optionally) a sensor size.

    Args:
        events: a structured array of ``EVENT_DTYPE``.
        sensor_size: ``(W, H, P)``; coordinates must lie in ``[0, W) x [0, H)``.
        source: what to name in error messages (a file path, a socket address).
        drop_out_of_range: drop (and count) events outside the sensor instead of raising.
        require_sorted: timestamps must be non-decreasing.

    Returns:
        ``(events, n_dropped)``.

    Raises:
        EventFormatError: wrong dtype, negative or non-monotonic timestamps, or coordinates outside
            the sensor (unless ``drop_out_of_range``).
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        got = getattr(events, "dtype", type(events).__name__)
        raise EventFormatError(
            f"{source}: expected a 1-D array of dtype {EVENT_DTYPE}, got {got}; "
            "build one with sdt3_event.events.schema.make_events"
        )
    if len(events) == 0:
        return events, 0
    t = events["t"]
    if require_sorted and len(t) > 1:
        bad = np.flatnonzero(np.diff(t) < 0)
        if len(bad):
            i = int(bad[0])
            raise EventFormatError(
                f"{source}: timestamps go backwards at event {i + 1} ({int(t[i])} -> {int(t[i + 1])} "
                f"us; {len(bad)} such places); sort the events by t or fix the recording"
            )
    if int(t[0]) < 0:
        raise EventFormatError(f"{source}: negative timestamp {int(t.min())} us")
    n_dropped = 0
    if sensor_size is not None:
        w, h = int(sensor_size[0]), int(sensor_size[1])
        inside = (events["x"] >= 0) & (events["x"] < w) & (events["y"] >= 0) & (events["y"] < h)
        n_out = int(len(events) - np.count_nonzero(inside))
        if n_out:
            if not drop_out_of_range:
                j = int(np.flatnonzero(~inside)[0])
                raise EventFormatError(
                    f"{source}: {n_out} events lie outside the {w}x{h} sensor (first: x="
                    f"{int(events['x'][j])}, y={int(events['y'][j])}); pass the right sensor_size or "
                    "drop_out_of_range=True to drop and count them"
                )
            events = events[inside]
            n_dropped = n_out
    return events, n_dropped


def first_at(t: np.ndarray, value: int, lo: int = 0) -> int:
    """Index of the first of the time-sorted ``t[lo:]`` at or after ``value``.

    ``t`` is usually the ``t`` field of structured events, which is strided: ``np.searchsorted``
    would first copy the whole column, while a bisection reads only ``log2(len(t))`` elements.
    """
    return bisect.bisect_left(t, value, lo)
