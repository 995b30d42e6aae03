"""Record a live stream to AEDAT 4.0 while it is inferred (``live --record``).

:class:`EventRecorder` receives every chunk the pipeline's reader takes from the source (after the
sensor-bounds check, before windowing) and appends it to an
:class:`~sdt3_event.events.aedat4.Aedat4Writer`, losslessly. With ``filters`` (the contract's or
``--filter``'s spec) the chunks are filtered first, as one stream
(:class:`~sdt3_event.events.filters.StreamFilters`: the background-activity and refractory memories
carry over from chunk to chunk).

Files appear atomically: each is written beside its final name and moved into place when closed
(at rotation, on :meth:`close`, on Ctrl-C / SIGTERM through ``live``), so a file at the final path
always ends with whole packets and its data table. With ``max_mb`` the recording rotates:
``out.aedat4``, ``out-001.aedat4``, ``out-002.aedat4``, ... each closed once it holds ``max_mb`` MB
of compressed packets. Events older than the last one written (a network source's late events)
are dropped and counted, as the window builder drops them, so every file stays time-ordered.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from sdt3_event.events.aedat4 import Aedat4Writer
from sdt3_event.events.filters import StreamFilters, parse_filters
from sdt3_event.events.schema import SensorSize

log = logging.getLogger(__name__)

__all__ = ["EventRecorder", "rotated_path"]


def rotated_path(path: str | Path, index: int) -> Path:
    """The ``index``-th file of a rotated recording (``0``: ``path`` itself)."""
    path = Path(path)
    if index == 0:
        return path
    return path.with_name(f"{path.stem}-{index:03d}{path.suffix}")


class EventRecorder:
    """Append live chunks to AEDAT 4.0 files (see the module docstring).

    Args:
        path: the first ``.aedat4`` file.
        filters: a filter spec applied to each chunk before writing (``""``: raw events).
        max_mb: rotate after this many MB of packets (``None``: one file).
        compression: see :class:`~sdt3_event.events.aedat4.Aedat4Writer`.

    Attributes:
        paths: the files finished so far, in order.
        n_events: events written; n_late: late events dropped.

    Raises:
        ValueError: ``max_mb <= 0``; a bad filter spec.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        filters: str = "",
        max_mb: float | None = None,
        compression: str = "lz4",
    ) -> None:
        if max_mb is not None and max_mb <= 0:
            raise ValueError(f"max_mb must be > 0, got {max_mb}")
        self.path = Path(path)
        self.filters = parse_filters(filters)
        self.max_bytes = None if max_mb is None else int(max_mb * 1e6)
        self.compression = compression
        self.paths: list[Path] = []
        self.n_events = 0
        self.n_late = 0
        self._writer: Aedat4Writer | None = None
        self._sensor: SensorSize | None = None
        self._index = 0
        self._last_t: int | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._stream: StreamFilters | None = None

    def _open(self, sensor_size: SensorSize) -> Aedat4Writer:
        target = rotated_path(self.path, self._index)
        self._index += 1
        self._sensor = tuple(int(v) for v in sensor_size)
        self._writer = Aedat4Writer(target, self._sensor, compression=self.compression)
        return self._writer

    def _finish(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self.paths.append(writer.close())

    def write(self, events: np.ndarray, sensor_size: SensorSize) -> None:
        """Append one chunk (sorted by time) from a source with ``sensor_size``.

        A new sensor size (a reconnected network source) starts a new file.
        """
        with self._lock:
            if self._closed:
                return
            size = tuple(int(v) for v in sensor_size)
            if self._last_t is not None and len(events) and int(events["t"][0]) < self._last_t:
                late = events["t"] < self._last_t
                self.n_late += int(np.count_nonzero(late))
                events = events[~late]
            if not len(events):
                return
            self._last_t = int(events["t"][-1])  # of the input: late means late for the filters too
            if self.filters:
                if self._stream is None or self._stream.sensor_size[:2] != size[:2]:
                    self._stream = StreamFilters(self.filters, size)
                events = self._stream(events)
                if not len(events):
                    return
            if self._writer is not None and size != self._sensor:
                log.warning("%s: sensor changed %s -> %s; new file", self.path, self._sensor, size)
                self._finish()
            writer = self._writer or self._open(size)
            writer.write(events)
            self.n_events += len(events)
            if self.max_bytes is not None and writer.bytes_written >= self.max_bytes:
                self._finish()

    def close(self) -> list[Path]:
        """Finish the current file; returns every file written. Idempotent."""
        with self._lock:
            self._closed = True
            self._finish()
            return list(self.paths)
