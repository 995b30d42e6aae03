"""Where live records go: JSON lines (stdout or a file), and a tee that feeds sinks while another
consumer (the Textual monitor) drains the pipeline.

One JSON object per line; ``"type"`` is ``"prediction"`` or ``"status"``; the other keys are the
fields of :class:`~sdt3_event.stream.records.Prediction` / ``StreamStatus`` (without the display
frame), plus ``true_label`` for sources that know it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sdt3_event.stream.records import Prediction, Record, StreamStatus

log = logging.getLogger(__name__)


class JsonLinesSink:
    """Write records as JSON lines to a text stream.

    Args:
        stream: an open text stream (``sys.stdout``, a file).
        statuses: also write status records.
        flush: flush after every line (a live consumer sees each record at once).
        close_stream: close ``stream`` in :meth:`close`.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        statuses: bool = True,
        flush: bool = True,
        close_stream: bool = False,
    ) -> None:
        self.stream = stream
        self.statuses = statuses
        self.flush = flush
        self.close_stream = close_stream
        self.lines = 0

    @classmethod
    def to_file(cls, path: str | Path, *, statuses: bool = True, append: bool = False):
        """A sink writing to ``path`` (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("a" if append else "w", encoding="utf-8", buffering=1)
        return cls(stream, statuses=statuses, flush=False, close_stream=True)

    def write(self, record: Record) -> None:
        """Write one record.

        Raises:
            BrokenPipeError: the reader of the stream went away (``| head``).
        """
        if isinstance(record, StreamStatus) and not self.statuses:
            return
        self.stream.write(record.to_json() + "\n")
        self.lines += 1
        if self.flush:
            self.stream.flush()

    def close(self) -> None:
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
        if self.close_stream:
            self.stream.close()


@dataclass
class DrainResult:
    """What :func:`drain` saw."""

    predictions: int = 0
    statuses: int = 0
    last_status: StreamStatus | None = None
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.last_status is not None and self.last_status.state == "error"


def drain(
    pipeline: Any,
    sinks: Iterable[Any],
    *,
    max_windows: int | None = None,
    duration_s: float | None = None,
    poll_s: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> DrainResult:
    """Pass a started pipeline's records to sinks until the stream ends or a limit is hit.

    Args:
        pipeline: a started :class:`~sdt3_event.stream.pipeline.LivePipeline`.
        sinks: objects with ``write(record)``.
        max_windows: stop after this many predictions.
        duration_s: stop after this many seconds.
        poll_s: longest wait for a record before checking the limits and ``should_stop``.
        should_stop: polled between records; ``True`` ends the drain (a signal handler's flag:
            Ctrl-C then never raises inside the pipeline's locking code).

    Returns:
        the counts and the last status record; ``reason`` is ``"end"``, ``"max_windows"``,
        ``"duration"``, ``"broken_pipe"`` or ``"stopped"``. The caller stops the pipeline.
    """
    sinks = list(sinks)
    out = DrainResult()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    while True:
        if should_stop is not None and should_stop():
            out.reason = "stopped"
            return out
        if deadline is not None and time.monotonic() >= deadline:
            out.reason = "duration"
            return out
        wait = poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
        record = pipeline.get(timeout=wait)
        if record is None:
            if pipeline.finished:
                out.reason = "end"
                return out
            continue
        if isinstance(record, StreamStatus):
            out.statuses += 1
            out.last_status = record
        else:
            out.predictions += 1
        try:
            for sink in sinks:
                sink.write(record)
        except BrokenPipeError:
            out.reason = "broken_pipe"
            return out
        if max_windows is not None and out.predictions >= max_windows:
            out.reason = "max_windows"
            return out


class TeePipeline:
    """A pipeline proxy whose :meth:`get` also writes every record to sinks and enforces limits.

    Lets the monitor drain the pipeline while a JSON-lines file records the same stream; every
    other attribute (``paused``, ``stop``, ``class_names``, ...) goes to the wrapped pipeline.
    A sink that fails is logged and removed; the stream goes on. After ``max_windows`` predictions
    or ``duration_s`` seconds from the first :meth:`get`, the wrapped pipeline is stopped (in a
    helper thread, so the caller never blocks), which ends the stream with a final status record.
    """

    def __init__(
        self,
        pipeline: Any,
        sinks: Iterable[Any] = (),
        *,
        max_windows: int | None = None,
        duration_s: float | None = None,
    ) -> None:
        d = self.__dict__
        d["_pipeline"], d["_sinks"] = pipeline, list(sinks)
        d["_max_windows"], d["_duration_s"] = max_windows, duration_s
        d["_predictions"], d["_t0"], d["_stopping"] = 0, None, False

    def get(self, timeout: float | None = None) -> Record | None:
        d = self.__dict__
        if d["_t0"] is None:
            d["_t0"] = time.monotonic()
        record = self._pipeline.get(timeout)
        if record is not None:
            for sink in list(self._sinks):
                try:
                    sink.write(record)
                except Exception as exc:
                    log.error("sink %r failed, removing it: %s", sink, exc)
                    self._sinks.remove(sink)
            if isinstance(record, Prediction):
                d["_predictions"] += 1
        over_count = self._max_windows is not None and self._predictions >= self._max_windows
        over_time = self._duration_s is not None and time.monotonic() - d["_t0"] >= self._duration_s
        if (over_count or over_time) and not self._stopping:
            d["_stopping"] = True
            threading.Thread(target=self._pipeline.stop, name="sdt3-limit", daemon=True).start()
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_pipeline"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._pipeline, name, value)
