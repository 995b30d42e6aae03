"""Rolling statistics the live monitor shows, fed with the pipeline's plain records (no Textual)."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterable

from sdt3_event.stream.records import Prediction, StreamStatus

from .render import percentile


class LiveStats:
    """Recent predictions and pipeline status, as the dashboard shows them.

    Args:
        history: how many recent predictions to list.
        window: how many recent values the sparklines and percentiles cover.
        clock: seconds, monotonic; injected so tests control time.

    Attributes:
        latency_ms / rate_mev_s / energy_uj: the last ``window`` values.
        history: the last ``history`` predictions, newest last.
        last: the latest prediction (with its frame), or ``None``.
        status: the latest source status, or ``None``.
        n_predictions: predictions since the start or the last reset.
    """

    def __init__(
        self, *, history: int = 8, window: int = 120, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.rate_mev_s: deque[float] = deque(maxlen=window)
        self.energy_uj: deque[float] = deque(maxlen=window)
        self.history: deque[Prediction] = deque(maxlen=history)
        self._arrivals: deque[float] = deque(maxlen=4096)
        self.last: Prediction | None = None
        self.first_start_us: int | None = None  # the stream's first window: "recent" is relative
        self.status: StreamStatus | None = None
        self.n_predictions = 0
        self.last_arrival: float | None = None

    def add(self, records: Iterable[Prediction | StreamStatus]) -> None:
        """Fold records in, oldest first."""
        for rec in records:
            if isinstance(rec, StreamStatus):
                self.status = rec
            elif isinstance(rec, Prediction):
                now = self.clock()
                self.last = rec
                if self.first_start_us is None:
                    self.first_start_us = int(rec.window_start_us)
                self.history.append(rec)
                self.latency_ms.append(float(rec.latency_ms))
                self.rate_mev_s.append(float(rec.event_rate_mev_s))
                if rec.energy_uj is not None:
                    self.energy_uj.append(float(rec.energy_uj))
                self.n_predictions += 1
                self._arrivals.append(now)
                self.last_arrival = now

    def reset(self) -> None:
        """Forget the rolling values and zero the status counters; keep the latest frame and state."""
        for d in (self.latency_ms, self.rate_mev_s, self.energy_uj, self.history, self._arrivals):
            d.clear()
        self.n_predictions = 0
        if self.status is not None:
            self.status = dataclasses.replace(
                self.status, events_in=0, events_dropped=0, windows_in=0, windows_dropped=0
            )

    def predictions_per_s(self, span_s: float = 5.0) -> float:
        """Predictions per second over the last ``span_s`` seconds of the clock."""
        now = self.clock()
        recent = [t for t in self._arrivals if now - t <= span_s]
        if not recent:
            return 0.0
        return len(recent) / span_s

    def since_last_s(self) -> float | None:
        """Seconds since the latest prediction arrived, or ``None`` before the first."""
        return None if self.last_arrival is None else self.clock() - self.last_arrival

    def latency_summary(self) -> tuple[float | None, float | None, float | None]:
        """``(current, p50, p99)`` latency in ms."""
        cur = self.latency_ms[-1] if self.latency_ms else None
        return cur, percentile(self.latency_ms, 50), percentile(self.latency_ms, 99)

    def rate_summary(self) -> tuple[float | None, float | None, float | None]:
        """``(current, p50, p99)`` event rate in Mev/s."""
        cur = self.rate_mev_s[-1] if self.rate_mev_s else None
        return cur, percentile(self.rate_mev_s, 50), percentile(self.rate_mev_s, 99)
