"""Sliding windows over a live event stream.

Window ``k`` covers event times ``[start_k, start_k + window_us)`` with ``start_k = start_0 + k *
stride_us``; ``start_0`` is the first event's time floored to the stride grid. A window is emitted as
soon as an event at or after its end arrives (timestamps never decrease, so nothing can still fall
into it), or as soon as the source's *watermark* passes its end (:meth:`SlidingWindower.advance`:
the source promises that every event before that time has been delivered, so a paced replay closes
a window without waiting for the next event). Rules, all counted in :class:`WindowStats`:

- windows that would hold no event (a quiet stream, a jump in time) are skipped, never emitted;
- events older than the newest event already seen (a source that goes back in time) are dropped;
  a jump back by more than ``restart_gap_us`` (a camera or server that restarted its clock, a
  reconnection that replays from the start) starts the windows afresh instead (``restarts``; the
  open, incomplete windows are discarded);
- when the events buffered for the open window exceed ``max_window_events``, every window that
  overlaps them is dropped *whole* and the buffer is cleared: memory stays bounded at any input rate,
  and no window is ever emitted with events missing.

:class:`FrameWindower` makes the same windows but bins events into their frames as they arrive
(see there), for a predictor that only needs the frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sdt3_event.events.frames import _compiled
from sdt3_event.events.schema import EVENT_DTYPE, first_at


@dataclass(frozen=True)
class EventWindow:
    """One window of events.

    Attributes:
        index: the window's number on the grid (``start_us = start_0 + index * stride``).
        start_us / end_us: ``[start_us, end_us)`` in the source's timestamps.
        events: the events inside, time ordered; ``None`` when the window keeps them as
            ``parts`` (a windower made with ``join=False``): read them with :meth:`event_array`.
        arrival: ``time.perf_counter()`` when the window's last event arrived.
        frames: the binned frames, when a :class:`FrameWindower` made the window.
        event_count: the events binned into ``frames`` (or kept in ``parts``).
        first_stride_events: the events in the window's first stride, when known.
        parts: the events as consecutive read-only slices of the source's chunks, not joined:
            for a consumer that copies them anyway (device binning stages them straight into
            its pinned buffer).
    """

    index: int
    start_us: int
    end_us: int
    events: np.ndarray | None = field(repr=False)
    arrival: float
    frames: np.ndarray | None = field(default=None, repr=False)
    event_count: int | None = None
    first_stride_events: int | None = None
    parts: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    @property
    def n_events(self) -> int:
        if self.event_count is not None:
            return self.event_count
        return len(self.events) if self.events is not None else 0

    def event_array(self) -> np.ndarray:
        """The events as one array: ``events``, or ``parts`` joined into a new one."""
        if self.events is not None:
            return self.events
        if self.parts:
            return _join(list(self.parts))
        return np.zeros(0, EVENT_DTYPE)

    def event_parts(self) -> tuple[np.ndarray, ...]:
        """The events as consecutive arrays: ``parts``, or ``(events,)``."""
        if self.parts is not None:
            return self.parts
        return () if self.events is None else (self.events,)


@dataclass
class WindowStats:
    """Counters of a :class:`SlidingWindower`."""

    events_in: int = 0
    windows_out: int = 0
    windows_empty: int = 0
    windows_overflow: int = 0
    events_overflow: int = 0
    events_late: int = 0
    restarts: int = 0


class SlidingWindower:
    """Cut a stream of time-ordered event chunks into sliding windows.

    Args:
        window_us: window duration.
        stride_us: distance between window starts (default ``window_us``: tumbling windows);
            ``stride_us > window_us`` leaves gaps whose events belong to no window.
        max_window_events: bound on buffered events (see the module docstring); ``None`` = no bound.
        restart_gap_us: a jump back in time larger than this restarts the windowing (default
            ``max(window_us, 1 s)``).
        join: give each window its events as one new array (``events``); ``False`` keeps them
            as ``parts``, read-only views of the pushed chunks, so that a consumer that copies
            them anyway (device binning) saves the join. The pushed chunks must then not be
            modified afterwards.

    Raises:
        ValueError: non-positive durations or bound.
    """

    def __init__(
        self,
        window_us: int,
        stride_us: int | None = None,
        max_window_events: int | None = None,
        restart_gap_us: int | None = None,
        join: bool = True,
    ) -> None:
        stride_us = window_us if stride_us is None else stride_us
        if window_us <= 0 or stride_us <= 0:
            raise ValueError(f"window_us and stride_us must be > 0, got {window_us}, {stride_us}")
        if max_window_events is not None and max_window_events <= 0:
            raise ValueError("max_window_events must be > 0 or None")
        self.window_us = int(window_us)
        self.stride_us = int(stride_us)
        self.max_window_events = max_window_events
        self.restart_gap_us = int(restart_gap_us or max(self.window_us, 1_000_000))
        self.join = bool(join)
        self.stats = WindowStats()
        self._chunks: list[np.ndarray] = []
        self._arrivals: list[float] = []
        self._buffered = 0
        self._start: int | None = None
        self._index = 0
        self._last_t: int | None = None
        self._horizon: int | None = None  # every event with t < horizon has been pushed

    @property
    def buffered_events(self) -> int:
        """Events held for windows not yet emitted."""
        return self._buffered

    @property
    def next_start_us(self) -> int | None:
        return self._start

    def push(
        self, chunk: np.ndarray, arrival: float | None = None, *, ordered: bool | None = None
    ) -> list[EventWindow]:
        """Add a chunk; return the windows it completes, oldest first.

        Args:
            chunk: events of :data:`EVENT_DTYPE`; unsorted chunks are sorted, events older than the
                newest already seen are dropped (``stats.events_late``).
            arrival: when the chunk arrived (default: now, ``time.perf_counter()``).
            ordered: whether the chunk's times never decrease, when the caller knows it already
                (:func:`scan_chunk`); ``None``: checked here.
        """
        if chunk.dtype != EVENT_DTYPE:
            raise TypeError(f"expected events of dtype {EVENT_DTYPE}, got {chunk.dtype}")
        arrival = time.perf_counter() if arrival is None else arrival
        if len(chunk) == 0:
            return []
        self.stats.events_in += len(chunk)
        t = chunk["t"]
        if ordered is None:
            ordered = len(chunk) < 2 or _is_sorted(t)
        if not ordered:
            chunk = chunk[np.argsort(t, kind="stable")]
            t = chunk["t"]
        if self._last_t is not None and t[0] < self._last_t - self.restart_gap_us:
            self._restart()
        floor = self._floor()
        if floor is not None and t[0] < floor:
            keep = first_at(t, floor)
            self.stats.events_late += keep
            chunk = chunk[keep:]
            if len(chunk) == 0:
                return []
            t = chunk["t"]
        self._last_t = int(t[-1])
        if self._start is None:
            self._start = (int(t[0]) // self.stride_us) * self.stride_us
        self._store(chunk, arrival)
        out = self._emit_complete()
        if self.max_window_events is not None and self._buffered > self.max_window_events:
            self._overflow()
        return out

    def advance(self, watermark_us: int) -> list[EventWindow]:
        """The source promises that every event with ``t < watermark_us`` was pushed: emit the
        windows that end at or before it, oldest first."""
        if self._horizon is None or watermark_us > self._horizon:
            self._horizon = int(watermark_us)
        if self._start is None:
            return []
        out = self._emit_complete()
        if self.max_window_events is not None and self._buffered > self.max_window_events:
            self._overflow()
        return out

    def flush(self) -> list[EventWindow]:
        """End of stream: emit the first pending window if it holds events (it may be cut short
        by the end of the stream, never by dropped events); then forget the buffer."""
        out: list[EventWindow] = []
        if self._buffered:
            self._skip_empty()
            w = self._take(self._start + self.window_us)
            if w is not None:
                out.append(w)
        self._clear()
        return out

    # -- internals -------------------------------------------------------------------------------

    def _store(self, chunk: np.ndarray, arrival: float) -> None:
        """Keep a (sorted, not late) chunk for the open windows."""
        self._chunks.append(chunk)
        self._arrivals.append(arrival)
        self._buffered += len(chunk)

    def _emit_complete(self) -> list[EventWindow]:
        out = []
        while self._buffered:
            self._skip_empty()
            end = self._start + self.window_us
            if self._reach() < end:
                break
            w = self._take(end)
            if w is not None:
                out.append(w)
            self._advance()
        return out

    def _floor(self) -> int | None:
        """Events older than this are late."""
        if self._horizon is None:
            return self._last_t
        return self._horizon if self._last_t is None else max(self._last_t, self._horizon)

    def _reach(self) -> int:
        """Windows ending at or before this are complete."""
        return self._last_t if self._horizon is None else max(self._last_t, self._horizon)

    def _clear(self) -> None:
        """Forget every buffered event."""
        self._chunks, self._arrivals, self._buffered = [], [], 0

    def _first_buffered_t(self) -> int:
        return int(self._chunks[0]["t"][0])

    def _skip_empty(self) -> None:
        """Move the window start forward over windows that would hold no event."""
        t_first = self._first_buffered_t()
        if t_first >= self._start + self.window_us:
            k = (t_first - self.window_us - self._start) // self.stride_us + 1
            self._start += k * self.stride_us
            self._index += k
            self.stats.windows_empty += k

    def _take(self, end: int) -> EventWindow | None:
        start = self._start
        parts, last_arrival = [], None
        for chunk, arrival in zip(self._chunks, self._arrivals, strict=True):
            t = chunk["t"]
            if t[0] >= end:
                break
            a = first_at(t, start) if t[0] < start else 0
            b = first_at(t, end) if t[-1] >= end else len(chunk)
            if b > a:
                parts.append(chunk[a:b])
                last_arrival = arrival
        if not parts:
            return None
        self.stats.windows_out += 1
        if not self.join:
            views = []
            for part in parts:
                part = part.view()
                part.flags.writeable = False
                views.append(part)
            count = sum(len(part) for part in views)
            return EventWindow(
                self._index, start, end, None, last_arrival, event_count=count, parts=tuple(views)
            )
        return EventWindow(self._index, start, end, _join(parts), last_arrival)

    def _advance(self) -> None:
        self._start += self.stride_us
        self._index += 1
        self._trim(self._start)

    def _trim(self, t_min: int) -> None:
        """Forget buffered events older than ``t_min``."""
        while self._chunks and int(self._chunks[0]["t"][-1]) < t_min:
            self._buffered -= len(self._chunks.pop(0))
            self._arrivals.pop(0)
        if self._chunks and int(self._chunks[0]["t"][0]) < t_min:
            first = self._chunks[0]
            cut = first_at(first["t"], t_min)
            self._chunks[0] = first[cut:]
            self._buffered -= cut

    def _restart(self) -> None:
        """The stream's clock went back: forget the open windows and start a new grid."""
        self.stats.restarts += 1
        self._clear()
        self._start = None
        self._last_t = None
        self._horizon = None

    def _overflow(self) -> None:
        """Too many events for the open window(s): drop every window overlapping the buffer."""
        n_windows = (self._reach() - self._start) // self.stride_us + 1
        self.stats.windows_overflow += n_windows
        self.stats.events_overflow += self._buffered
        self._start += n_windows * self.stride_us
        self._index += n_windows
        self._clear()


class FrameWindower(SlidingWindower):
    """A :class:`SlidingWindower` that bins events as they arrive instead of keeping them.

    Same windows, same rules and counters; each emitted :class:`EventWindow` carries its frames
    ``(T, P, H, W)`` (``frames``) and its event count, and no events. Memory is a few frames
    whatever the event rate, the work is spread over the stream (a window's frames are ready
    when its last event arrives), and with overlapping windows each event is binned once: the
    time bins of all windows lie on one grid, which needs a stride of a whole number of bins
    (``stride_us * T % window_us == 0``).

    Args:
        window_us / stride_us / restart_gap_us: see :class:`SlidingWindower`.
        frame_shape: ``(T, P, H, W)`` of a window's frames.
        add_events: ``(events, t_start_us, t_end_us, out)`` adds the events of one time bin to its
            ``(1, P, H, W)`` float32 counts (:meth:`sdt3_event.events.transforms.FrameTransform.add_events`).

    Raises:
        ValueError: a stride that is not a whole number of time bins.
    """

    def __init__(
        self,
        window_us: int,
        stride_us: int | None,
        frame_shape: tuple[int, int, int, int],
        add_events,
        restart_gap_us: int | None = None,
    ) -> None:
        super().__init__(window_us, stride_us, None, restart_gap_us)
        n_bins = int(frame_shape[0])
        if (self.stride_us * n_bins) % self.window_us:
            raise ValueError(
                f"stride {self.stride_us} us is not a whole number of the {n_bins} time bins of a "
                f"{self.window_us} us window"
            )
        self.frame_shape = tuple(int(v) for v in frame_shape)
        self._bins_per_stride = self.stride_us * n_bins // self.window_us
        self._add_events = add_events
        self._origin: int | None = None
        # global bin -> [counts (1, P, H, W), events, last arrival, first event time]
        self._bins: dict[int, list] = {}

    def _edge(self, g: int) -> int:
        """Start of global time bin ``g``: ``origin + ceil(g * window / T)``."""
        n_bins = self.frame_shape[0]
        return self._origin + (g * self.window_us + n_bins - 1) // n_bins

    def _bin_of(self, t: int) -> int:
        return (t - self._origin) * self.frame_shape[0] // self.window_us

    def _store(self, chunk: np.ndarray, arrival: float) -> None:
        if self._origin is None:
            self._origin = self._start
        t = chunk["t"]
        m, n_bins = self._bins_per_stride, self.frame_shape[0]
        g0, g1 = self._bin_of(int(t[0])), self._bin_of(int(t[-1]))
        a = 0
        for g in range(g0, g1 + 1):
            hi = self._edge(g + 1)
            b = len(chunk) if g == g1 else first_at(t, hi, a)
            if b > a and g % m < n_bins:  # bins in the gaps between windows are never used
                slot = self._bins.get(g)
                if slot is None:
                    counts = np.zeros((1, *self.frame_shape[1:]), np.float32)  # (1, P, H, W)
                    slot = self._bins[g] = [counts, 0, arrival, int(t[a])]
                self._add_events(chunk[a:b], self._edge(g), hi, slot[0])
                slot[1] += b - a
                slot[2] = arrival
                self._buffered += b - a
            a = b

    def _first_buffered_t(self) -> int:
        return self._bins[min(self._bins)][3]

    def _take(self, end: int) -> EventWindow | None:
        g_first = self._bin_of(self._start)
        n_bins, m = self.frame_shape[0], self._bins_per_stride
        slots = [self._bins.get(g) for g in range(g_first, g_first + n_bins)]
        count = sum(s[1] for s in slots if s is not None)
        if count == 0:
            return None
        frames = np.zeros(self.frame_shape, np.float32)  # (T, P, H, W)
        for i, slot in enumerate(slots):
            if slot is not None:
                frames[i] = slot[0][0]
        first = sum(s[1] for s in slots[:m] if s is not None)
        arrival = max(s[2] for s in slots if s is not None)
        self.stats.windows_out += 1
        empty = np.zeros(0, EVENT_DTYPE)
        return EventWindow(self._index, self._start, end, empty, arrival, frames, count, first)

    def _trim(self, t_min: int) -> None:
        g_min = self._bin_of(t_min)
        for g in [g for g in self._bins if g < g_min]:
            self._buffered -= self._bins.pop(g)[1]

    def _clear(self) -> None:
        self._bins = {}
        self._buffered = 0

    def _restart(self) -> None:
        super()._restart()
        self._origin = None


def scan_chunk(chunk: np.ndarray, width: int, height: int) -> tuple[bool, bool]:
    """``(ordered, inside)``: whether the times of ``chunk`` (:data:`EVENT_DTYPE`) never decrease,
    and whether every event lies inside a ``width x height`` sensor. One compiled pass over the
    records where numba is installed (each cache line read once), else a few numpy passes."""
    if len(chunk) == 0:
        return True, True
    kernel = _scan_kernel()
    if kernel is not None:
        flags = kernel(chunk["t"], chunk["x"], chunk["y"], int(width), int(height))
        return not flags & 1, not flags & 2
    x, y = chunk["x"], chunk["y"]
    # as unsigned, a negative coordinate is huge: one max per axis checks both bounds
    inside = int(x.view(np.uint16).max()) < width and int(y.view(np.uint16).max()) < height
    return _is_sorted(chunk["t"]), inside


def _scan(t, x, y, width, height):  # bit 0: a time decreases, bit 1: an event outside
    flags = 0
    for i in range(t.shape[0]):
        if x[i] < 0 or x[i] >= width or y[i] < 0 or y[i] >= height:
            flags |= 2
        if i > 0 and t[i] < t[i - 1]:
            flags |= 1
    return flags


_scan_kernel = _compiled(_scan)  # behind :func:`scan_chunk`


def _is_sorted(t: np.ndarray) -> bool:
    """Whether the times never decrease: one compiled pass over the (strided) column where numba
    is installed, else blocks compared with numpy (no copy of the whole column)."""
    kernel = _sorted_kernel()
    if kernel is not None:
        return bool(kernel(t))
    step = 1 << 16
    for a in range(0, len(t) - 1, step):
        block = t[a : a + step + 1]
        if np.any(block[1:] < block[:-1]):
            return False
    return True


def _never_decreases(t):
    for i in range(1, t.shape[0]):
        if t[i] < t[i - 1]:
            return False
    return True


_sorted_kernel = _compiled(_never_decreases)  # behind :func:`_is_sorted`


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """One new contiguous array of the events of ``parts``, copied as raw bytes: numpy copies
    an unaligned structured dtype field by field, about 10x slower than this."""
    out = np.empty(sum(len(p) for p in parts), parts[0].dtype)
    raw, at = out.view(np.uint8), 0
    for p in parts:
        n = p.nbytes
        raw[at : at + n] = np.ascontiguousarray(p).view(np.uint8)
        at += n
    return out
