"""Pure drawing helpers of the terminal monitor: event frames as half-block cells, braille line plots,
bars and number formatting. No Textual here (only Rich's text primitives), so they are tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

# Display colours (RGB) of the two polarities and of the background.
ON_RGB = np.array([255, 92, 40], dtype=np.float32)
OFF_RGB = np.array([48, 160, 255], dtype=np.float32)
BACKGROUND_RGB = (12, 12, 16)
# Levels per colour channel after quantisation: keeps the number of distinct cell styles small.
_LEVELS = 16


def as_display_frame(frame: np.ndarray | None) -> np.ndarray | None:
    """Bring what a record carries to ``(P, H, W)``: sums ``(T, P, H, W)`` over T, lifts ``(H, W)``.

    Returns ``None`` for anything else (nothing to draw).
    """
    if frame is None:
        return None
    f = np.asarray(frame)
    if f.ndim == 4:
        f = f.sum(axis=0)  # (T, P, H, W) -> (P, H, W)
    elif f.ndim == 2:
        f = f[None]  # (H, W) -> (1, H, W)
    if f.ndim != 3 or min(f.shape) == 0:
        return None
    return f


def fit_cells(frame_hw: tuple[int, int], cells_wh: tuple[int, int]) -> tuple[int, int]:
    """The largest ``(H, W)`` pixel grid that fits ``cells_wh`` half-block cells at the frame's aspect.

    A half-block cell shows two pixels stacked vertically, and terminal cells are about twice as tall
    as wide, so pixels come out square.

    Args:
        frame_hw: ``(H, W)`` of the sensor frame.
        cells_wh: ``(columns, rows)`` available.

    Returns:
        ``(H_out, W_out)`` in pixels; ``H_out`` is even; ``(0, 0)`` when nothing fits.
    """
    h, w = frame_hw
    cols, rows = cells_wh
    if h <= 0 or w <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / w, 2 * rows / h)
    out_w = max(1, min(cols, round(w * scale)))
    out_h = max(2, min(2 * rows, 2 * round(h * scale / 2)))
    return out_h, out_w


def _edges(n_in: int, n_out: int) -> np.ndarray:
    """Start index in ``[0, n_in)`` of each of ``n_out`` output bins."""
    return np.minimum((np.arange(n_out) * n_in) // n_out, n_in - 1)


def resample_counts(frame: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Resize event counts: sum over each output pixel's area when shrinking, repeat when growing.

    Shape:
        frame: ``(P, H, W)``; returns ``(P, H_out, W_out)`` float32.
    """
    out_h, out_w = out_hw
    f = np.asarray(frame, dtype=np.float32)
    # reduceat sums each block; a repeated start index (upscaling) returns that single element.
    f = np.add.reduceat(f, _edges(f.shape[1], out_h), axis=1)  # (P, H_out, W)
    return np.add.reduceat(f, _edges(f.shape[2], out_w), axis=2)  # (P, H_out, W_out)


def frame_to_rgb(frame: np.ndarray) -> np.ndarray:
    """Colour an event-count frame: ON and OFF in two colours, log-scaled, auto-gained.

    Channel 0 is OFF and channel 1 is ON (Tonic's polarity order, ``p=False`` first); a single
    channel is drawn in the ON colour. Any pixel with an event is at least a quarter bright.

    Shape:
        frame: ``(P, H, W)`` counts; returns ``(H, W, 3)`` uint8 RGB.
    """
    f = np.nan_to_num(np.asarray(frame, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if f.ndim != 3:
        raise ValueError(f"expected a (P, H, W) frame, got shape {f.shape}")
    if f.shape[0] >= 2:
        off, on = np.clip(f[0], 0, None), np.clip(f[1], 0, None)
    else:
        off, on = np.zeros_like(f[0]), np.clip(f[0], 0, None)
    peak = max(float(on.max(initial=0.0)), float(off.max(initial=0.0)), 1.0)
    norm = math.log1p(peak)

    def level(c: np.ndarray) -> np.ndarray:
        v = np.log1p(c) / norm
        return np.where(c > 0, 0.25 + 0.75 * v, 0.0)[..., None]  # (H, W, 1)

    rgb = np.asarray(BACKGROUND_RGB, np.float32) + level(on) * ON_RGB + level(off) * OFF_RGB
    return np.clip(rgb, 0, 255).astype(np.uint8)


_STYLES: dict[int, Style] = {}


def _pair_style(code: int) -> Style:
    """The ``▀`` style of a quantised (top, bottom) colour pair code (cached)."""
    style = _STYLES.get(code)
    if style is None:
        from rich.color import Color

        top, bottom = divmod(code, _LEVELS**3)
        colors = []
        for c in (top, bottom):
            r, rest = divmod(c, _LEVELS * _LEVELS)
            g, b = divmod(rest, _LEVELS)
            step = 256 // _LEVELS
            colors.append(Color.from_rgb(*(v * step + step // 2 for v in (r, g, b))))
        style = _STYLES[code] = Style.from_color(colors[0], colors[1])
    return style


def halfblock_rows(rgb: np.ndarray) -> list[list[Segment]]:
    """Turn an RGB image into rows of ``▀`` cells (top pixel = foreground, bottom = background).

    Colours are quantised to ``_LEVELS`` levels per channel and runs of equal cells merged, so a
    row costs one segment per colour change, not one per cell.

    Shape:
        rgb: ``(H, W, 3)`` uint8 with ``H`` even; returns ``H / 2`` rows of segments, ``W`` cells each.
    """
    h, w, _ = rgb.shape
    q = (rgb.astype(np.int64) * _LEVELS) // 256  # (H, W, 3) in [0, _LEVELS)
    code = (q[..., 0] * _LEVELS + q[..., 1]) * _LEVELS + q[..., 2]  # (H, W) colour index
    code = code.reshape(h // 2, 2, w)  # (rows, top/bottom, W)
    pair = code[:, 0] * _LEVELS**3 + code[:, 1]  # (rows, W) cell index
    rows: list[list[Segment]] = []
    for r in range(h // 2):
        line = pair[r]
        starts = np.flatnonzero(np.r_[True, line[1:] != line[:-1]])
        ends = np.r_[starts[1:], w]
        rows.append(
            [
                Segment("▀" * int(e - s0), _pair_style(int(line[s0])))
                for s0, e in zip(starts, ends, strict=True)
            ]
        )
    return rows


_BRAILLE_BASE = 0x2800
# Dot bit of braille sub-pixel (x in 0..1, y in 0..3, y down).
_BRAILLE_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def braille_plot(
    series: Sequence[Sequence[tuple[float, float]]],
    width: int,
    height: int,
    colors: Sequence[str],
    *,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
) -> list[Text]:
    """Draw line plots with braille dots (2x4 dots per cell), one colour per series.

    Args:
        series: each a sequence of ``(x, y)`` points, x increasing.
        width / height: size in cells.
        colors: a Rich colour per series (where two series share a cell, the later one wins).
        y_range / x_range: fixed axis limits; by default the data's extent.

    Returns:
        ``height`` lines of ``width`` cells, top line first.
    """
    width, height = max(1, width), max(1, height)
    pts = [p for s in series for p in s]
    if not pts:
        return [Text(" " * width) for _ in range(height)]
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = x_range if x_range is not None else (min(xs), max(xs))
    y0, y1 = y_range if y_range is not None else (min(ys), max(ys))
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x0 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y0 + 0.5
    dots_w, dots_h = 2 * width, 4 * height
    bits = np.zeros((height, width), dtype=np.int32)
    owner = np.full((height, width), -1, dtype=np.int32)

    def to_dot(x: float, y: float) -> tuple[int, int]:
        dx = round((x - x0) / (x1 - x0) * (dots_w - 1))
        dy = round((y1 - y) / (y1 - y0) * (dots_h - 1))
        return min(max(dx, 0), dots_w - 1), min(max(dy, 0), dots_h - 1)

    for k, s in enumerate(series):
        prev: tuple[int, int] | None = None
        for x, y in s:
            cur = to_dot(x, y)
            if prev is None:
                line = [cur]
            else:
                n = max(abs(cur[0] - prev[0]), abs(cur[1] - prev[1]), 1)
                line = [
                    (
                        round(prev[0] + (cur[0] - prev[0]) * i / n),
                        round(prev[1] + (cur[1] - prev[1]) * i / n),
                    )
                    for i in range(1, n + 1)
                ]
            for dx, dy in line:
                cy, cx = dy // 4, dx // 2
                bits[cy, cx] |= _BRAILLE_BITS[dx % 2][dy % 4]
                owner[cy, cx] = k
            prev = cur
    lines: list[Text] = []
    for r in range(height):
        text = Text()
        for c in range(width):
            b = int(bits[r, c])
            if b:
                text.append(chr(_BRAILLE_BASE + b), style=colors[owner[r, c] % len(colors)])
            else:
                text.append(" ")
        lines.append(text)
    return lines


_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (clipped to ``[0, 1]``)."""
    if width <= 0:
        return ""
    if not math.isfinite(fraction):
        fraction = 0.0
    eighths = round(min(1.0, max(0.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    s = "█" * full + (_EIGHTHS[part] if part else "")
    return s.ljust(width)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``, or ``None`` when empty."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def format_duration(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``m:ss``); ``--`` for unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--"
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_count(n: float) -> str:
    """A count with a k/M/G suffix: ``12.3k``."""
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    if n and abs(n) < 100 and n != round(n):
        return f"{n:.3g}"  # a slow CPU run: 2.4 samples/s, not 2
    return f"{n:.0f}"


def format_num(value: float | None, fmt: str = "{:.2f}") -> str:
    """``fmt`` applied to ``value``; ``--`` when unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "--"
    return fmt.format(value)


def save_snapshot(frame: np.ndarray, path, *, min_side: int = 384, caption: str = "") -> None:
    """Write an event frame as a PNG, in the monitor's colours, upscaled (nearest) for viewing.

    Args:
        frame: ``(P, H, W)`` event counts.
        path: the ``.png`` file to write (its folder must exist).
        min_side: upscale by an integer factor until the shorter side is at least this.
        caption: text drawn in the top-left corner (e.g. the predicted label).

    Raises:
        OSError: the image could not be written.
    """
    import cv2

    rgb = frame_to_rgb(frame)  # (H, W, 3)
    factor = max(1, math.ceil(min_side / max(1, min(rgb.shape[:2]))))
    img = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)  # (H*f, W*f, 3)
    bgr = np.ascontiguousarray(img[..., ::-1])
    if caption:
        cv2.putText(bgr, caption, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write the snapshot {path}; check that its folder is writable")
