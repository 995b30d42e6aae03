"""The letterbox sensor map keeps the aspect ratio; EventFolder reads each file's own sensor."""

from __future__ import annotations

import numpy as np
import pytest
from sdt3_event.datasets import EventFolder

from sdt3_event.events import DataContract, Letterbox, build_frame_transform, write_events
from sdt3_event.events.contract import auto_spatial
from sdt3_event.events.schema import make_events


def corners(w: int, h: int) -> np.ndarray:
    return make_events([0, 1, 2, 3], [0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1], [1, 1, 0, 0])


@pytest.mark.parametrize(
    ("w", "h", "out"), [(640, 480, (64, 64)), (346, 260, (32, 48)), (5, 7, (9, 3))]
)
def test_letterbox_keeps_the_aspect_ratio_and_stays_inside(w, h, out):
    mapped = Letterbox((w, h, 2), out)(corners(w, h))
    xs, ys = mapped["x"].astype(int), mapped["y"].astype(int)
    assert xs.min() >= 0 and ys.min() >= 0 and xs.max() < out[1] and ys.max() < out[0]
    span_w, span_h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(span_w / span_h - w / h) <= 1.0 / min(span_w, span_h) + 1e-9  # not squashed
    assert min(out[1] - span_w, out[0] - span_h) <= 1  # fills one axis
    # centred: the empty bands on each side differ by at most one pixel
    assert abs(xs.min() - (out[1] - 1 - xs.max())) <= 1
    assert abs(ys.min() - (out[0] - 1 - ys.max())) <= 1


def test_letterbox_keeps_empty_input_and_auto_picks_it_for_another_aspect():
    assert len(Letterbox((640, 480, 2), (64, 64))(corners(4, 4)[:0])) == 0
    assert auto_spatial((640, 480), (64, 64)) == "letterbox"
    assert auto_spatial((128, 128), (64, 64)) == "resize"


def _folder(root, sizes):
    for name, (w, h) in sizes.items():
        (root / name).mkdir(parents=True)
        write_events(root / name / "a.npz", corners(w, h), (w, h, 2))
    return root


def test_event_folder_reads_each_files_own_sensor(tmp_path, caplog):
    root = _folder(tmp_path, {"big": (640, 480), "small": (32, 24)})
    ds = EventFolder(root)
    assert ds.sensor_size == (640, 480, 2)  # the first file's, for the data contract
    assert ds.read(1)[1] == (32, 24, 2)  # not the first file's size
    contract = DataContract((640, 480, 2), (24, 32), 2, spatial="letterbox")
    ds.transform = build_frame_transform(contract)
    for i in range(2):
        frames, _ = ds[i]
        assert tuple(frames.shape) == (2, 2, 24, 32) and float(frames.sum()) == 4.0  # none lost
    assert "was given" not in caplog.text


def test_event_folder_refuses_another_sensor_without_a_contract_naming_the_file(tmp_path):
    root = _folder(tmp_path, {"big": (640, 480), "small": (32, 24)})
    ds = EventFolder(root, transform=lambda ev: ev)
    assert len(ds[0][0]) == 4
    with pytest.raises(ValueError, match=r"small/a\.npz.*32x24"):
        ds[1]
