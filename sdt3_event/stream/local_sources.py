"""Event sources that need no network: file replay, the synthetic stream, webcam / video emulation.

All of them pace their output against a clock: a chunk of events is released when the wall time
since the start of the stream has caught up with its last timestamp (divided by ``speed``).
``speed=0`` releases chunks as fast as the consumer takes them. Clock and sleep are injectable so
tests replay without waiting.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, SensorSize
from sdt3_event.stream.base import BaseEventSource, parse_sensor_size, parse_size
from sdt3_event.stream.emulator import (
    DEFAULT_REFRACTORY_US,
    DEFAULT_THRESHOLD,
    DEFAULT_THRESHOLD_SIGMA,
)

log = logging.getLogger(__name__)


class _Pacer:
    """Release times for a stream: event time ``t`` is due at ``start + (t - t0) / speed``."""

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float],
        sleep: Callable[[float], bool],
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        self.speed = float(speed)
        self.clock = clock
        self.sleep = sleep
        self.t0: int | None = None
        self.wall0 = 0.0

    def start(self, t0_us: int) -> None:
        """Event time ``t0_us`` (the stream's first event) is due now."""
        self.t0, self.wall0 = int(t0_us), self.clock()

    def wait_until(self, t_us: int) -> bool:
        """Block until event time ``t_us`` is due; False if the source was closed meanwhile."""
        if self.t0 is None:
            self.start(t_us)
        if self.speed == 0:
            return self.sleep(0.0)
        due = self.wall0 + (int(t_us) - self.t0) / 1e6 / self.speed
        return self.sleep(due - self.clock())


def _split(
    events: np.ndarray, t_origin: int, chunk_us: int, max_chunk: int, seg_end: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Split time-sorted events into chunks on a ``chunk_us`` grid from ``t_origin``, each at most
    ``max_chunk`` events long, with the watermark after each: every event before it is in this
    chunk or an earlier one (``seg_end`` bounds the segment: later events have ``t >= seg_end``)."""
    if len(events) == 0:
        return
    t = events["t"]
    k0 = (int(t[0]) - t_origin) // chunk_us
    k1 = (int(t[-1]) - t_origin) // chunk_us
    edges = t_origin + np.arange(k0 + 1, k1 + 1, dtype=np.int64) * chunk_us
    cuts = np.r_[0, np.searchsorted(t, edges, side="left"), len(events)]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        a, b = int(a), int(b)
        if b == a:
            continue
        cell_end = t_origin + ((int(t[a]) - t_origin) // chunk_us + 1) * chunk_us
        for s in range(a, b, max_chunk):
            e = min(b, s + max_chunk)
            # the last piece of a cell closes the cell; a piece cut by max_chunk closes up to
            # its last timestamp (events at that very time may follow in the next piece)
            yield events[s:e], (min(cell_end, seg_end) if e == b else int(t[e - 1]))


class _PacedSource(BaseEventSource):
    """A source that releases pre-existing event segments in real time (or ``speed`` times it)."""

    def __init__(
        self,
        uri: str,
        sensor_size: SensorSize | None,
        *,
        speed: float,
        chunk_us: int,
        max_chunk_events: int,
        clock: Callable[[], float] | None,
        sleep: Callable[[float], None] | None,
    ) -> None:
        super().__init__(uri, sensor_size)
        if chunk_us <= 0 or max_chunk_events <= 0:
            raise ValueError("chunk_us and max_chunk_events must be > 0")
        self.speed = float(speed)
        self.chunk_us = int(chunk_us)
        self.max_chunk_events = int(max_chunk_events)
        if sleep is None:
            sleep_fn = self._sleep
        else:

            def sleep_fn(seconds: float) -> bool:
                if seconds > 0:
                    sleep(seconds)
                return not self.closed

        self._pacer = _Pacer(self.speed, clock or time.monotonic, sleep_fn)

    def _segments(self) -> Iterator[tuple[np.ndarray, int]]:
        """``(events, end_us)`` pieces of the stream; later pieces have ``t >= end_us``."""
        raise NotImplementedError

    def _chunks(self) -> Iterator[np.ndarray]:
        self._set_status("connected", self._describe())
        origin: int | None = None
        for seg, seg_end in self._segments():
            if len(seg) == 0:
                continue
            if origin is None:
                origin = int(seg["t"][0])
                self._pacer.start(origin)
            for chunk, watermark in _split(
                seg, origin, self.chunk_us, self.max_chunk_events, seg_end
            ):
                # a chunk is released when its grid cell is over, as a camera sends a packet
                if not self._pacer.wait_until(watermark):
                    return
                self._watermark = watermark
                yield chunk

    def _describe(self) -> str:
        pace = "as fast as possible" if self.speed == 0 else f"{self.speed:g}x real time"
        return pace


class FileSource(_PacedSource):
    """Replay a recording (any format :func:`sdt3_event.events.io.read_events` reads).

    The file is read chunk by chunk with :func:`sdt3_event.events.io.iter_events`, so replaying a
    recording larger than memory keeps memory flat (EVT 2.0 / 3.0, DAT, AEDAT 4.0; other formats
    are read whole). Only a file that states no sensor size, with none given, is read whole
    first, to take the size from its largest coordinates.

    Args:
        path: the recording.
        speed: multiple of the recorded speed; ``0`` = as fast as possible.
        loop: start again at the end, forever (timestamps keep increasing).
        chunk_us: chunk duration in event time.
        max_chunk_events: split denser chunks.
        sensor: ``"WxH"`` / ``(W, H[, P])`` for formats without geometry (EVT2 RAW); overrides
            what the file says.
        allow_truncated: replay the complete part of a file cut short (a copy that stopped, a
            recording still being written) instead of raising.
        clock / sleep: injectable time functions (tests).

    Raises:
        FileNotFoundError: the path does not exist.
        EventFormatError: an unknown or broken format (the message lists the supported ones).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        uri: str | None = None,
        speed: float = 1.0,
        loop: bool = False,
        chunk_us: int = 10_000,
        max_chunk_events: int = 1 << 16,
        sensor: str | tuple | None = None,
        allow_truncated: bool = False,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such recording: {path}")
        from sdt3_event.events.io import iter_events

        size = None if sensor is None else parse_sensor_size(sensor)
        opts = dict(drop_out_of_range=True, allow_truncated=bool(allow_truncated))
        chunks = iter_events(path, _READ_CHUNK_EVENTS, size, **opts)
        if chunks.sensor_size is None:
            events = np.concatenate([np.empty(0, EVENT_DTYPE), *chunks])
            if len(events) == 0:
                raise EventFormatError(f"{path}: no events and no sensor size in the file")
            size = (int(events["x"].max()) + 1, int(events["y"].max()) + 1, 2)
            log.warning(
                "%s: the file does not state its sensor size; using %s from the largest "
                "coordinates (pass ?sensor=WxH to set it)",
                path,
                size,
            )
            chunks = iter_events(path, _READ_CHUNK_EVENTS, size, **opts)
        first = next(iter(chunks), None)
        if first is None or len(first) == 0:
            raise EventFormatError(f"{path}: the recording holds no events")
        super().__init__(
            uri or f"file:{path}",
            chunks.sensor_size,
            speed=speed,
            chunk_us=chunk_us,
            max_chunk_events=max_chunk_events,
            clock=clock,
            sleep=sleep,
        )
        self.path = path
        self.loop = bool(loop)
        self.chunks = chunks
        self.loops_done = 0
        self.n_events = 0  # events read in the first pass, so far
        self._t_first = int(first["t"][0])
        self._t_last: int | None = None  # known after the first pass

    @property
    def duration_us(self) -> int | None:
        """The recording's duration, once it has been read to the end (else ``None``)."""
        return None if self._t_last is None else self._t_last - self._t_first + 1

    def _one_pass(self) -> Iterator[tuple[np.ndarray, int]]:
        """One pass over the file: ``(events, end_us)``, holding one chunk back to know the last."""
        held = None
        for chunk in self.chunks:
            if len(chunk) == 0:
                continue
            if held is not None:
                yield held, int(held["t"][-1])  # the next chunk may start at that very time
            held = chunk
            if self._t_last is None:
                self.n_events += len(chunk)
            if self.closed:
                return
        if held is not None:
            if self._t_last is None:
                self._t_last = int(held["t"][-1])
            yield held, int(held["t"][-1]) + 1

    def _segments(self) -> Iterator[tuple[np.ndarray, int]]:
        while True:
            if self.loops_done == 0:
                yield from self._one_pass()
            else:
                shift = self.loops_done * self.duration_us
                for seg, end in self._one_pass():
                    seg = seg.copy()
                    seg["t"] += shift
                    yield seg, end + shift
            self.loops_done += 1
            if not self.loop or self.closed or self._t_last is None:
                return

    def _describe(self) -> str:
        size = "" if self.duration_us is None else f"{self.n_events:,} events, "
        size += "" if self.duration_us is None else f"{self.duration_us / 1e6:.3f} s, "
        return f"{self.path.name}: {size}{super()._describe()}" + (", looping" if self.loop else "")


#: Events per read of a replayed file (the pacing splits them further into ``chunk_us`` chunks).
_READ_CHUNK_EVENTS = 1 << 20


class SyntheticSource(_PacedSource):
    """The synthetic gesture generator as an endless live stream.

    Gestures follow one another, each lasting ``gesture_us``; the class of each is drawn at random
    (seeded). :meth:`label_at` tells the true class at any time of the stream, for the last
    ``history`` gestures.

    Args:
        seed: seeds the class sequence and the gestures.
        speed: multiple of real time; ``0`` = as fast as possible.
        sensor: ``(W, H[, P])`` / ``"WxH"``; default the generator's 128x128.
        gesture_us: duration of one gesture (default the generator's).
        max_gestures: stop after this many (default: endless).
        chunk_us, max_chunk_events, clock, sleep: as for :class:`FileSource`.
    """

    def __init__(
        self,
        *,
        uri: str | None = None,
        seed: int = 0,
        speed: float = 1.0,
        sensor: str | tuple | None = None,
        gesture_us: int | None = None,
        max_gestures: int | None = None,
        history: int = 1024,
        chunk_us: int = 10_000,
        max_chunk_events: int = 1 << 16,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        from sdt3_event.datasets import synthetic

        size = (128, 128, 2) if sensor is None else parse_sensor_size(sensor)
        super().__init__(
            uri or "synthetic:",
            size,
            speed=speed,
            chunk_us=chunk_us,
            max_chunk_events=max_chunk_events,
            clock=clock,
            sleep=sleep,
        )
        self._gen = synthetic
        self.class_names = tuple(synthetic.SYNTHETIC_CLASSES)
        self.seed = int(seed)
        self.gesture_us = None if gesture_us is None else int(gesture_us)
        self.max_gestures = max_gestures
        self._timeline: deque[tuple[int, int, int]] = deque(maxlen=int(history))

    def _segments(self) -> Iterator[tuple[np.ndarray, int]]:
        kwargs = {} if self.gesture_us is None else {"duration_us": self.gesture_us}
        stream = self._gen.gesture_stream(self.seed, self.sensor_size, **kwargs)
        for i, seg in enumerate(stream):
            if self.closed or (self.max_gestures is not None and i >= self.max_gestures):
                return
            with self._lock:
                self._timeline.append((seg.t_start_us, seg.t_end_us, seg.label))
            yield seg.events, seg.t_end_us

    def label_at(self, t_us: int) -> str | None:
        """The true class name at stream time ``t_us`` (``None`` if outside the kept history)."""
        with self._lock:  # the reader thread appends while the inference thread asks
            timeline = list(self._timeline)
        for start, end, label in reversed(timeline):
            if start <= t_us < end:
                return self.class_names[label]
            if end <= t_us:
                return None
        return None

    def _describe(self) -> str:
        return f"synthetic gestures ({len(self.class_names)} classes), {super()._describe()}"


class VideoSource(BaseEventSource):
    """A webcam or video file turned into events by :class:`~sdt3_event.stream.emulator.EventEmulator`.

    Args:
        target: a webcam index (``int``) or a video path.
        speed: for video files, multiple of the video's frame rate (``0`` = as fast as possible);
            webcams run in real time and ignore it.
        loop: restart a video file at its end.
        size: ``"WxH"`` resolution of the emulated sensor (frames are resized with area
            averaging); default the capture's resolution.
        fps: frame rate to assume when the file does not state one.
        threshold_on / threshold_off / threshold_sigma / refractory_us / seed: see the emulator.
        max_frames: stop after this many frames.
        clock / sleep: injectable time functions (tests).

    Raises:
        FileNotFoundError: a missing video file.
        RuntimeError: OpenCV cannot open the camera or the video.
    """

    def __init__(
        self,
        target: int | str | Path,
        *,
        uri: str | None = None,
        speed: float = 1.0,
        loop: bool = False,
        size: str | tuple | None = None,
        fps: float = 30.0,
        threshold_on: float = DEFAULT_THRESHOLD,
        threshold_off: float = DEFAULT_THRESHOLD,
        threshold_sigma: float = DEFAULT_THRESHOLD_SIGMA,
        refractory_us: int = DEFAULT_REFRACTORY_US,
        seed: int = 0,
        max_frames: int | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import cv2

        from sdt3_event.stream.emulator import EventEmulator

        self.live = isinstance(target, int)
        if not self.live:
            target = Path(target).expanduser()
            if not target.is_file():
                raise FileNotFoundError(f"no such video: {target}")
        cap = cv2.VideoCapture(target if self.live else str(target))
        if not cap.isOpened():
            cap.release()
            what = f"camera {target}" if self.live else f"video {target}"
            raise RuntimeError(
                f"OpenCV cannot open {what}; "
                + (
                    "check that a camera is connected and not used by another program"
                    if self.live
                    else "check that it is a video format OpenCV reads (mp4, avi, mkv)"
                )
            )
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise RuntimeError(f"{target}: could not read a first frame")
        h, w = first.shape[:2]
        if size is not None:
            w, h = parse_size(size)[:2]
        super().__init__(uri or (f"webcam:{target}" if self.live else f"video:{target}"), (w, h, 2))
        self._cv2 = cv2
        self._cap = cap
        self._first = first
        self.target = target
        self.speed = float(speed)
        self.loop = bool(loop)
        self.max_frames = max_frames
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(file_fps) if file_fps and file_fps > 0 and np.isfinite(file_fps) else fps
        self.emulator = EventEmulator(
            threshold_on=threshold_on,
            threshold_off=threshold_off,
            threshold_sigma=threshold_sigma,
            refractory_us=refractory_us,
            seed=seed,
        )
        self._clock = clock or time.monotonic
        self._sleep_fn = sleep
        self._iterating = False

    def _pause(self, seconds: float) -> bool:
        if self._sleep_fn is None:
            return self._sleep(seconds)
        if seconds > 0:
            self._sleep_fn(seconds)
        return not self.closed

    def _frames(self) -> Iterator[np.ndarray]:
        yield self._first
        while not self.closed:
            ok, frame = self._cap.read()
            if not ok:
                if self.live:
                    raise RuntimeError(f"{self.uri}: the camera stopped delivering frames")
                if not self.loop:
                    return
                self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._cap.read()
                if not ok:
                    return
            yield frame

    def _chunks(self) -> Iterator[np.ndarray]:
        self._set_status(
            "connected",
            f"{self.uri}: {self.sensor_size[0]}x{self.sensor_size[1]} "
            f"emulated events at {self.fps:g} fps",
        )
        w, h = self.sensor_size[:2]
        wall0 = self._clock()
        self._iterating = True
        try:
            for i, frame in enumerate(self._frames()):
                if self.max_frames is not None and i >= self.max_frames:
                    return
                if frame.shape[1] != w or frame.shape[0] != h:
                    frame = self._cv2.resize(frame, (w, h), interpolation=self._cv2.INTER_AREA)
                if self.live:
                    t_us = int((self._clock() - wall0) * 1e6)
                else:
                    t_us = int(round(i * 1e6 / self.fps))
                    if self.speed > 0 and not self._pause(
                        wall0 + t_us / 1e6 / self.speed - self._clock()
                    ):
                        return
                events = self.emulator(frame, t_us)
                if len(events):
                    yield events
        finally:
            self._cap.release()

    def close(self) -> None:
        """Stop; the capture is released here unless a reading thread will release it."""
        super().close()
        if not self._iterating:
            self._cap.release()
