"""Event transforms (Tonic-compatible frozen dataclasses) and THE frame transform builder.

Every transform here is a frozen, picklable dataclass whose ``__call__`` takes a structured event
array (fields ``t``, ``x``, ``y``, ``p``; any field order, so Tonic's data sets work too) and returns
a new one; the input is never modified. They compose with ``tonic.transforms.Compose``.

Spatial transforms act on **events** (coordinates), not on frames: :class:`SpatialResize` scales
coordinates, so every event still counts once (a 2x downscale sums 2x2 pixels), and crops drop the
events outside the kept box. Random transforms draw once per call, i.e. once per sample or clip
(one flip for the whole clip, never per frame).

:func:`build_frame_transform` turns a :class:`~sdt3_event.events.contract.DataContract` into the one
callable ``events -> torch.float32 (T, P, H, W)`` used by training, evaluation and live inference.

Randomness is passed in: every random transform (a :class:`RandomTransform`) is called as
``transform(events, rng=generator)`` with a :class:`numpy.random.Generator`. The data sets
(:class:`~sdt3_event.datasets._common.EventDataset`) own one generator each and hand it to their
transform (:func:`call_transform`); :func:`~sdt3_event.events.loader.seed_worker` seeds it in
every DataLoader worker from the worker's seed, so workers never repeat each other and a seeded run
repeats. A direct call without ``rng`` (Tonic style, ``transform(events)``) draws a generator from
NumPy's global random state (:func:`default_generator`), the state Tonic's own transforms use, so
``np.random.seed`` repeats it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sdt3_event.events.contract import DataContract
from sdt3_event.events.filters import apply_filters, parse_filters
from sdt3_event.events.frames import (
    SensorMap,
    count_window_mapped,
    count_window_mapped_torch,
    to_window_frames,
)
from sdt3_event.events.representations import WINDOW_REPRESENTATIONS, window_representation

__all__ = [
    "RandomTransform",
    "call_transform",
    "default_generator",
    "SpatialResize",
    "CenterCrop",
    "CropOrPad",
    "RandomCrop",
    "RandomTranslate",
    "RandomAffine",
    "RandomElastic",
    "RandomFlipLR",
    "RandomFlipPolarity",
    "EventDrop",
    "DropByTime",
    "DropByArea",
    "DropRandom",
    "RandomTimeCrop",
    "TimeJitter",
    "SpatialJitter",
    "FrameTransform",
    "build_frame_transform",
]


def default_generator() -> np.random.Generator:
    """A generator for a random transform called without ``rng``: seeded by one draw from NumPy's
    global random state (``np.random``), which Tonic's transforms use, ``np.random.seed`` sets and
    PyTorch seeds in every DataLoader worker."""
    return np.random.default_rng(np.random.randint(2**63 - 1, dtype=np.int64))


def _or_default(rng: np.random.Generator | None) -> np.random.Generator:
    return default_generator() if rng is None else rng


class RandomTransform:
    """Base of the transforms that draw random numbers: call one as ``transform(events, rng=g)``
    with a :class:`numpy.random.Generator` ``g`` (``None``: :func:`default_generator`)."""


def call_transform(transform: Callable, sample, rng: np.random.Generator | None):
    """``transform(sample)``, handing ``rng`` to a :class:`RandomTransform`; any other callable
    (a Tonic transform, a lambda) is called with the sample alone."""
    if isinstance(transform, RandomTransform):
        return transform(sample, rng=rng)
    return transform(sample)


def _wh(sensor_size) -> tuple[int, int]:
    return int(sensor_size[0]), int(sensor_size[1])


def _shift_and_keep(
    events: np.ndarray, dx: int | np.ndarray, dy: int | np.ndarray, w: int, h: int
) -> np.ndarray:
    """Shift coordinates by ``(dx, dy)`` (numbers, or one per event) and keep the events inside
    ``[0, w) x [0, h)``."""
    x = events["x"].astype(np.int64) + dx
    y = events["y"].astype(np.int64) + dy
    return _place_and_keep(events, x, y, w, h)


def _place_and_keep(events: np.ndarray, x: np.ndarray, y: np.ndarray, w: int, h: int) -> np.ndarray:
    """The events at the new coordinates ``x``, ``y`` (int64, one per event), those inside
    ``[0, w) x [0, h)`` only."""
    keep = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    out = events[keep]  # a copy
    out["x"] = x[keep]
    out["y"] = y[keep]
    return out


@dataclass(frozen=True)
class _SensorToSize:
    """The fields of a transform from the sensor to a ``size`` canvas.

    Args:
        sensor_size: ``(W, H, P)`` of the input events.
        size: ``(H', W')`` of the output.
    """

    sensor_size: tuple[int, int, int]
    size: tuple[int, int]

    def dims(self) -> tuple[int, int, int, int]:
        """``(W, H, W', H')``: the sensor's width and height, then the output's."""
        w, h = _wh(self.sensor_size)
        return w, h, int(self.size[1]), int(self.size[0])

    def check_crop(self, remedy: str = "") -> None:
        """Raise ValueError (with ``remedy``) when ``size`` does not fit inside the sensor."""
        w, h, out_w, out_h = self.dims()
        if out_h > h or out_w > w:
            raise ValueError(
                f"{type(self).__name__} size {tuple(self.size)} (H, W) exceeds the {w}x{h} sensor"
                + (f"; {remedy}" if remedy else "")
            )


@dataclass(frozen=True)
class SpatialResize(_SensorToSize):
    """Scale coordinates from ``sensor_size`` to ``size`` (on events; every event is kept).

    ``x' = floor(x * W' / W)``, ``y' = floor(y * H' / H)`` in exact integer arithmetic, so the frame
    of the result equals the source frame summed over the pixels that map together.
    """

    def __call__(self, events: np.ndarray) -> np.ndarray:
        w, h, out_w, out_h = self.dims()
        out = events.copy()
        if (w, h) == (out_w, out_h):
            return out
        out["x"] = events["x"].astype(np.int64) * out_w // w
        out["y"] = events["y"].astype(np.int64) * out_h // h
        return out


@dataclass(frozen=True)
class CropOrPad(_SensorToSize):
    """Centre the sensor on an ``size`` canvas: crop where it is larger, pad where it is smaller
    (arguments as :class:`SpatialResize`)."""

    def __call__(self, events: np.ndarray) -> np.ndarray:
        w, h, out_w, out_h = self.dims()
        # Floor division of the difference: for odd differences the extra row/column is cut at
        # the bottom/right (crop) or added at the bottom/right (pad).
        return _shift_and_keep(events, (out_w - w) // 2, (out_h - h) // 2, out_w, out_h)


@dataclass(frozen=True)
class Letterbox(SpatialResize):
    """Scale the sensor onto a ``size`` canvas by one factor for both axes, keeping its aspect
    ratio, and centre it; the bands left over stay empty (no squashing, nothing cut).

    The factor is ``min(W' / W, H' / H)`` as an exact fraction, so coordinates map in integer
    arithmetic like :class:`SpatialResize` (same arguments).
    """

    def __call__(self, events: np.ndarray) -> np.ndarray:
        w, h, out_w, out_h = self.dims()
        num, den = (out_w, w) if out_w * h <= out_h * w else (out_h, h)  # factor num / den
        new_w, new_h = -(-w * num // den), -(-h * num // den)  # ceil: every pixel lands inside
        out = events.copy()
        out["x"] = events["x"].astype(np.int64) * num // den + (out_w - new_w) // 2
        out["y"] = events["y"].astype(np.int64) * num // den + (out_h - new_h) // 2
        return out


@dataclass(frozen=True)
class CenterCrop(_SensorToSize):
    """Keep the centred ``size`` box of the sensor (events outside are dropped).

    Raises:
        ValueError: ``size`` larger than the sensor (use :class:`CropOrPad`).
    """

    def __post_init__(self) -> None:
        self.check_crop("use CropOrPad or spatial='pad'")

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return CropOrPad(self.sensor_size, self.size)(events)


@dataclass(frozen=True)
class RandomCrop(_SensorToSize, RandomTransform):
    """Keep a random ``size`` box of the sensor (one box per call), shifted to the origin.

    Raises:
        ValueError: ``size`` larger than the sensor.
    """

    def __post_init__(self) -> None:
        self.check_crop()

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        w, h = _wh(self.sensor_size)
        rng = _or_default(rng)
        x0 = int(rng.integers(0, w - self.size[1] + 1))
        y0 = int(rng.integers(0, h - self.size[0] + 1))
        return _shift_and_keep(events, -x0, -y0, int(self.size[1]), int(self.size[0]))


@dataclass(frozen=True)
class RandomTranslate(RandomTransform):
    """Shift all events by a random integer offset up to ``max_shift`` pixels (same sensor size).

    Events shifted off the sensor are dropped.
    """

    sensor_size: tuple[int, int, int]
    max_shift: tuple[int, int] = (8, 8)

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        w, h = _wh(self.sensor_size)
        rng = _or_default(rng)
        dx = int(rng.integers(-self.max_shift[0], self.max_shift[0] + 1))
        dy = int(rng.integers(-self.max_shift[1], self.max_shift[1] + 1))
        return _shift_and_keep(events, dx, dy, w, h)


@dataclass(frozen=True)
class RandomAffine(RandomTransform):
    """Rotate and scale all events about the sensor's centre by one random draw per call (the
    event counterpart of torchvision's ``RandomAffine`` without shear or translation).

    The angle is uniform in ``[-degrees, degrees]`` and the scale uniform in
    ``[1 - scale_jitter, 1 + scale_jitter]``; coordinates are rounded to the nearest pixel and
    events mapped off the sensor are dropped.

    Args:
        sensor_size: ``(W, H, P)``.
        degrees: largest rotation, >= 0.
        scale_jitter: largest relative zoom in or out, in ``[0, 1)``.

    Raises:
        ValueError: a negative ``degrees`` or ``scale_jitter`` outside ``[0, 1)``.
    """

    sensor_size: tuple[int, int, int]
    degrees: float = 10.0
    scale_jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.degrees < 0 or not 0 <= self.scale_jitter < 1:
            raise ValueError(
                f"RandomAffine needs degrees >= 0 and 0 <= scale_jitter < 1, got {self.degrees}, "
                f"{self.scale_jitter}"
            )

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        w, h = _wh(self.sensor_size)
        rng = _or_default(rng)
        angle = np.deg2rad(rng.uniform(-self.degrees, self.degrees))
        scale = rng.uniform(1 - self.scale_jitter, 1 + self.scale_jitter)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        x = events["x"].astype(np.float64) - cx
        y = events["y"].astype(np.float64) - cy
        cos, sin = scale * np.cos(angle), scale * np.sin(angle)
        new_x = np.rint(cos * x - sin * y + cx).astype(np.int64)
        new_y = np.rint(sin * x + cos * y + cy).astype(np.int64)
        return _place_and_keep(events, new_x, new_y, w, h)


@functools.lru_cache(maxsize=16)
def _gaussian_blur_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` matrix of a 1-D Gaussian blur of std ``sigma`` samples; each row sums to 1, so
    the kernel is renormalised where it meets the border."""
    i = np.arange(n, dtype=np.float64)
    k = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
    k /= k.sum(axis=1, keepdims=True)
    k.setflags(write=False)
    return k


@dataclass(frozen=True)
class RandomElastic(RandomTransform):
    """Move events by a smooth random displacement field, one field per call: the elastic
    distortion of Simard et al. (2003), the event counterpart of torchvision's
    ``ElasticTransform``.

    Each axis of the field is uniform noise in ``[-1, 1]`` per pixel, blurred by a Gaussian of
    std ``sigma`` pixels and scaled by ``alpha`` pixels. Every event moves by the field at its
    pixel, the same at every time. The new coordinates are rounded stochastically (up with
    probability equal to the fraction), so a stretched area keeps its event density instead of
    opening empty seams between pixels; events moved off the sensor are dropped. ``alpha=34``,
    ``sigma=5`` moves a pixel by about 1.1 px (std) on a 34×34 sensor.

    Args:
        sensor_size: ``(W, H, P)``.
        alpha: field scale in pixels, >= 0 (0 leaves the events where they are).
        sigma: smoothness: std of the Gaussian in pixels, > 0.

    Raises:
        ValueError: a negative ``alpha`` or a ``sigma`` that is not positive.
    """

    sensor_size: tuple[int, int, int]
    alpha: float = 34.0
    sigma: float = 5.0

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and self.sigma > 0):
            raise ValueError(
                f"RandomElastic needs alpha >= 0 and sigma > 0, got alpha={self.alpha}, "
                f"sigma={self.sigma}"
            )

    def displacement(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One random field: ``(dx, dy)``, each ``(H, W)`` float64 pixels."""
        w, h = _wh(self.sensor_size)
        noise = _or_default(rng).uniform(-1.0, 1.0, size=(2, h, w))
        gh = _gaussian_blur_matrix(h, float(self.sigma))
        gw = _gaussian_blur_matrix(w, float(self.sigma))
        dx, dy = (self.alpha * (gh @ plane @ gw.T) for plane in noise)
        return dx, dy

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        w, h = _wh(self.sensor_size)
        rng = _or_default(rng)
        dx, dy = self.displacement(rng)
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        xi, yi = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
        dither = rng.random((2, len(events)))
        new_x = np.floor(x + dx[yi, xi] + dither[0]).astype(np.int64)
        new_y = np.floor(y + dy[yi, xi] + dither[1]).astype(np.int64)
        return _place_and_keep(events, new_x, new_y, w, h)


@dataclass(frozen=True)
class RandomFlipLR(RandomTransform):
    """Mirror the x axis with probability ``p`` (one decision per call, i.e. per clip)."""

    sensor_size: tuple[int, int, int]
    p: float = 0.5

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        out = events.copy()
        if _or_default(rng).uniform() < self.p:
            out["x"] = int(self.sensor_size[0]) - 1 - events["x"].astype(np.int64)
        return out


@dataclass(frozen=True)
class RandomFlipPolarity(RandomTransform):
    """Swap ON and OFF with probability ``p`` (one decision per call)."""

    p: float = 0.5

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        out = events.copy()
        if _or_default(rng).uniform() < self.p:
            if out.dtype["p"] == np.bool_:
                out["p"] = ~events["p"]
            else:
                out["p"] = 1 - events["p"]
        return out


@dataclass(frozen=True)
class DropByTime(RandomTransform):
    """Drop the events of one random time interval covering ``ratio`` of the recording.

    ``ratio`` is fixed or a ``(low, high)`` range drawn per call.
    """

    ratio: float | tuple[float, float] = (0.1, 0.5)

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if len(events) == 0:
            return events.copy()
        rng = _or_default(rng)
        r = self.ratio if np.isscalar(self.ratio) else rng.uniform(*self.ratio)
        t = events["t"]
        t0, t1 = int(t.min()), int(t.max())
        span = (t1 - t0) * float(r)
        start = t0 + rng.uniform(0, max(t1 - t0 - span, 0))
        keep = (t < start) | (t >= start + span)
        return events[keep]


@dataclass(frozen=True)
class DropByArea(RandomTransform):
    """Drop the events of one random box covering ``ratio`` of each sensor side.

    ``ratio`` is fixed or a ``(low, high)`` range drawn per call.
    """

    sensor_size: tuple[int, int, int]
    ratio: float | tuple[float, float] = (0.05, 0.25)

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _or_default(rng)
        w, h = _wh(self.sensor_size)
        r = self.ratio if np.isscalar(self.ratio) else rng.uniform(*self.ratio)
        bw, bh = max(int(round(w * float(r))), 1), max(int(round(h * float(r))), 1)
        x0 = int(rng.integers(0, w - bw + 1))
        y0 = int(rng.integers(0, h - bh + 1))
        x, y = events["x"], events["y"]
        inside = (x >= x0) & (x < x0 + bw) & (y >= y0) & (y < y0 + bh)
        return events[~inside]


@dataclass(frozen=True)
class DropRandom(RandomTransform):
    """Drop each event independently with probability ``ratio`` (fixed or a range per call)."""

    ratio: float | tuple[float, float] = (0.1, 0.5)

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _or_default(rng)
        r = self.ratio if np.isscalar(self.ratio) else rng.uniform(*self.ratio)
        return events[rng.uniform(0, 1, len(events)) >= float(r)]


@dataclass(frozen=True)
class EventDrop(RandomTransform):
    """EventDrop (Gu et al., 2021): per call, one of identity, drop by time, by area or at random.

    Args:
        sensor_size: ``(W, H, P)``.
        modes: the strategies to choose from, uniformly: any of ``"none"``, ``"time"``,
            ``"area"``, ``"random"``.
    """

    sensor_size: tuple[int, int, int]
    modes: tuple[str, ...] = ("none", "time", "area", "random")

    def __post_init__(self) -> None:
        valid = ("none", "time", "area", "random")
        bad = [m for m in self.modes if m not in valid]
        if bad or not self.modes:
            raise ValueError(f"EventDrop modes must be a non-empty subset of {valid}, got {bad}")

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _or_default(rng)
        mode = self.modes[int(rng.integers(len(self.modes)))]
        if mode == "time":
            return DropByTime()(events, rng)
        if mode == "area":
            return DropByArea(self.sensor_size)(events, rng)
        if mode == "random":
            return DropRandom()(events, rng)
        return events.copy()


@dataclass(frozen=True)
class RandomTimeCrop(RandomTransform):
    """Keep a random ``duration_us`` stretch of the recording (all of it when shorter)."""

    duration_us: int

    def __post_init__(self) -> None:
        if self.duration_us <= 0:
            raise ValueError(f"duration_us must be > 0, got {self.duration_us}")

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if len(events) == 0:
            return events.copy()
        t = events["t"]
        t0, t1 = int(t.min()), int(t.max())
        if t1 - t0 < self.duration_us:
            return events.copy()
        start = t0 + int(_or_default(rng).integers(0, t1 - t0 - self.duration_us + 2))
        return events[(t >= start) & (t < start + self.duration_us)]


@dataclass(frozen=True)
class TimeJitter(RandomTransform):
    """Add Gaussian noise of ``std_us`` to timestamps, then re-sort; negative times are clipped."""

    std_us: float = 100.0

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        out = events.copy()
        if len(out) == 0 or self.std_us <= 0:
            return out
        t = events["t"] + np.rint(_or_default(rng).normal(0, self.std_us, len(out))).astype(
            np.int64
        )
        out["t"] = np.maximum(t, 0)
        return out[np.argsort(out["t"], kind="stable")]


@dataclass(frozen=True)
class SpatialJitter(RandomTransform):
    """Move every event by its own rounded Gaussian offset of ``std_px`` pixels in x and y
    (Tonic's ``SpatialJitter`` with ``clip_outliers=True``): events moved off the sensor are
    dropped."""

    sensor_size: tuple[int, int, int]
    std_px: float = 1.0

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if len(events) == 0 or self.std_px <= 0:
            return events.copy()
        w, h = _wh(self.sensor_size)
        d = np.rint(_or_default(rng).normal(0, self.std_px, (2, len(events)))).astype(np.int64)
        return _shift_and_keep(events, d[0], d[1], w, h)  # a shift per event


@dataclass(frozen=True)
class FrameTransform(RandomTransform):
    """``events -> torch.float32 (T, P, H, W)`` as a data contract prescribes (see
    :func:`build_frame_transform`).

    Steps: event augmentations (training only), the time window, the contract's event filters,
    the spatial mapping to ``input_size`` (on events), binning into ``T`` equal bins,
    representation (counts, binary, voxel grid, time surface) and clamp.

    The window: with ``contract.window_us`` set and ``t_start_us`` given, exactly
    ``[t_start_us, t_start_us + window_us)`` (live inference); without ``t_start_us`` a recording
    shorter than the window starts at its first event, a longer one is cut to a random window
    (training) or the centred window (evaluation). With ``window_us = None`` the whole recording,
    from its first to its last event, is split into ``T`` bins. A window without events gives
    all-zero frames of the right shape.

    Call it as ``transform(events, t_start_us=None, rng=None)``: a training transform draws its
    augmentations and window from ``rng`` (see :class:`RandomTransform`).

    Attributes:
        contract: the data contract.
        train: random window placement.
        augmentations: event transforms applied first (training only).
    """

    contract: DataContract
    train: bool = False
    augmentations: tuple = field(default=())

    def window(
        self,
        events: np.ndarray,
        t_start_us: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[int, int]:
        """The ``[start, end)`` window (µs) this transform bins for ``events`` (a training
        transform places a long recording's window with ``rng``)."""
        c = self.contract
        t = events["t"]
        if c.window_us is None:
            if t_start_us is not None:
                raise ValueError("t_start_us needs a contract with window_us set")
            if len(t) == 0:
                return 0, 1
            return int(t[0]), int(t[-1]) + 1
        if t_start_us is not None:
            return int(t_start_us), int(t_start_us) + c.window_us
        if len(t) == 0:
            return 0, c.window_us
        first, last = int(t[0]), int(t[-1])
        span = last - first + 1
        if span <= c.window_us:
            start = first
        elif self.train:
            start = first + int(_or_default(rng).integers(0, span - c.window_us + 1))
        else:
            start = first + (span - c.window_us) // 2
        return start, start + c.window_us

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("sensor_map", None)  # a cache (it may hold device tensors): rebuilt on use
        return state

    @functools.cached_property
    def sensor_map(self) -> SensorMap:
        """The contract's spatial mapping as lookup tables (built once, on first use)."""
        return _sensor_map(self.contract)

    def __call__(
        self,
        events: np.ndarray,
        t_start_us: int | None = None,
        rng: np.random.Generator | None = None,
    ):
        import torch

        c = self.contract
        if self.train:
            rng = _or_default(rng)  # one generator for the augmentations and the window
            for aug in self.augmentations:
                events = call_transform(aug, events, rng)
        start, end = self.window(events, t_start_us, rng)
        cut = bool(len(events)) and (t_start_us is not None or c.window_us is not None)
        return torch.from_numpy(self._bin(events, start, end, cut))  # (T, P, H, W)

    def _bin(self, events: np.ndarray, start: int, end: int, cut: bool) -> np.ndarray:
        """The representation of ``[start, end)``: ``(T, P, H, W)`` float32.

        ``count`` and ``binary`` (counts clamped at 1) take one compiled pass (window, sensor
        map, bins, polarity, clamp); the step-by-step path serves other dtypes and raises the
        detailed errors. A new representation adds its branch here (and in :attr:`streams`,
        :meth:`frames_torch` when it can stream or run on a device).
        """
        c = self.contract
        if not self.device_bins:  # filters, voxel grids and time surfaces go step by step
            return self._frames_stepwise(events, start, end, cut)
        frames = count_window_mapped(
            events,
            self.sensor_map,
            c.n_time_bins,
            c.in_chans,
            start,
            end,
            clamp=self._clamp,
            check_all=not cut,
        )
        if frames is None:
            frames = self._frames_stepwise(events, start, end, cut)
        return frames

    def frames_torch(self, t, x, y, p, t_start_us: int):
        """The frames of the live window starting at ``t_start_us`` from event fields that are
        torch tensors on any device (a scatter-add there); equal to ``self(events, t_start_us)``.

        Args:
            t / x / y / p: the events' fields ``[N]`` on one device.
            t_start_us: the window start.

        Shape:
            returns ``(T, P, H, W)`` float32 on the events' device.

        Raises:
            ValueError: a training transform (its augmentations work on numpy events), or events
                outside the sensor.
        """
        if self.train:
            raise ValueError("frames_torch serves inference; build the transform with train=False")
        if not self.device_bins:
            raise ValueError(
                f"frames_torch bins count/binary frames without filters, not "
                f"{self.contract.representation!r} with filters {self.contract.filters!r}"
            )
        c = self.contract
        start, end = self.window(np.zeros(0, [("t", "<i8")]), t_start_us)
        return count_window_mapped_torch(
            t, x, y, p, self.sensor_map, c.n_time_bins, c.in_chans, start, end, clamp=self._clamp
        )

    @property
    def device_bins(self) -> bool:
        """Whether the compiled binner and :meth:`frames_torch` apply: count or binary frames
        without event filters."""
        c = self.contract
        return c.representation in ("count", "binary") and not c.filters

    @property
    def streams(self) -> bool:
        """Whether :meth:`add_events` can bin a stream chunk by chunk (count and binary
        representations with the compiled kernel; others bin whole windows)."""
        from sdt3_event.events.frames import _window_kernel

        return self.device_bins and _window_kernel() is not None

    def add_events(
        self, events: np.ndarray, t_start_us: int, t_end_us: int, out: np.ndarray
    ) -> None:
        """Add the events of ``[t_start_us, t_end_us)`` to one time bin's counts ``out``.

        Streaming: bins of a live window filled chunk by chunk as events arrive equal the frames
        of the whole window (:meth:`__call__`) when the bins' edges are the window's.

        Args:
            events: validated events of ``EVENT_DTYPE`` inside the source's sensor.
            t_start_us / t_end_us: the time bin.
            out: ``(1, P, H, W)`` float32 counts, updated in place.

        Raises:
            ValueError: events the kernel cannot place (outside the sensor, bad polarity).
        """
        frames = count_window_mapped(
            events,
            self.sensor_map,
            1,
            self.contract.in_chans,
            t_start_us,
            t_end_us,
            clamp=self._clamp,
            out=out,
        )
        if frames is None:
            raise ValueError(
                "events outside the sensor or the polarity channels reached the stream binner"
            )

    @property
    def _clamp(self) -> int | None:
        c = self.contract
        return 1 if c.representation == "binary" else c.clamp

    def _frames_stepwise(self, events: np.ndarray, start: int, end: int, cut: bool) -> np.ndarray:
        """Window cut, spatial transform, polarity merge, then :func:`to_window_frames`."""
        c = self.contract
        n_pol = c.in_chans
        if cut:
            t = events["t"]
            events = events[(t >= start) & (t < end)]
        if len(events) and c.filters:
            events = apply_filters(events, parse_filters(c.filters))
        if len(events):
            events = _spatial(c)(events)
            if n_pol == 1:  # a single-channel contract merges the polarities
                events["p"] = 0
        if c.representation in WINDOW_REPRESENTATIONS:
            return window_representation(c, events, start, end)  # (T, P, H, W)
        return to_window_frames(
            events,
            (c.input_size[1], c.input_size[0], n_pol),
            c.n_time_bins,
            start,
            end,
            clamp=self._clamp,
            dtype=np.float32,
        )  # (T, P, H, W)


def _sensor_map(contract: DataContract) -> SensorMap:
    """:func:`_spatial` as lookup tables over the sensor's columns and rows."""
    w, h = _wh(contract.sensor_size)
    out_h, out_w = contract.input_size
    transform = _spatial(contract)
    if isinstance(transform, SpatialResize):
        x_lut = np.arange(w, dtype=np.int64) * out_w // w
        y_lut = np.arange(h, dtype=np.int64) * out_h // h
        shift = None
    else:
        dx, dy = (out_w - w) // 2, (out_h - h) // 2  # as CropOrPad
        x_lut, y_lut = np.arange(w, dtype=np.int64) + dx, np.arange(h, dtype=np.int64) + dy
        x_lut[(x_lut < 0) | (x_lut >= out_w)] = -1
        y_lut[(y_lut < 0) | (y_lut >= out_h)] = -1
        shift = (dx, dy)
    return SensorMap(x_lut.astype(np.int32), y_lut.astype(np.int32), shift, (out_h, out_w))


def _spatial(contract: DataContract):
    """The event transform that maps the sensor onto ``contract.input_size``."""
    size = contract.input_size
    if contract.spatial == "resize":
        return SpatialResize(contract.sensor_size, size)
    if contract.spatial == "center_crop":
        return CenterCrop(contract.sensor_size, size)
    if contract.spatial == "letterbox":
        return Letterbox(contract.sensor_size, size)
    if contract.spatial == "pad":
        w, h = _wh(contract.sensor_size)
        if size[0] < h or size[1] < w:
            raise ValueError(
                f"spatial='pad' needs input_size {tuple(size)} (H, W) >= the {w}x{h} sensor; "
                "use 'crop_or_pad' or 'resize'"
            )
        return CropOrPad(contract.sensor_size, size)
    return CropOrPad(contract.sensor_size, size)


def default_augmentations(
    contract: DataContract,
    translate_px: int | None = None,
    spatial_jitter_px: float = 0.0,
    time_jitter_us: float = 0.0,
    event_drop: bool = True,
    rotate_deg: float = 0.0,
    scale_jitter: float = 0.0,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 5.0,
) -> tuple:
    """Label-preserving event augmentations for training: small translations (``translate_px``,
    default 1/16 of each sensor side) and EventDrop, plus optional per-event spatial and time
    jitter (Tonic's ``SpatialJitter`` / ``TimeJitter``), an optional random rotation and
    zoom of the whole sample (:class:`RandomAffine`, ``rotate_deg`` / ``scale_jitter``) and an
    optional elastic distortion (:class:`RandomElastic`, ``elastic_alpha`` / ``elastic_sigma``).

    Horizontal / polarity flips are left out on purpose: they swap classes such as clockwise vs
    counter-clockwise rotation or left vs right swipes (DVS Gesture, SyntheticGestures). Add
    :class:`RandomFlipLR` yourself for data sets where a mirror keeps the label.
    """
    w, h = _wh(contract.sensor_size)
    shift = (max(w // 16, 1), max(h // 16, 1)) if translate_px is None else (translate_px,) * 2
    augs: list = []
    if rotate_deg > 0 or scale_jitter > 0:
        augs.append(RandomAffine(contract.sensor_size, rotate_deg, scale_jitter))
    if elastic_alpha > 0:
        augs.append(RandomElastic(contract.sensor_size, elastic_alpha, elastic_sigma))
    if max(shift) > 0:
        augs.append(RandomTranslate(contract.sensor_size, shift))
    if spatial_jitter_px > 0:
        augs.append(SpatialJitter(contract.sensor_size, spatial_jitter_px))
    if time_jitter_us > 0:
        augs.append(TimeJitter(time_jitter_us))
    if event_drop:
        augs.append(EventDrop(contract.sensor_size))
    return tuple(augs)


def build_frame_transform(
    contract: DataContract, train: bool = False, augmentations: tuple | None = None
) -> FrameTransform:
    """THE transform from events to model input, for training, evaluation and live inference.

    Args:
        contract: what the model expects (sensor size, input size, T, window, representation,
            clamp, spatial mode).
        train: apply ``augmentations`` and place windows at random.
        augmentations: event transforms for training; ``None`` uses
            :func:`default_augmentations`, ``()`` none.

    Returns:
        A picklable callable ``events -> torch.float32 (T, P, H, W)``; call it with
        ``t_start_us=`` to bin an exact live window.

    Shape:
        events ``[N]`` -> ``(T, P, H, W)`` = ``contract.frame_shape``.

    Raises:
        ValueError: a spatial mode that cannot map the sensor onto ``input_size``.
    """
    if augmentations is None:
        augmentations = default_augmentations(contract) if train else ()
    _spatial(contract)  # validate the spatial mode now, not on the first sample
    return FrameTransform(contract, bool(train), tuple(augmentations))
