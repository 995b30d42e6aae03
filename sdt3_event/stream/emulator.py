"""Turn ordinary video frames into events: a log-intensity contrast-threshold emulator.

Each pixel keeps a reference log intensity. When the log intensity of a new frame differs from the
reference by ``k`` whole contrast thresholds, the pixel fires ``k`` events of that sign, at times
interpolated linearly between the two frames (the ``j``-th crossing happens when the linearly
interpolated log intensity has moved ``j`` thresholds), and the reference moves by ``k`` thresholds.
Like a real DVS pixel:

- every pixel has its own ON and OFF thresholds, drawn once from a normal distribution around the
  nominal values (``threshold_sigma``, seeded): fixed-pattern threshold mismatch;
- after an event a pixel is blind for ``refractory_us``: crossings inside that time produce no event
  (the reference still follows the signal, so a long ramp is not replayed later);
- a pixel fires at most ``max_events_per_frame`` events per frame interval, which bounds memory.

The model follows the usual DVS emulators (v2e, ESIM) in spirit; no code is taken from them.
"""

from __future__ import annotations

import numpy as np

from sdt3_event.events.schema import EVENT_DTYPE, SensorSize

# The emulator's default pixel, shared with the sources that build one (``webcam:``, ``video:``).
DEFAULT_THRESHOLD = 0.2
"""Nominal ON and OFF contrast threshold, in log intensity units."""
DEFAULT_THRESHOLD_SIGMA = 0.03
"""Standard deviation of the per-pixel threshold mismatch."""
DEFAULT_REFRACTORY_US = 1000
"""Dead time of a pixel after each event (µs)."""


class EventEmulator:
    """Stateful frame -> events converter for one video stream.

    Args:
        threshold_on / threshold_off: nominal contrast thresholds (in log intensity units).
        threshold_sigma: standard deviation of the per-pixel threshold mismatch.
        refractory_us: dead time of a pixel after each event.
        log_eps: offset inside ``log(I + eps)`` for intensities in ``[0, 1]``.
        max_events_per_frame: cap on events per pixel between two frames.
        seed: seeds the threshold mismatch.

    Raises:
        ValueError: non-positive thresholds, negative sigma or refractory period.
    """

    def __init__(
        self,
        *,
        threshold_on: float = DEFAULT_THRESHOLD,
        threshold_off: float = DEFAULT_THRESHOLD,
        threshold_sigma: float = DEFAULT_THRESHOLD_SIGMA,
        refractory_us: int = DEFAULT_REFRACTORY_US,
        log_eps: float = 1e-2,
        max_events_per_frame: int = 8,
        seed: int = 0,
    ) -> None:
        if threshold_on <= 0 or threshold_off <= 0:
            raise ValueError("threshold_on and threshold_off must be > 0")
        if threshold_sigma < 0 or refractory_us < 0:
            raise ValueError("threshold_sigma and refractory_us must be >= 0")
        if max_events_per_frame < 1:
            raise ValueError("max_events_per_frame must be >= 1")
        self.threshold_on = float(threshold_on)
        self.threshold_off = float(threshold_off)
        self.threshold_sigma = float(threshold_sigma)
        self.refractory_us = int(refractory_us)
        self.log_eps = float(log_eps)
        self.max_events_per_frame = int(max_events_per_frame)
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the reference frame (the next frame only initialises it)."""
        self._ref: np.ndarray | None = None
        self._last_t: int | None = None
        self._last_event_t: np.ndarray | None = None
        self._th_on: np.ndarray | None = None
        self._th_off: np.ndarray | None = None

    @property
    def sensor_size(self) -> SensorSize | None:
        """``(W, H, 2)`` once the first frame was seen."""
        if self._ref is None:
            return None
        h, w = self._ref.shape
        return (w, h, 2)

    def _init(self, log_frame: np.ndarray, t_us: int) -> None:
        rng = np.random.default_rng(self.seed)
        shape = log_frame.shape
        floor = 0.01  # a threshold never collapses to 0 under mismatch
        self._th_on = np.maximum(
            rng.normal(self.threshold_on, self.threshold_sigma, shape), floor
        ).astype(np.float32)
        self._th_off = np.maximum(
            rng.normal(self.threshold_off, self.threshold_sigma, shape), floor
        ).astype(np.float32)
        self._ref = log_frame.copy()
        self._last_t = t_us
        self._last_event_t = np.full(shape, np.iinfo(np.int64).min // 2, dtype=np.int64)

    def __call__(self, frame: np.ndarray, t_us: int) -> np.ndarray:
        """Feed one frame; return the events since the previous frame, sorted by time.

        Args:
            frame: grayscale ``(H, W)`` or BGR ``(H, W, 3)`` image, uint8 or float in ``[0, 1]``.
            t_us: the frame's timestamp in microseconds, increasing from call to call.

        Returns:
            events of :data:`EVENT_DTYPE` with ``t`` in ``(t_prev, t_us]``; empty for the first frame.

        Raises:
            ValueError: a frame of another size than the first one, or a timestamp going backwards.
        """
        log_frame = self._log_intensity(frame)
        t_us = int(t_us)
        if self._ref is None:
            self._init(log_frame, t_us)
            return np.empty(0, dtype=EVENT_DTYPE)
        if log_frame.shape != self._ref.shape:
            raise ValueError(f"frame size changed from {self._ref.shape} to {log_frame.shape}")
        if t_us < self._last_t:
            raise ValueError(f"frame timestamp went backwards: {self._last_t} -> {t_us} us")
        t_prev, dt = self._last_t, t_us - self._last_t
        self._last_t = t_us
        diff = log_frame - self._ref
        on = diff > 0
        th = np.where(on, self._th_on, self._th_off)
        adiff = np.abs(diff)
        n = np.minimum(np.floor(adiff / th), self.max_events_per_frame).astype(np.int64)
        # The reference follows the signal by the whole thresholds crossed (also past the cap).
        crossed = np.floor(adiff / th)
        self._ref += np.where(on, 1.0, -1.0) * crossed * th
        flat = np.flatnonzero(n)
        if len(flat) == 0:
            return np.empty(0, dtype=EVENT_DTYPE)
        counts = n.ravel()[flat]
        # one row per potential event: its pixel and its crossing number j = 1..n
        pix = np.repeat(flat, counts)  # (E,)
        first = np.cumsum(counts) - counts
        j = np.arange(len(pix)) - np.repeat(first, counts) + 1  # (E,)
        frac = (j * th.ravel()[pix]) / adiff.ravel()[pix]  # in (0, 1]
        t = t_prev + np.ceil(frac * dt).astype(np.int64)
        t = np.minimum(np.maximum(t, t_prev + (1 if dt > 0 else 0)), t_us)
        keep = self._refractory_mask(pix, t)
        pix, t = pix[keep], t[keep]
        last = self._last_event_t.ravel()
        # crossings of a pixel are in time order, so the last kept one per pixel wins
        last[pix] = t
        order = np.argsort(t, kind="stable")
        pix, t = pix[order], t[order]
        h, w = self._ref.shape
        events = np.empty(len(pix), dtype=EVENT_DTYPE)
        events["t"] = t
        events["y"], events["x"] = np.divmod(pix, w)
        events["p"] = on.ravel()[pix]
        return events

    def _refractory_mask(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Keep an event only if its pixel's previous *kept* event is ``refractory_us`` older."""
        if self.refractory_us == 0:
            return np.ones(len(pix), dtype=bool)
        keep = np.zeros(len(pix), dtype=bool)
        last = self._last_event_t.ravel()[pix].copy()
        # Events of one pixel are contiguous and time ordered; walk crossing numbers in lockstep,
        # at most max_events_per_frame rounds of vectorised work.
        starts = np.flatnonzero(np.r_[True, pix[1:] != pix[:-1]])
        lengths = np.diff(np.r_[starts, len(pix)])
        prev = last[starts]
        for k in range(int(lengths.max())):
            has = lengths > k
            idx = starts[has] + k
            ok = t[idx] - prev[has] >= self.refractory_us
            keep[idx[ok]] = True
            upd = prev[has]
            upd[ok] = t[idx[ok]]
            prev[has] = upd
        return keep

    def _log_intensity(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        integer = np.issubdtype(frame.dtype, np.integer)
        if frame.ndim == 3:
            if frame.shape[2] == 1:
                frame = frame[..., 0]
            else:
                # BGR (OpenCV order) -> luma, ITU-R BT.601 weights
                frame = frame[..., :3].astype(np.float32) @ np.float32([0.114, 0.587, 0.299])
        if frame.ndim != 2:
            raise ValueError(f"expected a (H, W) or (H, W, 3) frame, got shape {frame.shape}")
        img = frame.astype(np.float32)
        if integer:
            img = img / 255.0
        return np.log(img + self.log_eps).astype(np.float32)
