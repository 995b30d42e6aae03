"""Windows of events -> :class:`~sdt3_event.stream.records.Prediction` records.

The :class:`Predictor` owns the model and the event -> frame transform. The transform is built by
:func:`sdt3_event.events.transforms.build_frame_transform` from the checkpoint's data contract, the
same one training used; only the sensor geometry may be swapped for the live source's, and only when
the user asks for a spatial mapping (``sensor_map``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sdt3_event.events.contract import SPATIAL_MODES, DataContract, auto_spatial
from sdt3_event.events.representations import display_frame
from sdt3_event.events.schema import EVENT_DTYPE, SensorSize
from sdt3_event.stream.records import Prediction
from sdt3_event.stream.windowing import EventWindow

log = logging.getLogger(__name__)


class SensorMismatchError(ValueError):
    """The live source's sensor does not fit the model's data contract."""


@dataclass(frozen=True)
class LabeledPrediction(Prediction):
    """A :class:`Prediction` with the true class, for sources that know it (``synthetic:``)."""

    true_label: str | None = None


def live_contract(
    contract: DataContract,
    sensor_size: SensorSize,
    *,
    window_us: int | None = None,
    sensor_map: str | None = None,
) -> DataContract:
    """The contract to preprocess a live source with.

    Args:
        contract: the checkpoint's data contract.
        sensor_size: the source's ``(W, H, P)``.
        window_us: live window length; default the contract's.
        sensor_map: one of ``SPATIAL_MODES`` to map a sensor of another size onto the model input,
            or ``"auto"`` (``resize`` for the same aspect ratio, else ``letterbox``);
            ``None`` requires the source to have the trained sensor's width and height.

    Raises:
        SensorMismatchError: the sizes differ and no ``sensor_map`` was given.
        ValueError: neither the contract nor the caller gives a window length; unknown ``sensor_map``.
    """
    if sensor_map is not None and sensor_map not in ("auto", *SPATIAL_MODES):
        raise ValueError(f"sensor_map must be auto or one of {SPATIAL_MODES}, got {sensor_map!r}")
    window_us = window_us or contract.window_us
    if window_us is None:
        raise ValueError(
            "the checkpoint's data contract has no window length (it was trained on whole clips); "
            "pass window_us (--window-us) for live inference"
        )
    src_wh = tuple(int(v) for v in sensor_size[:2])
    model_wh = contract.sensor_size[:2]
    changes: dict[str, Any] = {"window_us": int(window_us)}
    if src_wh != model_wh:
        if sensor_map is None:
            raise SensorMismatchError(
                f"the source's sensor is {src_wh[0]}x{src_wh[1]} but the model was trained on "
                f"{model_wh[0]}x{model_wh[1]} (input {contract.input_size[1]}x"
                f"{contract.input_size[0]}); pass --sensor-map with one of {', '.join(SPATIAL_MODES)} "
                "to map the source onto the model input, or use a model trained for this sensor"
            )
        if sensor_map == "auto":
            sensor_map = auto_spatial(src_wh, contract.input_size)
            log.warning(
                "mapping the %dx%d source onto the model's %dx%d input with %s "
                "(--sensor-map chooses another mapping)",
                *src_wh,
                contract.input_size[1],
                contract.input_size[0],
                sensor_map,
            )
        changes["sensor_size"] = (*src_wh, contract.sensor_size[2])
        changes["spatial"] = sensor_map
    elif sensor_map not in (None, "auto"):
        changes["spatial"] = sensor_map
    return dataclasses.replace(contract, **changes)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Predictor:
    """Run one window of events through the model.

    Args:
        model: a classifier taking ``(B, T, P, H, W)`` frames and returning logits ``(B, classes)``;
            the predictor takes it over (moves it to ``device``, sets eval mode and the memory
            format), so pass a copy to keep using the original elsewhere.
        contract: the checkpoint's data contract.
        model_name: for the records.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        spike_driven: run the spike-driven executor (:func:`sdt3_event.spikes.to_spike_driven`).
        compile: wrap the model in :func:`torch.compile`.
        channels_last: channels-last memory format for the convolutions.
        top_k: how many classes each record lists.
        smoothing: EMA factor on the probabilities (``0`` = none): ``ema = s * ema + (1 - s) * p``.
        firing: record per-stage firing rates (:class:`sdt3_event.spikes.FiringRecorder`) for
            every window; off with ``compile=True`` (hooks and compiled graphs do not mix).
        energy_every: estimate the energy per inference (SOPs and MACs by the papers'
            convention, :mod:`sdt3_event.spikes.energy`) on every ``energy_every``-th window
            (``0`` = never); the other records carry ``energy_uj=None``. Counting costs several
            forward passes' time, hence not every window. With ``spike_driven`` the count runs
            on the integer model after the executor's pass (outside ``latency_ms``): the executor
            does exactly those operations, one accumulate per spike. Off with ``compile``.
        keep_frames: attach the ``(P, H, W)`` event-count frame to each record (for display).
        window_us / sensor_map: see :func:`live_contract`.
        transform_factory: ``contract -> transform``; default ``build_frame_transform``. The
            transform is called as ``transform(events, t_start_us=window_start)``.
        device_binning: bin each window on ``device`` (events go over in a pinned buffer, then a
            scatter-add into the frames); default on for CUDA. Otherwise the pipeline bins on the
            CPU as events arrive (:meth:`make_windower`) and only frames go over.
        cuda_graph: on CUDA, capture the forward pass in a CUDA graph and replay it (one launch
            instead of one per kernel); firing statistics and energy counting are then off, as
            with ``compile``. A model that cannot be captured runs eagerly (logged once).
        trace: run the forward pass as a TorchScript trace (:func:`torch.jit.trace`, per input
            shape): the same ATen operations, run by TorchScript without taking Python's GIL for
            each of them, so a busy reader thread no longer stalls the model (demo on CPU:
            about 30 % faster alone, about 40 % under a busy thread). The trace is used only where
            it gives the eager model's logits exactly on two random inputs (checked when traced);
            otherwise the model runs eagerly (logged once). Firing statistics are then off, as
            with ``compile``.
        clip: clip mode: every window is one whole recording, binned from its first event as
            training and evaluation bin a sample (``transform(events)``), and predicted on its
            own (no smoothing across windows).

    Raises:
        ValueError: ``top_k < 1`` or ``smoothing`` outside ``[0, 1)``.
    """

    def __init__(
        self,
        model: nn.Module,
        contract: DataContract,
        *,
        model_name: str = "",
        device: str | torch.device | None = None,
        spike_driven: bool = False,
        compile: bool = False,
        channels_last: bool = False,
        top_k: int = 5,
        smoothing: float = 0.6,
        firing: bool = True,
        energy_every: int = 10,
        keep_frames: bool = True,
        window_us: int | None = None,
        sensor_map: str | None = None,
        transform_factory: Callable[[DataContract], Callable] | None = None,
        device_binning: bool | None = None,
        cuda_graph: bool = False,
        trace: bool = False,
        clip: bool = False,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.device = torch.device(device or default_device())
        self.contract = contract
        self.model_name = model_name or type(model).__name__
        self.class_names = tuple(contract.class_names)
        self.top_k = int(top_k)
        self.clip = bool(clip)
        self.smoothing = 0.0 if self.clip else float(smoothing)
        self.keep_frames = keep_frames
        self.window_us = window_us
        self.sensor_map = sensor_map
        self.spike_driven = spike_driven
        model = model.to(self.device).eval()
        self.energy_every = 0 if compile else max(0, int(energy_every))
        # energy is counted on the integer model; a separate one only when the spike-driven
        # executor (a converted copy) runs the predictions (None: count on the predicting model)
        self._count_model = model if spike_driven and self.energy_every > 0 else None
        if spike_driven:
            model = _spike_driven(model, contract, self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._forward: Callable = torch.compile(model) if compile else model
        traced = trace and not compile
        if traced:
            self._forward = _TracedForward(model, self._reset_state)
        graphed = cuda_graph and self.device.type == "cuda"
        if graphed:
            self._forward = _GraphedForward(self._forward, self._reset_state)
            self.energy_every = 0
        self.firing = bool(firing) and not compile and not graphed and not traced
        self._graph = None
        self._calls = 0
        self._transform_factory = transform_factory
        self._transform: Callable | None = None
        self.live: DataContract | None = None
        self._ema: np.ndarray | None = None
        cuda = self.device.type == "cuda"
        self.device_binning = cuda if device_binning is None else bool(device_binning)
        self._staging: dict[str, Any] = {}  # reusable pinned host buffers (CUDA) and their events

    # -- setup -----------------------------------------------------------------------------------

    def bind(self, sensor_size: SensorSize) -> DataContract:
        """Build the transform for a source's sensor (see :func:`live_contract`).

        Raises:
            SensorMismatchError: the sensor does not fit and no ``sensor_map`` was given.
        """
        live = live_contract(
            self.contract, sensor_size, window_us=self.window_us, sensor_map=self.sensor_map
        )
        factory = self._transform_factory
        if factory is None:
            from sdt3_event.events.transforms import build_frame_transform

            factory = build_frame_transform
        self._transform = factory(live)
        if not getattr(self._transform, "device_bins", True):
            self.device_binning = False  # filters, voxel grids, time surfaces: on the CPU
        self.live = live
        return live

    @property
    def bound(self) -> bool:
        return self._transform is not None

    def warmup(self) -> None:
        """One forward pass on zeros (compiles the model when ``compile=True``); traces the spike
        graph for the energy estimate now rather than on the first window."""
        shape = (1, *self.contract.frame_shape)
        if self._transform is not None:  # load the binning kernel now, not on the first window
            one = np.zeros(1, EVENT_DTYPE)
            self._transform(one, t_start_us=0)
        with torch.inference_mode():
            self._reset_state()
            self._forward(torch.zeros(shape, device=self.device))
            if self.energy_every > 0 and self._graph is None:
                self._op_counter(_example(self.contract, self.device))
        self._sync()

    def reset(self) -> None:
        """Forget the smoothing state."""
        self._ema = None

    # -- inference -------------------------------------------------------------------------------

    def make_windower(self, window_us: int, stride_us: int | None = None):
        """A :class:`~sdt3_event.stream.windowing.FrameWindower` that bins events with this
        predictor's transform as they arrive, or ``None`` where windows must keep their events:
        clip mode, device binning, a representation that does not stream, a stride that is not a
        whole number of time bins, or a transform without ``add_events``.

        Raises:
            RuntimeError: called before :meth:`bind`.
        """
        from sdt3_event.stream.windowing import FrameWindower

        if self._transform is None or self.live is None:
            raise RuntimeError("call bind(sensor_size) before make_windower")
        if self.clip or self.device_binning or not getattr(self._transform, "streams", False):
            return None
        try:
            return FrameWindower(
                window_us, stride_us, self.live.frame_shape, self._transform.add_events
            )
        except ValueError as exc:
            log.info("binning whole windows: %s", exc)
            return None

    def frames(self, window: EventWindow) -> torch.Tensor:
        """The window as model input frames (binned already when the window carries them).

        Shape:
            returns ``(T, P, H, W)`` float32 on the CPU.
        """
        if window.frames is not None:
            return torch.from_numpy(window.frames)
        if self._transform is None:
            raise RuntimeError("call bind(sensor_size) before predicting")
        if self.clip:
            return self._transform(window.event_array())
        return self._transform(window.event_array(), t_start_us=window.start_us)

    def device_frames(self, window: EventWindow) -> torch.Tensor:
        """The window's frames on ``device``: with device binning the events go over (one pinned
        buffer, one copy) and are binned there; otherwise the CPU frames go over.

        Shape:
            returns ``(T, P, H, W)`` float32 on ``device``.
        """
        if window.frames is not None or not self.device_binning or self.clip:
            return self._upload("frames", self.frames(window))
        if self._transform is None:
            raise RuntimeError("call bind(sensor_size) before predicting")
        raw = self._stage_events(window)
        rec = raw.view(-1, EVENT_DTYPE.itemsize)  # (N, 13) bytes: t, x, y, p
        fields = [
            rec[:, a:b].reshape(-1).view(dtype)  # a contiguous copy of the column
            for a, b, dtype in ((0, 8, torch.int64), (8, 10, torch.int16), (10, 12, torch.int16))
        ]
        return self._transform.frames_torch(*fields, rec[:, 12], t_start_us=window.start_us)

    @property
    def takes_parts(self) -> bool:
        """Whether windows may come unjoined (:meth:`EventWindow.event_parts`): device binning
        on CUDA copies each part straight into the pinned buffer, so a joined copy is waste."""
        return self.device_binning and self._staged and not self.clip

    @property
    def _staged(self) -> bool:
        """Whether host data goes over through the reusable (pinned) buffers: on CUDA."""
        return self.device.type == "cuda"

    def _stage_events(self, window: EventWindow) -> torch.Tensor:
        """The window's events as raw bytes ``[N * 13]`` uint8 on ``device``: on CUDA each part
        is copied once, into the pinned buffer, and goes over from there."""
        if not self._staged:  # a joined window goes over as it is, without a copy
            events = np.ascontiguousarray(window.event_array(), dtype=EVENT_DTYPE)
            return torch.from_numpy(events.view(np.uint8)).to(self.device)
        parts = [
            np.ascontiguousarray(p, dtype=EVENT_DTYPE).view(np.uint8) for p in window.event_parts()
        ]
        staged = self._pinned("events", torch.uint8, sum(len(p) for p in parts))
        host, at = staged.numpy(), 0  # the pinned memory, as numpy (parts are read-only)
        for p in parts:
            host[at : at + len(p)] = p
            at += len(p)
        return self._send("events", staged)

    def _upload(self, key: str, host: torch.Tensor) -> torch.Tensor:
        """``host`` on ``device``, through a reusable pinned buffer on CUDA."""
        if not self._staged:
            return host.to(self.device)
        flat = host.reshape(-1)
        staged = self._pinned(key, flat.dtype, flat.numel())
        staged.copy_(flat)
        return self._send(key, staged).view(host.shape)

    def _pinned(self, key: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        """The first ``n`` elements of the reusable pinned buffer ``key``, free to be written:
        grown when too small, and the previous copy out of it finished."""
        buf = self._staging.get(key)
        if buf is None or buf.dtype != dtype or buf.numel() < n:
            size = max(n, int(1.5 * (0 if buf is None else buf.numel())))
            buf = self._staging[key] = torch.empty(size, dtype=dtype, pin_memory=True)
        done = self._staging.get(key + ":copied")
        if done is not None:
            done.synchronize()  # the previous copy out of this buffer has finished
        return buf[:n]

    def _send(self, key: str, staged: torch.Tensor) -> torch.Tensor:
        """``staged`` (pinned) on the device, copied asynchronously; the copy's end is recorded
        so that :meth:`_pinned` does not overwrite the buffer before it."""
        on_device = staged.to(self.device, non_blocking=True)
        event = self._staging[key + ":copied"] = torch.cuda.Event()
        event.record()
        return on_device

    def __call__(self, window: EventWindow, true_label: str | None = None) -> Prediction:
        """Predict one window.

        Returns:
            a :class:`Prediction` (a :class:`LabeledPrediction` when ``true_label`` is given);
            ``latency_ms`` counts from ``window.arrival`` to the end of the forward pass.
        """
        frames = self.device_frames(window)  # (T, P, H, W) on the device
        x = frames.unsqueeze(0)  # (1, T, P, H, W)
        firing: dict[str, float] = {}
        energy = None
        measure_energy = self.energy_every > 0 and self._calls % self.energy_every == 0
        self._calls += 1
        with torch.inference_mode(), contextlib.ExitStack() as stack:
            self._reset_state()
            rec = counter = None
            if self.firing:
                from sdt3_event.spikes import FiringRecorder

                rec = stack.enter_context(FiringRecorder(self.model))
            if measure_energy and self._count_model is None:
                counter = stack.enter_context(self._op_counter(x))
            logits = self._forward(x)
            probs = torch.softmax(logits.float(), dim=-1)[0].cpu().numpy()  # (classes,)
        done = time.perf_counter()
        if measure_energy and self._count_model is not None:
            with torch.inference_mode(), self._op_counter(x) as counter:
                self._reset_state(self._count_model)
                self._count_model(x)
        if rec is not None:
            firing = {k: float(v) for k, v in rec.stage_rates().items()}
        if counter is not None:
            from sdt3_event.spikes.energy import energy_from_counts

            energy = energy_from_counts(counter.layers.values(), 1).energy_pj * 1e-6  # pJ -> µJ
        if self._ema is None or self._ema.shape != probs.shape or self.smoothing == 0:
            self._ema = probs.copy()
        else:
            self._ema = self.smoothing * self._ema + (1 - self.smoothing) * probs
        k = min(self.top_k, len(probs))
        top = np.argsort(-probs, kind="stable")[:k]
        best = int(np.argmax(self._ema))
        duration = window.end_us - window.start_us
        fields = dict(
            window_start_us=int(window.start_us),
            window_end_us=int(window.end_us),
            labels=tuple(self._name(i) for i in top),
            scores=tuple(float(probs[i]) for i in top),
            smoothed_label=self._name(best),
            smoothed_score=float(self._ema[best]),
            latency_ms=(done - window.arrival) * 1e3,
            n_events=int(window.n_events),
            event_rate_mev_s=window.n_events / duration if duration > 0 else 0.0,
            firing=firing,
            energy_uj=energy,
            wall_time=time.time(),
            frame=display_frame(self.contract, frames) if self.keep_frames else None,
        )
        if true_label is not None:
            return LabeledPrediction(**fields, true_label=true_label)
        return Prediction(**fields)

    def _op_counter(self, x: torch.Tensor):
        from sdt3_event.spikes import OpCounter, trace_spike_graph

        model = self._count_model if self._count_model is not None else self.model
        if self._graph is None:
            self._graph = trace_spike_graph(model, x)
            self._reset_state(model)
        return OpCounter(model, self._graph)

    def _name(self, i: int) -> str:
        return self.class_names[i] if i < len(self.class_names) else str(i)

    def _reset_state(self, model: nn.Module | None = None) -> None:
        reset = getattr(self.model if model is None else model, "reset_state", None)
        if callable(reset):
            reset()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class _TracedForward:
    """The model's forward pass as a TorchScript trace per input shape, used only where it gives
    the eager model's logits exactly (checked on two random inputs when traced); otherwise, and
    when tracing fails, the model runs eagerly from then on (logged once)."""

    def __init__(self, model: nn.Module, reset: Callable[[], None]) -> None:
        self.model, self.reset = model, reset
        self.traced: dict[tuple, Callable] = {}
        self.failed = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.model(x)
        key = (tuple(x.shape), x.dtype, x.device)
        fn = self.traced.get(key)
        if fn is None:
            try:
                fn = self.traced[key] = self._trace(x)
            except Exception as exc:  # an optional speed-up: never fail the stream for it
                log.warning("tracing the model failed (%s); running it eagerly", exc)
                self.failed = True
                self.reset()
                return self.model(x)
        return fn(x)

    def _trace(self, x: torch.Tensor) -> Callable:
        import warnings

        with warnings.catch_warnings():  # shape checks become constants: one trace per shape
            warnings.simplefilter("ignore")
            self.reset()
            fn = torch.jit.trace(self.model, torch.zeros_like(x), check_trace=False)
        gen = torch.Generator(device="cpu").manual_seed(0)
        for _ in range(2):  # a state baked in as a constant would show here
            probe = (torch.rand(x.shape, generator=gen) < 0.2).to(x.device, x.dtype) * 2
            self.reset()
            want = self.model(probe)
            self.reset()
            if not torch.equal(fn(probe), want):
                raise RuntimeError("the trace's logits differ from the eager model's")
        self.reset()
        return fn


class _GraphedForward:
    """A forward pass captured once in a CUDA graph (per input shape) and replayed.

    The model must start from rest on every call (the SDT models do: no state leaks between
    calls) and must not synchronise with the host inside ``forward``; when capturing fails, the
    model runs eagerly from then on.
    """

    def __init__(self, forward: Callable, reset: Callable[[], None]) -> None:
        self.forward, self.reset = forward, reset
        self.graph = None
        self.failed = False
        self.static_in: torch.Tensor | None = None
        self.static_out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.forward(x)
        if self.graph is None or self.static_in.shape != x.shape:
            try:
                self._capture(x)
            except Exception as exc:  # an optional speed-up: never fail the stream for it
                log.warning("CUDA graph capture failed (%s); running the model eagerly", exc)
                self.failed, self.graph = True, None
                torch.cuda.synchronize()
                self.reset()
                return self.forward(x)
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out

    def _capture(self, x: torch.Tensor) -> None:
        self.static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up (allocator, cuDNN plans) off the capture
            for _ in range(3):
                self.reset()
                self.forward(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.reset()
        with torch.cuda.graph(graph):
            self.static_out = self.forward(self.static_in)
        self.graph = graph


def _spike_driven(model: nn.Module, contract: DataContract, device: torch.device) -> nn.Module:
    """The spike-driven executor of ``model``, traced on an input of the contract's shape."""
    try:
        from sdt3_event.spikes import to_spike_driven
    except ImportError:
        from sdt3_event.spikes.executor import to_spike_driven
    return to_spike_driven(model, _example(contract, device)).eval()


def _example(contract: DataContract, device: torch.device) -> torch.Tensor:
    """A fixed random input of the contract's shape, for tracing.

    Shape:
        ``(1, T, P, H, W)``.
    """
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 3, (1, *contract.frame_shape), generator=gen).float().to(device)
