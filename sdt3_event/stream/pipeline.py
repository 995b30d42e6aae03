"""The live pipeline: source -> windows -> model -> records, in three threads with bounded queues.

::

    reader thread     source chunks -> SlidingWindower -> window queue (at most ``max_queued_windows``)
    inference thread  window queue -> Predictor -> output queue (at most ``max_records``)
    status thread     source state changes + every ``status_interval_s`` -> output queue

Drop policy (stated once, counted always): when inference falls behind, the window queue keeps the
*newest* windows (by default one: the model always gets the freshest complete window, so latency
stays near one inference time); the oldest queued window is dropped whole and its events count as
dropped. Events
inside a window are never dropped. ``drop_policy="block"`` instead makes the reader wait for room
(back-pressure): lossless for a file replayed as fast as possible, while a live source then backs up
(its own buffers and drops take over).

Memory stays bounded whatever the input rate. With the :class:`~sdt3_event.stream.predictor.
Predictor` on the CPU, the reader bins events into the open windows' frames as they arrive
(:class:`~sdt3_event.stream.windowing.FrameWindower`): nothing but frames is held, each event is
binned once, and a window's frames are ready when its last event arrives. Where windows must keep
their events (device binning, other predictors) the windower bounds them (``max_window_events``);
in both cases the queued windows are bounded by number and by memory (``max_queued_mb``). If nobody reads the records, the oldest records are dropped (counted as
``records_dropped``). While ``paused``, windows are discarded before the queue (``windows_paused``).

A failing source or a source whose sensor does not fit the model never raises out of the pipeline:
it ends in a ``StreamStatus(state="error")`` record with the reason.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdt3_event.events.schema import EVENT_DTYPE
from sdt3_event.stream.base import EventSource
from sdt3_event.stream.factory import open_source, split_uri
from sdt3_event.stream.records import Record, StreamStatus
from sdt3_event.stream.windowing import EventWindow, SlidingWindower, scan_chunk

log = logging.getLogger(__name__)

# 16M events (208 MB) a window: 10x a DAVIS346's peak rate over a 1 s window, or 320 Mev/s
# over the default 50 ms one. Windows above it are dropped whole and counted.
DEFAULT_MAX_WINDOW_EVENTS = 16_000_000
# Memory of the windows waiting for inference (events and frames), whatever their number.
DEFAULT_MAX_QUEUED_MB = 64.0

DROP_POLICIES = ("drop_oldest", "block")


@dataclass
class PipelineStats:
    """Counters since the start or the last :meth:`LivePipeline.reset_stats`."""

    events_in: int = 0
    events_invalid: int = 0
    events_late: int = 0
    events_dropped: int = 0
    windows_in: int = 0
    windows_dropped: int = 0
    windows_overflow: int = 0
    windows_paused: int = 0
    windows_done: int = 0
    records_dropped: int = 0
    restarts: int = 0
    started: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LivePipeline:
    """Run an event source through a predictor in background threads.

    Args:
        source: an open :class:`~sdt3_event.stream.base.EventSource`.
        predictor: a :class:`~sdt3_event.stream.predictor.Predictor` (or any object with ``bind``,
            ``bound``, ``__call__(window, true_label)``, ``model_name``, ``device``, ``class_names``).
        window_us / stride_us: the sliding windows.
        max_queued_windows: windows waiting for inference before the oldest is dropped.
        max_window_events: bound on events buffered for one window (whole windows over it are
            dropped); only where windows keep their events (a predictor without
            ``make_windower``, device binning): a predictor that bins events as they arrive holds
            frames, whose size does not grow with the event rate.
        max_queued_mb: bound on the memory of the queued windows (events and frames); the
            oldest are dropped (or the reader waits, with ``"block"``) beyond it or beyond
            ``max_queued_windows``.
        max_records: records waiting for :meth:`get` before the oldest is dropped.
        status_interval_s: period of the status records.
        drop_policy: ``"drop_oldest"`` (live default) or ``"block"`` (lossless back-pressure).

    Raises:
        ValueError: non-positive sizes, unknown policy.
    """

    def __init__(
        self,
        source: EventSource,
        predictor: Any,
        *,
        window_us: int,
        stride_us: int | None = None,
        max_queued_windows: int = 1,
        max_window_events: int | None = DEFAULT_MAX_WINDOW_EVENTS,
        max_queued_mb: float = DEFAULT_MAX_QUEUED_MB,
        max_records: int = 256,
        status_interval_s: float = 1.0,
        drop_policy: str = "drop_oldest",
        recorder: Any = None,
    ) -> None:
        if max_queued_windows < 1 or max_records < 1:
            raise ValueError("max_queued_windows and max_records must be >= 1")
        if not max_queued_mb > 0:
            raise ValueError(f"max_queued_mb must be > 0, got {max_queued_mb}")
        if drop_policy not in DROP_POLICIES:
            raise ValueError(f"drop_policy must be one of {DROP_POLICIES}, got {drop_policy!r}")
        self.drop_policy = drop_policy
        self.recorder = recorder  # an EventRecorder: gets every chunk; closed by stop()
        self.source = source
        self.predictor = predictor
        self.window_us = int(window_us)
        self.stride_us = int(stride_us or window_us)
        self.max_window_events = max_window_events
        self.status_interval_s = float(status_interval_s)
        self._windower = SlidingWindower(self.window_us, self.stride_us, max_window_events)
        self._windows: deque[EventWindow] = deque()
        self._max_windows = int(max_queued_windows)
        self._max_queued_bytes = int(max_queued_mb * 2**20)
        self._queued_bytes = 0
        self._records: deque[Record] = deque()
        self._max_records = int(max_records)
        # An RLock, not a Lock: a KeyboardInterrupt raised in a caller's get() while it waits to
        # take the lock back (Condition.wait) cannot release it under a worker thread that holds
        # it (an RLock checks its owner, and the wait re-acquires it without being interrupted).
        self._lock = threading.RLock()
        self._window_ready = threading.Condition(self._lock)
        self._record_ready = threading.Condition(self._lock)
        self._window_taken = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._reader_done = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._paused = False
        self._error: str | None = None
        self.stats = PipelineStats()
        self._label_at: Callable[[int], str | None] | None = getattr(source, "label_at", None)

    # -- public API ------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return getattr(self.predictor, "model_name", "")

    @property
    def device(self) -> str:
        return str(getattr(self.predictor, "device", ""))

    @property
    def source_uri(self) -> str:
        return self.source.uri

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.predictor, "class_names", ()))

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = bool(value)

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._done.is_set()

    @property
    def finished(self) -> bool:
        """The stream ended (or failed) and every record was taken by :meth:`get`."""
        with self._lock:
            return self._done.is_set() and not self._records

    @property
    def error(self) -> str | None:
        """Why the stream failed, or ``None``."""
        return self._error

    def start(self) -> LivePipeline:
        """Start the threads (once). Returns ``self``."""
        if self._threads:
            raise RuntimeError("the pipeline was already started")
        self.stats.started = time.monotonic()
        self._emit_status("connecting", "starting")
        for name, target in (
            ("reader", self._read_loop),
            ("inference", self._infer_loop),
            ("status", self._status_loop),
        ):
            t = threading.Thread(target=target, name=f"sdt3-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading, finish the window being inferred, join the threads; idempotent."""
        self._stop.set()
        try:
            self.source.close()
        except Exception as exc:  # closing must never raise out of stop()
            log.debug("closing %s: %s", self.source_uri, exc)
        with self._lock:
            self._window_ready.notify_all()
            self._window_taken.notify_all()
            self._record_ready.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("threads still running after stop(): %s", alive)
        if self.recorder is not None:
            self.recorder.close()

    def get(self, timeout: float | None = None) -> Record | None:
        """The next record, waiting up to ``timeout`` seconds (``None``: until one comes or the
        stream ends). Returns ``None`` on timeout or when the stream has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._records:
                if self._done.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._record_ready.wait(0.25 if remaining is None else min(remaining, 0.25))
            return self._records.popleft()

    def reset_stats(self) -> None:
        """Zero the counters (the monitor's reset key)."""
        with self._lock:
            self.stats = PipelineStats(started=time.monotonic())

    def status(self, state: str | None = None, message: str = "") -> StreamStatus:
        """A status record with the current counters."""
        src = self.source.status
        with self._lock:
            s = self.stats
            extra = []
            if s.windows_overflow:
                extra.append(f"{s.windows_overflow} windows over the buffer bound")
            if s.windows_paused:
                extra.append(f"{s.windows_paused} windows skipped while paused")
            if s.events_invalid or s.events_late:
                extra.append(f"{s.events_invalid} invalid / {s.events_late} late events")
            if s.restarts:
                extra.append(f"stream clock restarted {s.restarts}x")
            if s.records_dropped:
                extra.append(f"{s.records_dropped} records unread")
            msg = message or src.message
            if self._paused:
                msg = ("paused; " + msg) if msg else "paused"
            if extra:
                msg = f"{msg} ({'; '.join(extra)})" if msg else "; ".join(extra)
            return StreamStatus(
                state=state or src.state,
                source=self.source_uri,
                message=msg,
                model=self.model_name,
                device=self.device,
                events_in=s.events_in,
                events_dropped=s.events_dropped,
                windows_in=s.windows_in,
                windows_dropped=s.windows_dropped + s.windows_overflow,
                wall_time=time.time(),
                events_invalid=s.events_invalid,
                events_late=s.events_late,
                records_dropped=s.records_dropped,
            )

    def __enter__(self) -> LivePipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- threads ---------------------------------------------------------------------------------

    def _use_sensor(self, size: tuple, bind: bool) -> None:
        """Bind the predictor to the source's sensor (when ``bind``) and choose the windower: one
        that bins events as they arrive when the predictor offers it, else one that keeps them."""
        if bind:
            self.predictor.bind(size)
        make = getattr(self.predictor, "make_windower", None)
        windower = make(self.window_us, self.stride_us) if callable(make) else None
        if windower is None:
            # a predictor that stages the events itself (device binning) takes them unjoined
            join = not getattr(self.predictor, "takes_parts", False)
            windower = SlidingWindower(
                self.window_us, self.stride_us, self.max_window_events, join=join
            )
        self._windower = windower

    def _read_loop(self) -> None:
        bound_size = None
        try:
            if self.source.sensor_size is not None:
                bound_size = tuple(self.source.sensor_size)
                self._use_sensor(bound_size, bind=not self.predictor.bound)
            for chunk in self.source:
                if self._stop.is_set():
                    break
                arrival = time.perf_counter()
                size = self.source.sensor_size
                if size is None:
                    raise RuntimeError(f"{self.source_uri} delivered events before its sensor size")
                size = tuple(size)
                if not self.predictor.bound or size != bound_size:
                    # first chunk, or a reconnected network source that now has another sensor
                    if bound_size is not None:
                        log.warning(
                            "%s: sensor changed %s -> %s", self.source_uri, bound_size, size
                        )
                    self._use_sensor(size, bind=True)
                    bound_size = size
                self._push(chunk, arrival)
            if not self._stop.is_set():
                self._queue_windows(self._windower.flush())
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            log.error("%s: %s", self.source_uri, self._error)
        finally:
            self._reader_done.set()
            with self._lock:
                self._window_ready.notify_all()

    def _push(self, chunk: np.ndarray, arrival: float) -> None:
        if chunk.dtype != EVENT_DTYPE:
            raise TypeError(f"{self.source_uri} yielded {chunk.dtype}, expected {EVENT_DTYPE}")
        n_in = len(chunk)
        size = self.source.sensor_size
        ordered = None
        if size is not None and n_in:
            ordered, inside = scan_chunk(chunk, size[0], size[1])
            if not inside:  # a boolean index keeps the order
                x, y = chunk["x"], chunk["y"]
                chunk = chunk[(x >= 0) & (x < size[0]) & (y >= 0) & (y < size[1])]
        if self.recorder is not None and size is not None:
            self.recorder.write(chunk, size)
        w = self._windower
        late0, over_w0, over_e0, restarts0 = (
            w.stats.events_late,
            w.stats.windows_overflow,
            w.stats.events_overflow,
            w.stats.restarts,
        )
        windows = w.push(chunk, arrival, ordered=ordered)
        watermark = getattr(self.source, "watermark_us", None)
        if watermark is not None:
            windows += w.advance(watermark)
        with self._lock:
            s = self.stats
            s.events_in += n_in
            s.events_invalid += n_in - len(chunk)
            s.events_late += w.stats.events_late - late0
            s.windows_overflow += w.stats.windows_overflow - over_w0
            s.events_dropped += w.stats.events_overflow - over_e0
            s.restarts += w.stats.restarts - restarts0
        self._queue_windows(windows)

    def _queue_windows(self, windows: list[EventWindow]) -> None:
        if not windows:
            return
        with self._lock:
            s = self.stats
            for win in windows:
                s.windows_in += 1
                if self._paused:
                    s.windows_paused += 1
                    continue
                while (
                    self.drop_policy == "block"
                    and self._queue_full(win)
                    and not self._stop.is_set()
                ):
                    self._window_taken.wait(0.25)
                if self._stop.is_set() and self.drop_policy == "block":
                    break  # stopping, not overloaded: what is left is not predicted, not dropped
                while self._queue_full(win):
                    old = self._windows.popleft()  # keep the newest: drop the oldest, whole
                    self._queued_bytes -= _window_bytes(old)
                    s.windows_dropped += 1
                    s.events_dropped += self._first_seen_events(old)
                self._windows.append(win)
                self._queued_bytes += _window_bytes(win)
            self._window_ready.notify()

    def _queue_full(self, win: EventWindow) -> bool:
        """No room for ``win``: the queue holds ``max_queued_windows`` windows, or ``win`` would
        take the windows' memory over ``max_queued_mb`` (an empty queue always takes one)."""
        if not self._windows:
            return False
        if len(self._windows) >= self._max_windows:
            return True
        return self._queued_bytes + _window_bytes(win) > self._max_queued_bytes

    def _first_seen_events(self, win: EventWindow) -> int:
        """Events of ``win`` in its first stride, ``[start, start + stride)``.

        With overlapping windows (stride < window) every event lies in several windows; each event
        is in exactly one window's first stride (the latest window that holds it), so counting only
        those keeps ``events_dropped <= events_in``.
        """
        if win.first_stride_events is not None:
            return win.first_stride_events
        if self.stride_us >= self.window_us:
            return win.n_events
        # bisect on the strided field: np.searchsorted would copy the whole column
        end, n = win.start_us + self.stride_us, 0
        for part in win.event_parts():
            k = bisect.bisect_left(part["t"], end)
            n += k
            if k < len(part):
                break
        return n

    def _infer_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._windows and not self._stop.is_set():
                        if self._reader_done.is_set():
                            break
                        self._window_ready.wait(0.25)
                    if self._stop.is_set() or not self._windows:
                        break
                    win = self._windows.popleft()
                    self._queued_bytes -= _window_bytes(win)
                    self._window_taken.notify_all()
                truth = self._truth(win)
                record = self.predictor(win, true_label=truth)
                with self._lock:
                    self.stats.windows_done += 1
                self._put(record)
        except Exception as exc:
            self._error = f"inference failed: {type(exc).__name__}: {exc}"
            log.exception("inference failed")
            self._stop.set()
            self.source.close()
        finally:
            self._finish()

    def _truth(self, win: EventWindow) -> str | None:
        """The true class at the window's middle, for sources that know it."""
        if self._label_at is None:
            return None
        try:
            return self._label_at((win.start_us + win.end_us) // 2)
        except Exception as exc:  # ground truth is an extra; never stop the stream for it
            log.debug("label_at failed: %s", exc)
            return None

    def _status_loop(self) -> None:
        last_state = None
        next_periodic = time.monotonic() + self.status_interval_s
        while not self._done.is_set():
            state = self.source.status
            now = time.monotonic()
            key = (state.state, state.message)
            if key != last_state:
                last_state = key
                if state.state not in ("finished", "error"):
                    self._put(self.status())
                next_periodic = now + self.status_interval_s
            elif now >= next_periodic:
                self._put(self.status())
                next_periodic = now + self.status_interval_s
            self._done.wait(0.05)

    def _finish(self) -> None:
        """Emit the final status once the reader and inference are both done."""
        self._reader_done.wait(5.0)
        if self._error is not None:
            final = self.status("error", self._error)
        else:
            src = self.source.status
            state = "error" if src.state == "error" else "finished"
            msg = src.message or ("stopped" if self._stop.is_set() else "end of stream")
            final = self.status(state, msg)
        self._put(final)
        self._done.set()
        with self._lock:
            self._record_ready.notify_all()

    def _put(self, record: Record) -> None:
        with self._lock:
            if len(self._records) >= self._max_records:
                self._records.popleft()
                self.stats.records_dropped += 1
            self._records.append(record)
            self._record_ready.notify_all()

    def _emit_status(self, state: str, message: str) -> None:
        self._put(self.status(state, message))


def _window_bytes(win: EventWindow) -> int:
    """Memory a queued window holds (its events and its frames)."""
    held = win.n_events * EVENT_DTYPE.itemsize if win.events is None else win.events.nbytes
    return held + (0 if win.frames is None else win.frames.nbytes)


def build_pipeline(
    source_uri: str | None = None,
    checkpoint: str | None = None,
    *,
    source: str | None = None,
    spike_driven: bool = False,
    device: str | None = None,
    window_us: int | None = None,
    stride_us: int | None = None,
    top_k: int = 5,
    sensor_map: str | None = None,
    compile: bool = False,
    cuda_graph: bool = False,
    trace: bool = False,
    channels_last: bool = False,
    smoothing: float = 0.6,
    firing: bool = True,
    energy_every: int = 10,
    keep_frames: bool = True,
    source_options: dict[str, Any] | None = None,
    max_queued_windows: int = 1,
    max_window_events: int | None = DEFAULT_MAX_WINDOW_EVENTS,
    status_interval_s: float = 1.0,
    drop_policy: str = "drop_oldest",
    warmup: bool = True,
    filters: str | None = None,
    runtime: str = "torch",
    record: str | None = None,
    record_raw: bool = False,
    record_max_mb: float | None = None,
    clip: bool = False,
    arch: str | None = None,
) -> LivePipeline:
    """Open a source, load a checkpoint and wire them into a (not yet started) :class:`LivePipeline`.

    Args:
        source_uri: see :func:`sdt3_event.stream.factory.open_source`; ``None`` = ``synthetic:``.
        source: the same as ``source_uri``, as a keyword (the monitor's spelling).
        checkpoint: an sdt3-event checkpoint or a bundled model's name (``demo``, ``nmnist``);
            ``None`` = the bundled demo model.
        spike_driven: run the spike-driven executor instead of the integer model.
        device: default CUDA when available, else CPU.
        window_us: live window; default the checkpoint's data contract window.
        stride_us: distance between windows; default half the window.
        top_k, smoothing, firing, energy_every, keep_frames, compile, cuda_graph, trace,
            channels_last: see :class:`~sdt3_event.stream.predictor.Predictor`.
        sensor_map: map a source sensor of another size onto the model input (one of
            ``SPATIAL_MODES``, or ``"auto"``: resize for the same aspect ratio, else letterbox);
            without it a mismatch raises. The URI's ``?sensor_map=`` sets it too.
        source_options: extra options for the source (``speed``, ``loop``, ...).
        max_queued_windows, max_window_events, status_interval_s, drop_policy: see
            :class:`LivePipeline`.
        warmup: run one forward pass before returning (and compile, with ``compile=True``).
        filters: event filters for every window (``"ba:2000,roi:0,0,320,240"``, see
            :mod:`sdt3_event.events.filters`) instead of the checkpoint contract's; ``""`` none.
        runtime: ``"torch"``, or ``"onnx"`` to run an ``.onnx`` file from
            :func:`sdt3_event.deploy.export_onnx` with onnxruntime (no firing statistics,
            energy or spike-driven executor there).
        record: write the stream to this AEDAT 4.0 file while inferring (see
            :class:`~sdt3_event.stream.recorder.EventRecorder`); the events after the filters,
            or as they came with ``record_raw``; rotated every ``record_max_mb`` MB.
        clip: clip mode for recordings of one sample each (N-MNIST ``.bin`` files): windows
            of the contract's length that do not overlap, each binned from its first event as
            in training (see :class:`~sdt3_event.stream.predictor.Predictor`).
        arch: the model name for a ``checkpoint`` that does not state it (a bare state_dict or
            an official checkpoint); see :func:`~sdt3_event.checkpoint.load_model_from_checkpoint`.

    Raises:
        FileNotFoundError: missing checkpoint or recording.
        ValueError: bad URI or option; a sensor that does not fit the contract (a
            :class:`~sdt3_event.stream.predictor.SensorMismatchError`).
    """
    from sdt3_event.checkpoint import load_model_from_checkpoint
    from sdt3_event.stream.predictor import Predictor, default_device

    if source_uri is not None and source is not None and source_uri != source:
        raise ValueError(f"two different sources given: {source_uri!r} and {source!r}")
    source_uri = source_uri or source or "synthetic:"
    from sdt3_event.assets import DEMO_CHECKPOINT, bundled_checkpoint

    checkpoint = DEMO_CHECKPOINT if checkpoint is None else bundled_checkpoint(checkpoint)
    if runtime == "onnx":
        from sdt3_event.deploy import load_onnx_model

        if spike_driven or compile:
            raise ValueError("the onnx runtime has no spike-driven executor and no torch.compile")
        device, firing, energy_every = "cpu", False, 0
        loaded = load_onnx_model(checkpoint)
    elif runtime == "torch":
        device = device or default_device()
        loaded = load_model_from_checkpoint(checkpoint, device=device, arch=arch)
    else:
        raise ValueError(f"runtime must be 'torch' or 'onnx', got {runtime!r}")
    contract = loaded.contract
    if filters is not None:
        contract = dataclasses.replace(contract, filters=filters)
    window_us = window_us or contract.window_us
    if window_us is None:
        raise ValueError(
            f"{checkpoint} was trained on whole clips (no window in its data contract); "
            "pass window_us (--window-us)"
        )
    if clip and stride_us is not None and stride_us != window_us:
        raise ValueError("clip mode takes one window per recording: leave stride_us unset")
    stride_us = window_us if clip else stride_us or max(1, window_us // 2)
    options = dict(source_options or {})
    scheme, _, query = split_uri(source_uri)
    sensor_map = sensor_map or query.get("sensor_map")  # ?sensor_map= is the pipeline's option
    # Emulated and synthetic sensors have no native size: make them the model's trained sensor.
    if scheme in ("webcam", "video") and "size" not in query and "size" not in options:
        options["size"] = tuple(contract.sensor_size[:2])
    if scheme == "synthetic":
        if "sensor" not in query and "sensor" not in options:
            options["sensor"] = tuple(contract.sensor_size)
        if "gesture_us" not in query and "gesture_us" not in options and contract.window_us:
            options["gesture_us"] = contract.window_us  # one gesture per trained window
    recorder = None
    if record is not None:
        from sdt3_event.stream.recorder import EventRecorder

        recorder = EventRecorder(
            record, filters="" if record_raw else contract.filters, max_mb=record_max_mb
        )
    stream = open_source(source_uri, **options)
    try:
        predictor = Predictor(
            loaded.model,
            contract,
            model_name=loaded.model_name,
            device=device,
            spike_driven=spike_driven,
            compile=compile,
            cuda_graph=cuda_graph,
            trace=trace,
            channels_last=channels_last,
            top_k=top_k,
            smoothing=smoothing,
            firing=firing,
            energy_every=energy_every,
            keep_frames=keep_frames,
            window_us=window_us,
            sensor_map=sensor_map,
            clip=clip,
        )
        if stream.sensor_size is not None:
            predictor.bind(stream.sensor_size)
        if warmup:
            predictor.warmup()
    except BaseException:
        stream.close()
        raise
    return LivePipeline(
        stream,
        predictor,
        recorder=recorder,
        window_us=window_us,
        stride_us=stride_us,
        max_queued_windows=max_queued_windows,
        max_window_events=max_window_events,
        status_interval_s=status_interval_s,
        drop_policy=drop_policy,
    )
