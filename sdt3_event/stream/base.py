"""The ``EventSource`` protocol and ``BaseEventSource``, the base class every live source extends.

Sources are opened by URI with :func:`sdt3_event.stream.factory.open_source`; this module holds only
what a source is, so that the source modules (:mod:`~sdt3_event.stream.local_sources`,
:mod:`~sdt3_event.stream.network`, :mod:`~sdt3_event.stream.camera`) import it without importing the
factory that imports them.

A source yields *chunks*: 1-D arrays of :data:`~sdt3_event.events.schema.EVENT_DTYPE` whose timestamps
never decrease, within and across chunks. ``close()`` may be called from any thread and makes the
iteration end soon after.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sdt3_event.events.schema import SensorSize
from sdt3_event.stream.records import SOURCE_STATES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceState:
    """What a source is doing now: one of ``SOURCE_STATES`` and a human-readable detail."""

    state: str
    message: str = ""

    def __post_init__(self) -> None:
        if self.state not in SOURCE_STATES:
            raise ValueError(f"state must be one of {SOURCE_STATES}, got {self.state!r}")


@runtime_checkable
class EventSource(Protocol):
    """A live stream of event chunks.

    Attributes:
        uri: the URI the source was opened with.
        sensor_size: ``(W, H, P)``, or ``None`` while unknown (a network stream before its header).
        status: the current :class:`SourceState`; polled by the pipeline from another thread.

    A source may also offer ``watermark_us`` (``int | None``), read right after each chunk: every
    event with ``t < watermark_us`` has been delivered. It lets the pipeline close a window without
    waiting for the next event (lower latency); sources without it are windowed by event time only.
    """

    uri: str

    @property
    def sensor_size(self) -> SensorSize | None: ...

    @property
    def status(self) -> SourceState: ...

    def __iter__(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class BaseEventSource:
    """Shared machinery for sources: thread-safe status, a close flag, an interruptible sleep.

    Subclasses implement ``_chunks()``; iteration sets ``connected`` / ``finished`` / ``error``
    around it. An exception inside ``_chunks()`` is recorded in ``status`` and re-raised.
    """

    def __init__(self, uri: str, sensor_size: SensorSize | None = None) -> None:
        self.uri = uri
        self._sensor_size = None if sensor_size is None else tuple(int(v) for v in sensor_size)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._state = SourceState("connecting")
        self._watermark: int | None = None

    @property
    def sensor_size(self) -> SensorSize | None:
        return self._sensor_size

    @property
    def status(self) -> SourceState:
        with self._lock:
            return self._state

    @property
    def watermark_us(self) -> int | None:
        """Every event with ``t`` below this was delivered (``None``: no such promise)."""
        return self._watermark

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _set_status(self, state: str, message: str = "") -> None:
        with self._lock:
            self._state = SourceState(state, message)
        log.debug("%s: %s %s", self.uri, state, message)

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return False at once if the source was closed meanwhile."""
        if seconds > 0:
            self._closed.wait(seconds)
        return not self._closed.is_set()

    def _chunks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for chunk in self._chunks():
                if self._closed.is_set():
                    break
                yield chunk
        except Exception as exc:
            self._set_status("error", f"{type(exc).__name__}: {exc}")
            raise
        if self.status.state != "error":
            self._set_status("finished", "closed" if self._closed.is_set() else "end of stream")

    def close(self) -> None:
        self._closed.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, sensor_size={self.sensor_size})"


def parse_size(value: str | tuple | list) -> tuple[int, ...]:
    """Parse ``"346x260"`` / ``"346,260,2"`` / a sequence into a tuple of ints.

    Raises:
        ValueError: when it is not 2 or 3 positive integers.
    """
    if isinstance(value, str):
        parts = value.lower().replace("x", ",").split(",")
    else:
        parts = list(value)
    try:
        out = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"expected a size like 346x260 or 346x260x2, got {value!r}") from None
    if len(out) not in (2, 3) or min(out) <= 0:
        raise ValueError(f"expected a size like 346x260 or 346x260x2, got {value!r}")
    return out


def parse_sensor_size(value: str | tuple | list) -> SensorSize:
    """:func:`parse_size` of a sensor: ``(W, H, P)``, with ``P = 2`` polarities for ``"WxH"``.

    Raises:
        ValueError: when it is not 2 or 3 positive integers.
    """
    size = parse_size(value)
    return size if len(size) == 3 else (*size, 2)
