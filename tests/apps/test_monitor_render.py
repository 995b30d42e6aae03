"""Drawing helpers of the monitor: scaling, colours, half-block cells, braille plots, snapshots."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sdt3_event.apps.tui.render import (
    BACKGROUND_RGB,
    as_display_frame,
    bar,
    braille_plot,
    fit_cells,
    format_count,
    format_duration,
    frame_to_rgb,
    halfblock_rows,
    resample_counts,
    save_snapshot,
)


@pytest.mark.parametrize(
    ("frame_hw", "cells", "expected"),
    [
        ((128, 128), (100, 20), (40, 40)),  # height-bound: 20 rows hold 40 pixel rows
        ((128, 128), (30, 40), (30, 30)),  # width-bound
        ((260, 346), (173, 200), (130, 173)),  # DAVIS346 at half size, aspect kept
        ((4, 4), (80, 24), (48, 48)),  # small sensors are enlarged
    ],
)
def test_fit_cells_keeps_aspect_and_fits(frame_hw, cells, expected):
    out_h, out_w = fit_cells(frame_hw, cells)
    assert (out_h, out_w) == expected
    assert out_w <= cells[0] and out_h <= 2 * cells[1] and out_h % 2 == 0


def test_fit_cells_nothing_fits():
    assert fit_cells((128, 128), (0, 10)) == (0, 0)


def test_resample_counts_sums_when_shrinking_and_repeats_when_growing():
    rng = np.random.default_rng(0)
    frame = rng.poisson(1.0, size=(2, 64, 48)).astype(np.float32)
    small = resample_counts(frame, (16, 12))
    assert small.shape == (2, 16, 12)
    np.testing.assert_allclose(small.sum(axis=(1, 2)), frame.sum(axis=(1, 2)))
    big = resample_counts(np.arange(4, dtype=np.float32).reshape(1, 2, 2), (4, 4))
    np.testing.assert_array_equal(big[0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_frame_to_rgb_colours_polarities():
    frame = np.zeros((2, 2, 3), dtype=np.float32)
    frame[1, 0, 0] = 5  # ON
    frame[0, 0, 1] = 5  # OFF
    frame[1, 1, 1] = 1  # a single ON event is still visible
    rgb = frame_to_rgb(frame)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    on, off, empty, faint = rgb[0, 0], rgb[0, 1], rgb[1, 0], rgb[1, 1]
    assert on[0] > on[2] and off[2] > off[0]
    assert tuple(empty) == BACKGROUND_RGB
    assert faint.astype(int).sum() > np.sum(BACKGROUND_RGB) + 60
    with pytest.raises(ValueError, match="P, H, W"):
        frame_to_rgb(np.zeros((4, 4)))


def test_halfblock_rows_cover_the_width():
    rgb = frame_to_rgb(np.random.default_rng(1).poisson(0.5, (2, 10, 7)).astype(np.float32))
    rows = halfblock_rows(rgb)
    assert len(rows) == 5
    for segments in rows:
        assert "".join(s.text for s in segments) == "▀" * 7


def test_braille_plot_draws_a_rising_line_bottom_left_to_top_right():
    lines = braille_plot([[(0, 0), (1, 1)]], 10, 3, ["green"])
    assert len(lines) == 3 and all(line.cell_len == 10 for line in lines)
    assert lines[0].plain[-1] != " " and lines[0].plain[0] == " "
    assert lines[-1].plain[0] != " " and lines[-1].plain[-1] == " "
    assert all(ord(c) >= 0x2800 for line in lines for c in line.plain.strip())
    empty = braille_plot([[]], 4, 2, ["red"])
    assert [line.plain for line in empty] == ["    ", "    "]


def test_bar_and_durations():
    assert bar(1.0, 4) == "████"
    assert bar(0.0, 4) == "    "
    assert bar(0.5, 3) == "█▌ "
    assert bar(float("nan"), 2) == "  "
    assert format_duration(3725) == "1:02:05"
    assert format_duration(65) == "1:05"
    assert format_duration(None) == "--"
    assert [format_count(v) for v in (0, 2.4, 256.0, 12_345, 2.5e6)] == ["0", "2.4", "256", "12.3k", "2.5M"]  # fmt: skip


def test_save_snapshot_writes_an_upscaled_png(tmp_path):
    frame = np.zeros((2, 30, 40), dtype=np.float32)
    frame[1, 10, 20] = 3
    path = tmp_path / "snap.png"
    save_snapshot(frame, path, min_side=120, caption="wave 0.9")
    img = cv2.imread(str(path))
    assert img.shape == (120, 160, 3)
    # The ON pixel became a 4x4 block in the ON colour (BGR: red channel dominant).
    b, _, r = img[10 * 4 + 2, 20 * 4 + 2]
    assert r > b
    with pytest.raises(OSError, match="writable"):
        save_snapshot(frame, tmp_path / "missing" / "snap.png")


def test_display_frame_accepts_what_records_may_carry():
    tphw = np.ones((3, 2, 4, 5), dtype=np.float32)
    assert as_display_frame(tphw).shape == (2, 4, 5) and as_display_frame(tphw)[0, 0, 0] == 3
    assert as_display_frame(np.ones((4, 5))).shape == (1, 4, 5)
    assert as_display_frame(None) is None
    assert as_display_frame(np.ones(7)) is None
    assert as_display_frame(np.ones((2, 0, 5))) is None
    bad = np.full((2, 4, 5), np.nan, dtype=np.float32)
    bad[1, 0, 0] = np.inf
    assert tuple(frame_to_rgb(bad)[0, 0]) == BACKGROUND_RGB  # non-finite counts draw as empty
