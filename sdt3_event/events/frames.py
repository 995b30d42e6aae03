"""Event -> frame binning: per-polarity event counts in ``(T, P, H, W)``.

:func:`to_frames` gives the same frames as ``tonic.transforms.ToFrame`` (same slicing rules, bin
boundaries, overlap handling and dropped tail events) without a per-slice ``np.add.at``: pixel
indices are computed once for all events (vectorised) and scattered with one ``index_add_`` (a few
per group of frames when there are many small slices, one per slice when slices overlap). :func:`to_window_frames` bins a fixed time window ``[t_start, t_end)``
into ``T`` equal bins with exact integer boundaries; live windows and training samples must bin
identically whatever the first event's time. :func:`count_window_mapped` does the data contract's
whole transform (window, sensor map, bins, polarity, clamp) in one compiled pass with the same
bins, and :func:`count_window_mapped_torch` does it on torch tensors on any device.

Deviations from Tonic, on purpose:

- Empty input gives ``(T, P, H, W)`` zeros (Tonic returns ``(T, P, W, H)``, which is wrong for
  non-square sensors) in the output dtype (Tonic returns float64 there, int16 otherwise).
- Counts saturate at the dtype's maximum instead of wrapping around (int16 in Tonic).
- The input array is never modified (Tonic sets ``p = 0`` in place for single-polarity sensors).
- ``start_time`` / ``end_time`` with a mode other than ``time_window`` raise (Tonic ignores them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from sdt3_event.events.schema import SensorSize, first_at

__all__ = [
    "to_frames",
    "to_window_frames",
    "to_window_frames_torch",
    "slice_indices",
    "SensorMap",
    "window_bin_edges",
    "count_window_mapped",
    "count_window_mapped_torch",
]


def _infer_sensor_size(events: np.ndarray) -> SensorSize:
    if len(events) == 0:
        raise ValueError("sensor_size is required for empty event arrays")
    w = int(events["x"].max()) + 1
    h = int(events["y"].max()) + 1 if "y" in events.dtype.names else 1
    return (w, h, len(np.unique(events["p"])))


def _check_one_mode(*modes: float | None) -> None:
    """Raise unless exactly one slicing mode (``time_window``, ``event_count``, ``n_time_bins``,
    ``n_event_bins``, in that order) is set."""
    if sum(m is not None for m in modes) != 1:
        raise ValueError("set exactly one of time_window, event_count, n_time_bins or n_event_bins")


def slice_indices(
    events: np.ndarray,
    *,
    time_window: float | None = None,
    event_count: int | None = None,
    n_time_bins: int | None = None,
    n_event_bins: int | None = None,
    overlap: float = 0,
    include_incomplete: bool = False,
    start_time: float | None = None,
    end_time: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Start / end event indices of each slice, by Tonic's slicing rules (``tonic.slicers``).

    Returns:
        ``(starts, ends)``: int64 arrays of length ``T``; slice ``i`` is ``events[starts[i]:ends[i]]``.

    Raises:
        ValueError: not exactly one mode, or a non-positive stride.
    """
    _check_one_mode(time_window, event_count, n_time_bins, n_event_bins)
    if (start_time is not None or end_time is not None) and time_window is None:
        raise ValueError("start_time / end_time apply only to time_window slicing")
    n = len(events)
    if time_window is not None:
        t = events["t"]
        stride = time_window - overlap
        if stride <= 0:
            raise ValueError(f"time_window - overlap must be > 0, got {stride}")
        start = t[0] if start_time is None else start_time
        end = t[-1] if end_time is None else end_time
        duration = end - start
        rounding = np.ceil if include_incomplete else np.floor
        n_slices = max(int(rounding((duration - time_window) / stride) + 1), 1)
        win_start = np.arange(n_slices) * stride + start
        starts = _searchsorted(t, win_start)
        ends = _searchsorted(t, win_start + time_window)
    elif event_count is not None:
        count = min(event_count, n)
        stride = event_count - overlap
        if stride <= 0:
            raise ValueError(f"event_count - overlap must be > 0, got {stride}")
        rounding = np.ceil if include_incomplete else np.floor
        n_slices = int(rounding((n - count) / stride) + 1)
        starts = (np.arange(n_slices) * stride).astype(int)
        ends = starts + count
    elif n_time_bins is not None:
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1) for n_time_bins, got {overlap}")
        t = events["t"]
        window = (t[-1] - t[0]) // n_time_bins * (1 + overlap)
        stride = window * (1 - overlap)
        win_start = np.arange(n_time_bins) * stride + t[0]
        starts = _searchsorted(t, win_start)
        ends = _searchsorted(t, win_start + window)
    else:
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1) for n_event_bins, got {overlap}")
        count = int(n // n_event_bins * (1 + overlap))
        stride = int(count * (1 - overlap))
        starts = np.arange(n_event_bins) * stride
        ends = starts + count
    starts = np.clip(np.asarray(starts, dtype=np.int64), 0, n)
    ends = np.clip(np.asarray(ends, dtype=np.int64), 0, n)
    return starts, np.maximum(ends, starts)


def _searchsorted(t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(t, values)`` (left) without copying a strided ``t`` when few values."""
    if t.flags.c_contiguous or len(values) * 64 > len(t):
        return np.searchsorted(t, values)
    # A field of a structured array is strided; np.searchsorted would copy all of it.
    return np.array([first_at(t, v) for v in values.tolist()], dtype=np.int64)


def _coordinates(events: np.ndarray, index, sensor_size: SensorSize) -> dict[str, np.ndarray]:
    """Contiguous copies of the ``x`` (and ``y``) coordinates of ``events[index]``, range-checked.

    Fields of a packed structured array are strided; one copy each makes the range check and the
    index arithmetic run on contiguous memory.

    Raises:
        ValueError: a coordinate outside the sensor.
    """
    w, h = sensor_size[0], sensor_size[1]
    out = {}
    for name, limit in (("x", w), ("y", h)):
        if name not in events.dtype.names:
            continue
        col = np.ascontiguousarray(events[name][index])
        out[name] = col
        if not len(col):
            continue
        # Reinterpreted as unsigned, negative coordinates become huge: one max covers both bounds.
        if col.dtype.kind == "i":
            bad = int(col.view(col.dtype.str.replace("i", "u")).max()) >= limit
        else:
            bad = int(col.max()) >= limit or int(col.min()) < 0
        if bad:
            raise ValueError(
                f"events lie outside the {w}x{h} sensor ({name} range {int(col.min())}.."
                f"{int(col.max())}); pass the right sensor_size or drop them first "
                "(sdt3_event.events.schema.validate_events(..., drop_out_of_range=True))"
            )
    return out


def _accumulate(
    events: np.ndarray,
    sensor_size: SensorSize,
    bins: np.ndarray,
    n_bins: int,
    index: np.ndarray | slice,
    dtype,
    clamp: int | None,
    max_per_bin: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Count events ``events[index]`` into time bins ``bins`` (one per event) -> ``(T, P, H, W)``.

    ``max_per_bin`` bounds the events of any bin; when it fits the output dtype, counts accumulate
    directly in it (no full-size intermediate), otherwise in int32 / int64 and saturate. ``out``
    (1-D, zeros, ``T * P * H * W`` of ``dtype``) receives the counts when given.
    """
    import torch

    w, h, n_pol = sensor_size
    coords = _coordinates(events, index, sensor_size)
    size = n_bins * n_pol * h * w
    flat = bins.astype(np.int32 if size < 2**31 else np.int64, copy=False)  # fresh array
    if n_pol > 1:
        flat *= n_pol
        np.add(flat, events["p"][index], out=flat, casting="unsafe")
    if "y" in coords:
        flat *= h
        np.add(flat, coords["y"], out=flat, casting="unsafe")
    flat *= w
    np.add(flat, coords["x"], out=flat, casting="unsafe")
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        fits = max_per_bin <= np.iinfo(dtype).max
    else:
        fits = max_per_bin <= 2 ** (np.finfo(dtype).nmant + 1)
    acc_dtype = dtype if fits else np.dtype(np.int32 if max_per_bin < 2**31 else np.int64)
    if out is None:
        out = np.zeros(size, dtype=dtype)  # calloc: pages are zeroed when first touched
    acc = out if acc_dtype == dtype else np.zeros(size, dtype=acc_dtype)
    if len(flat):
        target = torch.from_numpy(acc)
        one = torch.ones(1, dtype=target.dtype).expand(len(flat))
        target.index_add_(0, torch.from_numpy(flat), one)
    limit = None if fits else np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else None
    if clamp is not None and max_per_bin > clamp:
        limit = clamp if limit is None else min(limit, clamp)
    if limit is not None:
        np.minimum(acc, limit, out=acc)
    if acc is not out:
        out[...] = acc
    return out.reshape(n_bins, n_pol, h, w)  # (T, P, H, W)


def _check_events(events: np.ndarray, sensor_size: SensorSize) -> None:
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise TypeError(f"events must be a numpy structured array, got {type(events).__name__}")
    if sensor_size[2] == 1 and len(events) and events["p"].min() != events["p"].max():
        raise ValueError("single polarity sensor, but events contain both polarities")
    if sensor_size[2] > 1 and len(events) and events.dtype["p"] != np.bool_:
        p = events["p"]
        if int(p.min()) < 0 or int(p.max()) >= sensor_size[2]:
            raise ValueError(
                f"polarity values {int(p.min())}..{int(p.max())} do not index the sensor's "
                f"{sensor_size[2]} channels; map them to 0..{sensor_size[2] - 1} (e.g. p > 0)"
            )


def to_frames(
    events: np.ndarray,
    sensor_size: SensorSize | None,
    *,
    n_time_bins: int | None = None,
    time_window: float | None = None,
    event_count: int | None = None,
    n_event_bins: int | None = None,
    overlap: float = 0,
    include_incomplete: bool = False,
    clamp: int | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
    dtype=np.int16,
) -> np.ndarray:
    """Per-polarity event counts per slice, equal to ``tonic.transforms.ToFrame``.

    Args:
        events: structured array with fields ``t``, ``x``, ``y``, ``p`` sorted by ``t``.
        sensor_size: ``(W, H, P)``; ``None`` infers it from the events (as Tonic does).
        n_time_bins: ``T`` equal time slices between the first and last event (Tonic's rule:
            the bin length is ``(t[-1] - t[0]) // T`` so trailing events can fall outside).
        time_window: slice length in microseconds (``overlap`` in microseconds).
        event_count: events per slice (``overlap`` in events).
        n_event_bins: ``T`` slices of equal event counts.
        overlap: overlap between slices, in the unit of the chosen mode (fraction of a bin for the
            ``n_*_bins`` modes).
        include_incomplete: keep the last partial slice (``time_window`` / ``event_count``).
        clamp: clip counts to ``[0, clamp]``.
        start_time: first window start for ``time_window`` (default: first event).
        end_time: end of the last window for ``time_window`` (default: last event).
        dtype: output dtype (Tonic's is int16; counts saturate at its maximum).

    Returns:
        Frames ``(T, P, H, W)``.

    Shape:
        events ``[N]`` -> ``(T, P, H, W)``.

    Raises:
        ValueError: not exactly one mode, a bad overlap, events outside the sensor, or both
            polarities on a single-polarity sensor.
    """
    if sensor_size is None:
        sensor_size = _infer_sensor_size(events)
    sensor_size = tuple(int(v) for v in sensor_size)
    _check_events(events, sensor_size)
    w, h, n_pol = sensor_size
    if len(events) == 0:
        _check_one_mode(time_window, event_count, n_time_bins, n_event_bins)
        n_bins = n_time_bins or n_event_bins or 1
        return np.zeros((n_bins, n_pol, h, w), dtype=dtype)
    starts, ends = slice_indices(
        events,
        time_window=time_window,
        event_count=event_count,
        n_time_bins=n_time_bins,
        n_event_bins=n_event_bins,
        overlap=overlap,
        include_incomplete=include_incomplete,
        start_time=start_time,
        end_time=end_time,
    )
    n_bins = len(starts)
    out = np.zeros((n_bins, n_pol, h, w), dtype=dtype)  # (T, P, H, W)
    lengths = ends - starts
    if n_bins == 0 or not lengths.any():
        return out
    if n_bins <= _MAX_SLICE_CALLS or lengths.mean() >= _MIN_SLICE_EVENTS:
        _accumulate_slices(events, sensor_size, starts, ends, out, clamp)
        return out
    flat_out = out.reshape(-1)
    frame = n_pol * h * w
    # Many small slices: a bin label per event, frames filled a group at a time (a few MB of
    # output each), so the output is written in order and the index arrays stay small.
    per_chunk = max(1, _CHUNK_ELEMENTS // frame)
    for k0 in range(0, n_bins, per_chunk):
        k1 = min(k0 + per_chunk, n_bins)
        s, e = starts[k0:k1], ends[k0:k1]
        chunk_lengths = e - s
        total = int(chunk_lengths.sum())
        if total == 0:
            continue
        bins = _bin_labels(chunk_lengths, total)
        if np.array_equal(s[1:], e[:-1]):  # back-to-back slices: one contiguous range
            index: np.ndarray | slice = slice(int(s[0]), int(s[0]) + total)
        else:  # gaps or overlaps: gather the events of every slice
            offsets = np.cumsum(chunk_lengths) - chunk_lengths
            index = np.arange(total, dtype=np.int64) + (s - offsets)[bins]
        _accumulate(
            events,
            sensor_size,
            bins,
            k1 - k0,
            index,
            dtype,
            clamp,
            int(chunk_lengths.max()),
            out=flat_out[k0 * frame : k1 * frame],
        )
    return out


_MAX_SLICE_CALLS = 256
_MIN_SLICE_EVENTS = 4096


def _accumulate_slices(
    events: np.ndarray,
    sensor_size: SensorSize,
    starts: np.ndarray,
    ends: np.ndarray,
    out: np.ndarray,
    clamp: int | None,
) -> None:
    """Few, large slices: pixel indices once for the covered range, then one scatter per slice.

    Overlapping slices reuse the same pixel indices (no gathered copies).
    """
    import torch

    lengths = ends - starts
    if _count_slices_compiled(events, sensor_size, starts, ends, out, clamp, int(lengths.max())):
        return
    lo, hi = int(starts.min()), int(ends.max())
    pix = _pixel_index(events, slice(lo, hi), sensor_size)
    pix_t = torch.from_numpy(pix)
    limit = np.iinfo(out.dtype).max if np.issubdtype(out.dtype, np.integer) else None
    if limit is None:
        limit = 2 ** (np.finfo(out.dtype).nmant + 1)
    frame_size = out[0].size
    if (
        np.array_equal(starts[1:], ends[:-1])
        and int(lengths.max()) <= limit
        and out.size < 2**31
        and (clamp is None or int(lengths.max()) <= clamp)
    ):
        # Back-to-back slices: shift each slice's pixel indices to its frame, one scatter for all.
        for k in range(1, len(starts)):
            if lengths[k]:
                pix[int(starts[k]) - lo : int(ends[k]) - lo] += k * frame_size
        target = torch.from_numpy(out.reshape(-1))
        target.index_add_(0, pix_t, torch.ones(1, dtype=target.dtype).expand(len(pix)))
        return
    for k in range(len(starts)):
        a, b = int(starts[k]) - lo, int(ends[k]) - lo
        if b <= a:
            continue
        frame = out[k].reshape(-1)
        if b - a <= limit:
            target = torch.from_numpy(frame)
            target.index_add_(0, pix_t[a:b], torch.ones(1, dtype=target.dtype).expand(b - a))
        else:  # the counts could overflow the dtype: count in int64, then saturate
            counts = np.bincount(pix[a:b], minlength=len(frame))
            np.minimum(counts, limit, out=counts)
            frame[...] = counts
        if clamp is not None and b - a > clamp:
            np.minimum(frame, clamp, out=frame)


def _compiled(kernel):
    """``kernel`` compiled by numba (``nogil``, cached on disk) on first use, from a getter that
    returns ``None`` where numba is not installed (the numpy paths then serve)."""

    @functools.cache
    def get():
        try:
            import numba
        except ImportError:
            return None
        return numba.njit(cache=True, nogil=True)(kernel)

    return get


def _count_slices(x, y, p, starts, ends, w, h, n_pol, cap, out):  # out: (T, P * H * W)
    for k in range(starts.shape[0]):
        row = out[k]
        for i in range(starts[k], ends[k]):
            xi, yi = np.int64(x[i]), np.int64(y[i])
            if xi < 0 or xi >= w or yi < 0 or yi >= h:
                return False
            pol = np.int64(p[i]) if n_pol > 1 else 0
            j = (pol * h + yi) * w + xi
            if row[j] < cap:  # saturate at the dtype's limit or the clamp
                row[j] += 1
    return True


_slice_kernel = _compiled(_count_slices)  # behind :func:`_count_slices_compiled`


def _count_slices_compiled(
    events: np.ndarray,
    sensor_size: SensorSize,
    starts: np.ndarray,
    ends: np.ndarray,
    out: np.ndarray,
    clamp: int | None,
    max_length: int,
) -> bool:
    """One compiled pass over the strided event fields, straight into ``out`` (T, P, H, W).

    Used when numba is installed. Counts saturate at ``out``'s dtype limit and at ``clamp``, as on
    the numpy path. Returns False (``out`` left zero) when it does not apply or finds a coordinate
    outside the sensor; the numpy path then raises the detailed error.
    """
    kernel = _slice_kernel()
    if kernel is None or "y" not in events.dtype.names or max_length == 0:
        return False
    if np.issubdtype(out.dtype, np.integer):
        limit = np.iinfo(out.dtype).max
    else:
        limit = 2 ** (np.finfo(out.dtype).nmant + 1)
    cap = limit if clamp is None else min(limit, clamp)
    w, h, n_pol = sensor_size
    flat = out.reshape(len(out), -1)  # (T, P * H * W), a view
    ok = kernel(events["x"], events["y"], events["p"], starts, ends, w, h, n_pol, cap, flat)
    if not ok:
        out[...] = 0
    return bool(ok)


def _pixel_index(events: np.ndarray, index, sensor_size: SensorSize) -> np.ndarray:
    """``(p * H + y) * W + x`` (int32) of ``events[index]``, range-checked."""
    w, h, n_pol = sensor_size
    coords = _coordinates(events, index, sensor_size)
    if n_pol > 1:
        pix = events["p"][index].astype(np.int32)
        if "y" in coords:
            pix *= h
            pix += coords["y"]
    elif "y" in coords:
        pix = coords["y"].astype(np.int32)
    else:
        pix = np.zeros(len(coords["x"]), np.int32)
    pix *= w
    pix += coords["x"]
    return pix


_CHUNK_ELEMENTS = 1 << 22


def _bin_labels(lengths: np.ndarray, total: int) -> np.ndarray:
    """``np.repeat(arange(T), lengths)`` as int32, via a cumulative sum (np.repeat is slow)."""
    marks = np.zeros(total, np.int32)
    bounds = np.cumsum(lengths)[:-1]
    np.add.at(marks, bounds[bounds < total], 1)  # empty bins stack on one boundary
    return np.cumsum(marks, out=marks)


def to_window_frames(
    events: np.ndarray,
    sensor_size: SensorSize,
    n_time_bins: int,
    t_start: int,
    t_end: int,
    *,
    clamp: int | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """Bin events of the window ``[t_start, t_end)`` into ``T`` equal time bins.

    Bin ``i`` holds events with ``t_start + i * L / T <= t < t_start + (i + 1) * L / T`` where
    ``L = t_end - t_start`` (exact integer arithmetic: bin = ``(t - t_start) * T // L``). Events
    outside the window are ignored; the events need not be sorted.

    Args:
        events: structured array with ``t``, ``x``, ``y``, ``p``.
        sensor_size: ``(W, H, P)``.
        n_time_bins: ``T``.
        t_start: window start (µs, inclusive).
        t_end: window end (µs, exclusive), ``> t_start``.
        clamp: clip counts to ``[0, clamp]``.
        dtype: output dtype.

    Returns:
        Frames ``(T, P, H, W)``; all zeros when no event falls in the window.

    Raises:
        ValueError: ``t_end <= t_start``, ``n_time_bins < 1`` or events outside the sensor.
    """
    sensor_size = tuple(int(v) for v in sensor_size)
    if t_end <= t_start:
        raise ValueError(f"t_end must be > t_start, got [{t_start}, {t_end})")
    if n_time_bins < 1:
        raise ValueError(f"n_time_bins must be >= 1, got {n_time_bins}")
    _check_events(events, sensor_size)
    t = events["t"]
    inside = (t >= t_start) & (t < t_end)
    if bool(inside.all()):
        index: np.ndarray | slice = slice(None)
        rel = t - t_start
    else:
        index = np.flatnonzero(inside)
        rel = t[index] - t_start
    bins = rel.astype(np.int64) * n_time_bins // (int(t_end) - int(t_start))
    return _accumulate(events, sensor_size, bins, n_time_bins, index, dtype, clamp, len(bins))


def to_window_frames_torch(
    t,
    x,
    y,
    p,
    sensor_size: SensorSize,
    n_time_bins: int,
    t_start: int,
    t_end: int,
    *,
    clamp: int | None = None,
    dtype=None,
):
    """:func:`to_window_frames` on torch tensors, on any device (e.g. events already on a GPU).

    Args:
        t: int64 timestamps ``[N]`` (µs).
        x: integer x coordinates ``[N]``.
        y: integer y coordinates ``[N]``.
        p: polarities ``[N]`` (bool or 0/1); ignored for single-polarity sensors.
        sensor_size: ``(W, H, P)``.
        n_time_bins: ``T``.
        t_start: window start (µs, inclusive).
        t_end: window end (µs, exclusive).
        clamp: clip counts to ``[0, clamp]``.
        dtype: output dtype (default float32).

    Returns:
        Frames ``(T, P, H, W)`` on the events' device, equal to :func:`to_window_frames`.

    Raises:
        ValueError: a bad window or coordinates outside the sensor.
    """
    import torch

    w, h, n_pol = (int(v) for v in sensor_size)
    if t_end <= t_start:
        raise ValueError(f"t_end must be > t_start, got [{t_start}, {t_end})")
    if n_time_bins < 1:
        raise ValueError(f"n_time_bins must be >= 1, got {n_time_bins}")
    dtype = dtype or torch.float32
    inside = (t >= t_start) & (t < t_end)
    t, x, y = t[inside].long(), x[inside].long(), y[inside].long()
    if len(x) and (
        bool((x < 0).any()) or bool((x >= w).any()) or bool((y < 0).any()) or bool((y >= h).any())
    ):
        raise ValueError(f"events lie outside the {w}x{h} sensor; drop them first")
    bins = (t - t_start) * n_time_bins // (int(t_end) - int(t_start))
    flat = bins * n_pol
    if n_pol > 1:
        flat = flat + p[inside].long()
    flat = (flat * h + y) * w + x
    out = torch.zeros(n_time_bins * n_pol * h * w, dtype=dtype, device=flat.device)
    out.index_add_(0, flat, torch.ones(1, dtype=dtype, device=flat.device).expand(len(flat)))
    if clamp is not None:
        out.clamp_(max=clamp)
    return out.reshape(n_time_bins, n_pol, h, w)  # (T, P, H, W)


# ------------------------------------------------------------------------ fused window binning
# The data contract's transform (window -> sensor map -> T bins -> polarity -> clamp) in one pass
# over the events, without the intermediate arrays of the step-by-step path: a numba kernel on the
# CPU and its torch twin for events already on a device. Both take the sensor map as lookup
# tables, so any representation that needs a (bin, polarity, y, x) index per event can reuse it.


def window_bin_edges(t_start: int, t_end: int, n_time_bins: int) -> np.ndarray:
    """``[T + 1]`` int64 edges: bin ``k`` holds ``edges[k] <= t < edges[k + 1]``.

    ``edges[k] = t_start + ceil(k * L / T)`` with ``L = t_end - t_start``, so an integer ``t`` lies
    in bin ``(t - t_start) * T // L`` exactly, the rule of :func:`to_window_frames`.
    """
    length = int(t_end) - int(t_start)
    k = np.arange(n_time_bins + 1, dtype=np.int64)
    return int(t_start) + (k * length + n_time_bins - 1) // n_time_bins


def _count_window(t, x, y, p, edges, x_off, y_off, n_pol, p_valid, cap, strict, out):
    # x_off[x]: input column of sensor column x; y_off[y]: input row * W'; negative: cropped.
    # out: (T, P, H', W') zeros. Returns 0, or 1 for an event outside the sensor, 2 for a
    # polarity outside 0..P-1, 3 for an event outside the window when ``strict``: the caller
    # then takes the step-by-step path, which handles or reports them.
    n_bins = edges.shape[0] - 1
    t_lo, t_hi = edges[0], edges[n_bins]
    w, h = np.uint64(x_off.shape[0]), np.uint64(y_off.shape[0])
    flat = out.reshape(-1)
    plane = out.shape[2] * out.shape[3]
    has_cap = cap < np.inf
    k, lo, hi, base = 0, edges[0], edges[1], 0
    for i in range(t.shape[0]):
        ti = np.int64(t[i])
        if ti < lo or ti >= hi:  # another bin (events are usually time ordered)
            if ti < t_lo or ti >= t_hi:
                if strict:
                    return 3
                continue
            while ti >= edges[k + 1]:
                k += 1
            while ti < edges[k]:
                k -= 1
            lo, hi, base = edges[k], edges[k + 1], k * n_pol * plane
        xi, yi = np.uint64(np.int64(x[i])), np.uint64(np.int64(y[i]))
        if xi >= w or yi >= h:  # negative coordinates wrap around to huge values
            return 1
        j = np.int64(x_off[xi]) + np.int64(y_off[yi])
        if j < 0:
            continue  # cropped away
        j += base
        if n_pol > 1:
            pi = np.int64(p[i])
            if not p_valid and (pi < 0 or pi >= n_pol):
                return 2
            j += pi * plane
        if has_cap:
            if flat[j] < cap:  # saturate at the clamp
                flat[j] += 1
        else:
            flat[j] += 1
    return 0


_window_kernel = _compiled(_count_window)  # behind :func:`count_window_mapped`


@dataclass(frozen=True, eq=False)
class SensorMap:
    """Where each sensor pixel lands on the model input (a spatial transform as lookup tables).

    Attributes:
        x_lut: ``[W]`` int32, the input column of each sensor column (``-1``: cropped away).
        y_lut: ``[H]`` int32, the input row of each sensor row (``-1``: cropped away).
        shift: ``(dx, dy)`` for crops and pads: coordinates outside the sensor move by it and count
            when they land inside the input (as :class:`~sdt3_event.events.transforms.CropOrPad`
            does); ``None`` (resize): a coordinate outside the sensor is an error.
        out_size: ``(H', W')`` of the model input.
    """

    x_lut: np.ndarray
    y_lut: np.ndarray
    shift: tuple[int, int] | None
    out_size: tuple[int, int]
    _device_luts: dict = field(default_factory=dict, repr=False)

    @functools.cached_property
    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_off, y_off)`` int64: the input column of each sensor column and the flat offset
        (row * W') of each sensor row; cropped entries are negative enough that any sum is."""
        gone = np.int64(-(1 << 40))
        x, y = self.x_lut.astype(np.int64), self.y_lut.astype(np.int64)
        return np.where(x >= 0, x, gone), np.where(y >= 0, y * self.out_size[1], gone)

    def luts(self, device):
        """``(x_lut, y_lut)`` as int64 tensors on ``device`` (made once per device)."""
        import torch

        key = str(device)
        if key not in self._device_luts:
            self._device_luts[key] = tuple(
                torch.as_tensor(a.astype(np.int64), device=device) for a in (self.x_lut, self.y_lut)
            )
        return self._device_luts[key]


_KERNEL_MAX_EVENTS = 1 << 24  # float32 counts are exact up to 2**24


def count_window_mapped(
    events: np.ndarray,
    sensor_map: SensorMap,
    n_time_bins: int,
    n_pol: int,
    t_start: int,
    t_end: int,
    *,
    clamp: int | None = None,
    check_all: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray | None:
    """Window, sensor map, ``T`` bins, polarity and clamp in one compiled pass -> float32 frames.

    Equal to filtering ``[t_start, t_end)``, mapping coordinates with ``sensor_map``, merging the
    polarities when ``n_pol == 1`` and calling :func:`to_window_frames`.

    Args:
        events: structured array with integer ``t``, ``x``, ``y`` and bool / integer ``p``.
        sensor_map: the spatial mapping (see :class:`SensorMap`).
        n_time_bins / t_start / t_end / clamp: as in :func:`to_window_frames`.
        check_all: the events were not cut to the window (a whole clip): one outside it sends
            the call to the step-by-step path, which checks it too.
        out: ``(T, P, H', W')`` float32 counts to add to (streaming: one chunk after another
            gives the counts of all of them, clamp included); default fresh zeros. Left partly
            updated when the call returns ``None``.

    Returns:
        Frames ``(T, P, H', W')`` float32, or ``None`` when the compiled path does not apply (no
        numba, other dtypes, more than 2**24 events, events outside the sensor or the window):
        the step-by-step path then gives the result or the detailed error.
    """
    kernel = _window_kernel()
    names = events.dtype.names or ()
    if kernel is None or not all(f in names for f in "txyp") or len(events) > _KERNEL_MAX_EVENTS:
        return None
    dt = [events.dtype[f] for f in "txyp"]
    if not all(d.kind == "i" or (d.kind == "u" and d.itemsize < 8) for d in dt[:3]):
        return None
    if not (dt[3].kind in "iu" or dt[3] == np.bool_) or t_end <= t_start or n_time_bins < 1:
        return None
    if out is None:
        out = np.zeros((n_time_bins, n_pol, *sensor_map.out_size), np.float32)  # (T, P, H, W)
    x_off, y_off = sensor_map.offsets
    p = events["p"]
    status = kernel(
        events["t"],
        events["x"],
        events["y"],
        p.view(np.uint8) if dt[3] == np.bool_ else p,
        window_bin_edges(t_start, t_end, n_time_bins),
        x_off,
        y_off,
        n_pol,
        dt[3] == np.bool_,  # 0 / 1 index any sensor with P >= 2
        np.float32(np.inf if clamp is None else clamp),
        check_all,
        out,
    )
    return out if status == 0 else None


def count_window_mapped_torch(
    t,
    x,
    y,
    p,
    sensor_map: SensorMap,
    n_time_bins: int,
    n_pol: int,
    t_start: int,
    t_end: int,
    *,
    clamp: int | None = None,
):
    """:func:`count_window_mapped` on torch tensors, on any device: a scatter-add into the frames.

    Args:
        t / x / y / p: the events' fields ``[N]`` (integer; ``p`` bool or integer), on one device.
        sensor_map, n_time_bins, n_pol, t_start, t_end, clamp: as in :func:`count_window_mapped`.

    Returns:
        Frames ``(T, P, H', W')`` float32 on the events' device.

    Raises:
        ValueError: a coordinate outside the sensor that the map cannot place (resize), or a
            polarity that indexes no channel.
    """
    import torch

    device = t.device
    h_out, w_out = sensor_map.out_size
    out = torch.zeros(n_time_bins * n_pol * h_out * w_out, dtype=torch.float32, device=device)
    inside = (t >= t_start) & (t < t_end)
    t, x, y = t[inside].long(), x[inside].long(), y[inside].long()
    x_lut, y_lut = sensor_map.luts(device)
    w, h = len(sensor_map.x_lut), len(sensor_map.y_lut)
    x_in, y_in = (x >= 0) & (x < w), (y >= 0) & (y < h)
    if sensor_map.shift is None:
        if not bool((x_in & y_in).all()):
            raise ValueError(f"events lie outside the {w}x{h} sensor; drop them first")
        xo, yo = x_lut[x], y_lut[y]
    else:
        dx, dy = sensor_map.shift
        xo = torch.where(x_in, x_lut[x.clamp(0, w - 1)], x + dx)
        yo = torch.where(y_in, y_lut[y.clamp(0, h - 1)], y + dy)
    keep = (xo >= 0) & (xo < w_out) & (yo >= 0) & (yo < h_out)
    flat = (t - int(t_start)) * n_time_bins // (int(t_end) - int(t_start))  # the time bin
    if n_pol > 1:
        pol = p[inside].long()
        if bool((keep & ((pol < 0) | (pol >= n_pol))).any()):
            raise ValueError(f"polarity values do not index the sensor's {n_pol} channels")
        flat = flat * n_pol + pol
    flat = ((flat * h_out + yo) * w_out + xo)[keep]
    out.index_add_(0, flat, torch.ones(1, dtype=out.dtype, device=device).expand(len(flat)))
    if clamp is not None:
        out.clamp_(max=clamp)
    return out.reshape(n_time_bins, n_pol, h_out, w_out)  # (T, P, H, W)
