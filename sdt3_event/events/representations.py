"""Event representations beyond counts: voxel grids, time surfaces, averaged time surfaces.

Each is a pure function with a Tonic-style frozen transform on top, and gives Tonic's output on
Tonic's parameters (tested on its grids and on real recordings), 29x (voxel grid) and 115x (HATS) faster
(``bench/bench_filters.py``): per-event loops are numba kernels, everything else is vectorised.
The time surface is 5-11x faster only: its bit-identical output needs numpy's ``exp`` per nonzero
value (about 60 ns each where it is subnormal) and writes a dense float64 array; those alone take
about a seventh of Tonic's time (README, benchmarks).

=================================  ==========================================  =====================
transform                          Tonic equivalent                             output
=================================  ==========================================  =====================
:class:`ToVoxelGrid`               ``tonic.transforms.ToVoxelGrid``             ``(T, 1, H, W)`` f64
:class:`ToTimeSurface`             ``tonic.transforms.ToTimesurface``           ``(N, P, H, W)`` f64
:class:`ToAveragedTimeSurface`     ``tonic.transforms.ToAveragedTimesurface``   ``(C, P, S, S)`` f32
=================================  ==========================================  =====================

Deviations from Tonic, on purpose: boolean polarities count as ON/OFF (Tonic's voxel grid turns a
bool ``p`` into +1 for every event), a recording whose events share one timestamp gives a voxel
grid with every event in bin 0 (Tonic divides by zero), and the input is never modified.

The data contract (``representation: voxel`` or ``time_surface``) uses :func:`window_voxel_grid`
and :func:`window_time_surface`, the same computations on a fixed window ``[t_start, t_end)`` split
into ``T`` bins with the frame binning's integer edges, so that live windows and training samples
give the same tensor whatever their first event's time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdt3_event.events.frames import _compiled
from sdt3_event.events.schema import SensorSize

__all__ = [
    "to_voxel_grid",
    "to_time_surface",
    "to_averaged_time_surface",
    "window_voxel_grid",
    "window_time_surface",
    "bin_edges",
    "window_representation",
    "WINDOW_REPRESENTATIONS",
    "display_frame",
    "ToVoxelGrid",
    "ToTimeSurface",
    "ToAveragedTimeSurface",
]


# exp(x) of a float64 is exactly 0 for every x below -745.14 and subnormal below -708.40; numpy's
# vectorised exp is fast only where every lane of a vector gives a normal number (it is 4x slower
# on exponents spread over [-746, 0], and as slow on -inf). The time surface therefore hands numpy
# the exponents in [-708, 0] in place, marks the others with an exponent > 0 (exp > 1, which no
# surface value reaches), and sends those in [-746, -708) to numpy's exp apart.
_EXP_ZERO_BELOW = -746.0
_EXP_NORMAL_FROM = -708.0
_MARK, _MARK_SENT = 1.0, 2.0  # exponent of a value that is 0 / that comes from the side list
# slices per block of the time surface: about 1 MB of output, so that the exponents, numpy's exp
# over them and the clearing of the marks stay in the cache
_SURFACE_BLOCK_VALUES = 1 << 17

# The numba kernels below are compiled on first use and cached on disk (events.frames._compiled).


def _voxel(t, x, y, p, t0, span, w, h, n_bins, out):  # out: (T * H * W,) float64
    # ts = T * (t - t0) / span as Tonic computes it (float64, same operation order); two
    # passes, left weights then right ones, in event order: Tonic's np.add.at order.
    plane = w * h
    scale = np.float64(n_bins)
    for right in (0, 1):
        for i in range(t.shape[0]):
            ts = scale * (np.float64(t[i]) - t0) / span if span != 0 else 0.0
            ti = np.int64(ts)
            k = ti + right
            if k < n_bins:
                sign = 1.0 if p[i] > 0 else -1.0
                weight = ts - ti if right else 1.0 - (ts - ti)
                out[k * plane + np.int64(y[i]) * w + x[i]] += sign * weight


def _surface_exponents(t, x, y, p, ends, refs, tau, k0, k1, i, lo, memory, out, side_at, side_e):
    # Rows k0..k1 - 1 of out (N, P * H * W) float64: Tonic's exponent -(refs[k] - t_last) / tau,
    # its float64 operations in its order (memory (P, H, W): t_last, -inf where a pixel never
    # fired), where exp is normal, else _MARK. The exponents in [-746, -708) go to side_at (flat
    # index) / side_e: their pixels' latest events lie in a known time span, found from the events
    # rather than by a second pass over the pixels. Returns the next event, the first event that
    # may still fall in that span, and the side list's length.
    n_pol, h, w = memory.shape
    flat = memory.reshape(-1)
    m = flat.shape[0]
    n = 0
    for k in range(k0, k1):
        while i < ends[k]:
            pol = np.int64(p[i]) if n_pol > 1 else 0
            memory[pol, y[i], x[i]] = t[i]
            i += 1
        ref = refs[k]
        row = out[k]
        for j in range(m):  # vectorised: no branch, no compaction
            e = -(ref - flat[j]) / tau
            row[j] = e if e >= _EXP_NORMAL_FROM else _MARK
        # latest times with an exponent in [-746, -708), one tau and 1 us of margin each side
        first = ref + (_EXP_ZERO_BELOW - 1.0) * tau - 1.0
        last = ref + (_EXP_NORMAL_FROM + 1.0) * tau + 1.0
        while lo < i and t[lo] < first:
            lo += 1
        hi = lo
        while hi < i and t[hi] <= last:
            hi += 1
            if hi - lo > m:  # more events in the span than pixels: scan the pixels instead
                break
        if hi - lo <= m:
            for j in range(lo, hi):
                pol = np.int64(p[j]) if n_pol > 1 else 0
                c = (pol * h + y[j]) * w + x[j]
                if flat[c] == t[j] and row[c] == _MARK:  # the pixel's latest event, not yet listed
                    e = -(ref - flat[c]) / tau
                    if e >= _EXP_ZERO_BELOW:
                        side_at[n] = k * m + c
                        side_e[n] = e
                        row[c] = _MARK_SENT
                        n += 1
        else:
            for c in range(m):
                if row[c] == _MARK:
                    e = -(ref - flat[c]) / tau
                    if e >= _EXP_ZERO_BELOW:
                        side_at[n] = k * m + c
                        side_e[n] = e
                        n += 1
    return i, lo, n


def _surface_clear(out, k0, k1):
    # exp of a mark (> 1) -> 0; every surface value is <= 1
    m = out.shape[1]
    for k in range(k0, k1):
        row = out[k]
        for j in range(m):
            v = row[j]
            row[j] = 0.0 if v > 1.0 else v


def _averaged(t, x, y, group_start, group_end, rho, size, window, tau, linear, out):
    # out: (groups, S, S) float32; events of one (cell, polarity) group are contiguous and
    # sorted by time, so the past window of event i is a contiguous run ending at i - 1.
    zero = np.float32(0.0)
    local = np.zeros((size, size), np.float32)
    for g in range(group_start.shape[0]):
        acc = np.zeros((size, size), np.float32)
        for i in range(group_start[g], group_end[g]):
            ti = np.float32(t[i])
            start = max(zero, ti - window)
            first = i
            while first > group_start[g] and np.float32(t[first - 1]) >= start:
                first -= 1
            local[:, :] = 0
            for j in range(first, i):
                dx, dy = x[j] - x[i], y[j] - y[i]
                if abs(dx) <= rho and abs(dy) <= rho:
                    d = ti - np.float32(t[j])
                    if linear:
                        v = -d / (np.float32(3.0) * tau) + np.float32(1.0)
                    else:
                        v = np.exp(-d / tau)
                    local[dy + rho, dx + rho] += v
            local[rho, rho] += np.float32(1.0)
            acc += local
        n = group_end[g] - group_start[g]
        out[g] = acc / np.float32(max(1, n))


_voxel_kernel = _compiled(_voxel)
_surface_exponents_kernel = _compiled(_surface_exponents)
_surface_clear_kernel = _compiled(_surface_clear)
_averaged_kernel = _compiled(_averaged)


def _check_xy(events: np.ndarray, sensor_size: SensorSize) -> None:
    w, h = int(sensor_size[0]), int(sensor_size[1])
    if len(events) and (
        int(events["x"].min()) < 0
        or int(events["x"].max()) >= w
        or int(events["y"].min()) < 0
        or int(events["y"].max()) >= h
    ):
        raise ValueError(f"events lie outside the {w}x{h} sensor; drop them first")


def _voxel(events: np.ndarray, sensor_size, n_time_bins: int, t0: float, span: float):
    w, h = int(sensor_size[0]), int(sensor_size[1])
    out = np.zeros(n_time_bins * h * w, np.float64)
    if len(events):
        ev = events
        _voxel_kernel()(ev["t"], ev["x"], ev["y"], ev["p"], t0, span, w, h, int(n_time_bins), out)
    return out.reshape(n_time_bins, 1, h, w)  # (T, 1, H, W)


def to_voxel_grid(events: np.ndarray, sensor_size: SensorSize, n_time_bins: int = 10) -> np.ndarray:
    """Voxel grid, bilinear in time (Zhu et al. 2019), as ``tonic.transforms.ToVoxelGrid``.

    Timestamps are normalised to ``[0, T]`` between the first and the last event; each event adds
    its polarity (+1 ON, -1 OFF) to its two nearest bins, weighted by the distance (the last event,
    at exactly ``T``, falls outside, as in Tonic).

    Args:
        events: structured events sorted by ``t``.
        sensor_size: ``(W, H, P)``.
        n_time_bins: ``T``.

    Returns:
        float64 ``(T, 1, H, W)``.

    Raises:
        ValueError: ``n_time_bins < 1`` or events outside the sensor.
    """
    if n_time_bins < 1:
        raise ValueError(f"n_time_bins must be >= 1, got {n_time_bins}")
    _check_xy(events, sensor_size)
    if len(events) == 0:
        return _voxel(events, sensor_size, n_time_bins, 0.0, 1.0)
    t = events["t"]
    return _voxel(events, sensor_size, n_time_bins, float(t[0]), float(t[-1] - t[0]))


def window_voxel_grid(
    events: np.ndarray, sensor_size: SensorSize, n_time_bins: int, t_start: int, t_end: int
) -> np.ndarray:
    """:func:`to_voxel_grid` of the window ``[t_start, t_end)``: time normalised by the window.

    Events outside the window are ignored.

    Returns:
        float64 ``(T, 1, H, W)``.
    """
    if t_end <= t_start:
        raise ValueError(f"t_end must be > t_start, got [{t_start}, {t_end})")
    t = events["t"]
    events = events[(t >= t_start) & (t < t_end)]
    _check_xy(events, sensor_size)
    return _voxel(events, sensor_size, n_time_bins, float(t_start), float(t_end - t_start))


def _surfaces(events, sensor_size, ends: np.ndarray, refs: np.ndarray, tau: float) -> np.ndarray:
    """``exp(-(ref_k - last_t) / tau)`` per pixel and polarity, ``last_t`` over ``events[:ends[k]]``."""
    w, h, n_pol = (int(v) for v in sensor_size)
    _check_xy(events, sensor_size)
    m = n_pol * h * w
    out = np.empty((len(ends), m), np.float64)  # (N, P * H * W)
    # the fields as strided views, not copies: the kernel reads them as they are
    x, y, p = events["x"], events["y"], events["p"]
    refs = np.asarray(refs, np.float64)
    ends = ends.astype(np.int64)
    memory = np.full((n_pol, h, w), -np.inf)  # (P, H, W) latest time per pixel
    block = max(1, min(_SURFACE_BLOCK_VALUES // m, len(ends)))
    side_at = np.empty(block * m, np.int64)
    side_e = np.empty(block * m, np.float64)
    exponents, clear = _surface_exponents_kernel(), _surface_clear_kernel()
    flat_out = out.reshape(-1)
    i = lo = 0
    for k0 in range(0, len(ends), block):
        k1 = min(k0 + block, len(ends))
        span = (ends, refs, float(tau), k0, k1)
        i, lo, n = exponents(events["t"], x, y, p, *span, i, lo, memory, out, side_at, side_e)
        # numpy's exp, as Tonic's: its vectorised exp gives a value the same bits wherever it lies
        # in an array (a compiled libm exp differs in the last bit for about 5 % of values)
        rows = out[k0:k1]
        np.exp(rows, out=rows)
        clear(out, k0, k1)
        if n:
            flat_out[side_at[:n]] = np.exp(side_e[:n])
    return out.reshape(len(ends), n_pol, h, w)


def to_time_surface(
    events: np.ndarray,
    sensor_size: SensorSize,
    dt: float,
    tau: float,
    overlap: float = 0,
    include_incomplete: bool = False,
) -> np.ndarray:
    """Global time surfaces every ``dt`` (Lagorce et al. 2016), as ``tonic.transforms.ToTimesurface``.

    The recording is sliced as ``tonic.slicers.slice_events_by_time`` does; after slice ``i`` each
    pixel and polarity holds ``exp(-(t0 + (i + 1) dt - t_last) / tau)``, ``t_last`` its latest event
    so far (0 where it never fired).

    Args:
        events: structured events sorted by ``t``.
        sensor_size: ``(W, H, P)``.
        dt: slice length (µs), > 0.
        tau: decay constant (µs), > 0.
        overlap: slice overlap (µs), as Tonic's slicer.
        include_incomplete: keep a last, shorter slice, as Tonic's slicer.

    Returns:
        float64 ``(N, P, H, W)``, ``N`` slices.

    Raises:
        ValueError: a bad parameter, no events, or events outside the sensor.
    """
    if dt <= 0 or tau <= 0 or dt - overlap <= 0:
        raise ValueError(f"need dt > 0, tau > 0 and overlap < dt; got {dt}, {tau}, {overlap}")
    if len(events) == 0:
        raise ValueError("a time surface needs at least one event (slices start at the first)")
    t = events["t"]
    stride = dt - overlap
    duration = t[-1] - t[0]
    rounding = np.ceil if include_incomplete else np.floor
    n = max(int(rounding((duration - dt) / stride) + 1), 1)
    window_ends = np.arange(n) * stride + t[0] + dt
    ends = np.searchsorted(t, window_ends)
    # Tonic's (i + 1) * dt + t0, the same float64 (or exact integer) operations, vectorised
    refs = np.arange(1, n + 1) * dt + t[0]
    return _surfaces(events, sensor_size, ends, refs, tau)


def bin_edges(t_start: int, t_end: int, n_time_bins: int) -> np.ndarray:
    """The ``T + 1`` integer edges of the frame binning of ``[t_start, t_end)``.

    Bin ``i`` = ``[edges[i], edges[i + 1])``, the same events as ``(t - t_start) * T // L == i``
    in :func:`sdt3_event.events.frames.to_window_frames`.
    """
    length = int(t_end) - int(t_start)
    k = np.arange(n_time_bins + 1, dtype=np.int64)
    return int(t_start) + (k * length + n_time_bins - 1) // n_time_bins  # ceil(k L / T)


def window_time_surface(
    events: np.ndarray,
    sensor_size: SensorSize,
    n_time_bins: int,
    t_start: int,
    t_end: int,
    tau_us: float,
) -> np.ndarray:
    """Time surfaces at the ends of the ``T`` bins of ``[t_start, t_end)``.

    Bin ``i`` ends at ``edges[i + 1]`` (:func:`bin_edges`); the surface there is
    ``exp(-(edges[i + 1] - t_last) / tau_us)`` over the window's events up to that edge.

    Returns:
        float64 ``(T, P, H, W)`` in ``[0, 1]``.
    """
    if t_end <= t_start:
        raise ValueError(f"t_end must be > t_start, got [{t_start}, {t_end})")
    if tau_us <= 0:
        raise ValueError(f"tau_us must be > 0, got {tau_us}")
    t = events["t"]
    events = events[(t >= t_start) & (t < t_end)]
    edges = bin_edges(t_start, t_end, n_time_bins)
    ends = np.searchsorted(events["t"], edges[1:])
    return _surfaces(events, sensor_size, ends, edges[1:].astype(np.float64), float(tau_us))


def to_averaged_time_surface(
    events: np.ndarray,
    sensor_size: SensorSize,
    cell_size: int = 10,
    surface_size: int = 5,
    time_window: float = 1e3,
    tau: float = 100,
    decay: str = "exp",
) -> np.ndarray:
    """Histograms of averaged time surfaces (HATS, Sironi et al. 2018), as
    ``tonic.transforms.ToAveragedTimesurface`` (float32 arithmetic, as Tonic).

    The sensor is cut into ``cell_size`` cells; per cell and polarity, each event's local time
    surface (``surface_size`` square, over the cell's earlier events of that polarity within
    ``time_window``) is averaged over the cell's events.

    Returns:
        float32 ``(C, P, S, S)``, ``C`` cells in row-major order.

    Raises:
        ValueError: ``surface_size`` even or larger than ``cell_size``, an unknown ``decay``,
            events outside the sensor.
    """
    if surface_size > cell_size or surface_size % 2 == 0:
        raise ValueError(
            f"surface_size must be odd and <= cell_size, got {surface_size}, {cell_size}"
        )
    if decay not in ("exp", "lin"):
        raise ValueError(f"decay must be 'exp' or 'lin', got {decay!r}")
    _check_xy(events, sensor_size)
    w, h, n_pol = (int(v) for v in sensor_size)
    wgrid, hgrid = math.ceil(w / cell_size), math.ceil(h / cell_size)
    n_cells = wgrid * hgrid
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    pol = np.maximum(events["p"].astype(np.int64), 0)
    group = ((y // cell_size) * wgrid + x // cell_size) * n_pol + pol  # (cell, polarity)
    order = np.argsort(group, kind="stable")  # keeps time order inside each group
    counts = np.bincount(group, minlength=n_cells * n_pol)
    ends = np.cumsum(counts)
    out = np.zeros((n_cells * n_pol, surface_size, surface_size), np.float32)
    _averaged_kernel()(
        events["t"][order],
        x[order],
        y[order],
        ends - counts,
        ends,
        surface_size // 2,
        surface_size,
        np.float32(time_window),
        np.float32(tau),
        decay == "lin",
        out,
    )
    return out.reshape(n_cells, n_pol, surface_size, surface_size)  # (C, P, S, S)


WINDOW_REPRESENTATIONS = ("voxel", "time_surface")


def window_representation(contract, events: np.ndarray, t_start: int, t_end: int) -> np.ndarray:
    """The contract's voxel grid or time surface of ``[t_start, t_end)`` as float32
    ``(T, P, H, W)``; ``events`` are already mapped onto ``contract.input_size``.

    ``tau_us`` defaults to one bin's length.
    """
    h, w = contract.input_size
    size = (w, h, contract.sensor_size[2])
    n_bins = contract.n_time_bins
    if contract.representation == "voxel":
        out = window_voxel_grid(events, size, n_bins, t_start, t_end)
    elif contract.representation == "time_surface":
        tau = contract.tau_us or (t_end - t_start) / n_bins
        out = window_time_surface(events, size, n_bins, t_start, t_end, tau)
    else:
        raise ValueError(f"{contract.representation!r} is not a window representation")
    return out.astype(np.float32)


def display_frame(contract, frames) -> np.ndarray:
    """One ``(P, H, W)`` picture of a sample's model input ``(T, P, H, W)`` for the monitor: the
    sum over ``T``; a signed voxel grid is split into OFF (negative) and ON (positive) channels."""
    frame = frames.sum(0).cpu().numpy()  # (P, H, W)
    if contract.representation == "voxel":
        return np.concatenate([np.clip(-frame, 0, None), np.clip(frame, 0, None)])  # (2, H, W)
    return frame


@dataclass(frozen=True)
class ToVoxelGrid:
    """Events -> voxel grid ``(T, 1, H, W)`` (see :func:`to_voxel_grid`)."""

    sensor_size: tuple[int, int, int]
    n_time_bins: int

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_voxel_grid(events, self.sensor_size, self.n_time_bins)


@dataclass(frozen=True)
class ToTimeSurface:
    """Events -> time surfaces every ``dt`` ``(N, P, H, W)`` (see :func:`to_time_surface`)."""

    sensor_size: tuple[int, int, int]
    dt: float
    tau: float
    overlap: float = 0
    include_incomplete: bool = False

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_time_surface(
            events, self.sensor_size, self.dt, self.tau, self.overlap, self.include_incomplete
        )


@dataclass(frozen=True)
class ToAveragedTimeSurface:
    """Events -> HATS histograms ``(C, P, S, S)`` (see :func:`to_averaged_time_surface`)."""

    sensor_size: tuple[int, int, int]
    surface_size: int = 5
    cell_size: int = 10
    time_window: float = 1e3
    tau: float = 100
    decay: str = "exp"

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_averaged_time_surface(
            events,
            self.sensor_size,
            self.cell_size,
            self.surface_size,
            self.time_window,
            self.tau,
            self.decay,
        )
