"""Every reader on the real recordings in ../shared/data/recordings (facts from its README),
compared with the peer readers (Tonic, expelliarmus) where they exist."""

from __future__ import annotations

import numpy as np
import pytest

from sdt3_event.events.io import FORMATS, detect_format, read_events, read_events_with_report
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError

# file, sensor_size to pass, expected format, events, first t, last t, sensor size
REAL = [
    (
        "dvxplorer_320x240.aedat4",
        None,
        "aedat4",
        111_954,
        1_605_537_493_718_345,
        1_605_537_494_308_262,
        (320, 240, 2),
    ),
    (
        "davis346_346x260.aedat4",
        None,
        "aedat4",
        117_667,
        1_633_953_690_975_950,
        1_633_953_691_105_949,
        (346, 260, 2),
    ),
    (
        "prophesee_gen3_640x480_evt2.raw",
        (640, 480, 2),
        "evt2",
        521_252,
        913_716_224,
        913_812_095,
        (640, 480, 2),
    ),
    ("ncars_atis.dat", None, "dat", 2_009, 0, 99_952, None),
    ("nmnist_34x34.bin", None, "nmnist", 4_325, 654, 311_175, (34, 34, 2)),
]


@pytest.mark.parametrize("name, given, fmt, n, t0, t1, sensor", REAL, ids=[r[0] for r in REAL])
def test_io_real_recording_facts(recordings_dir, name, given, fmt, n, t0, t1, sensor):
    path = recordings_dir / name
    assert detect_format(path) == fmt
    events, sensor_size = read_events(path, given)
    assert events.dtype == EVENT_DTYPE
    assert len(events) == n
    assert int(events["t"][0]) == t0 and int(events["t"][-1]) == t1
    assert sensor_size == sensor
    assert np.all(np.diff(events["t"]) >= 0)
    if sensor is not None:
        assert events["x"].max() < sensor[0] and events["y"].max() < sensor[1]
    assert events["x"].min() >= 0 and events["y"].min() >= 0
    assert 0 < events["p"].mean() < 1  # both polarities present


def test_io_real_readme_facts(recordings_dir):
    # README: DVXplorer 0.590 s at ~49 % ON; DAVIS346 0.130 s at 61 % ON, starting 2021-10-11 12:01:30 UTC
    ev, _ = read_events(recordings_dir / "dvxplorer_320x240.aedat4")
    assert round((int(ev["t"][-1]) - int(ev["t"][0])) / 1e6, 2) == 0.59
    assert round(float(ev["p"].mean()), 2) == 0.49
    ev, _ = read_events(recordings_dir / "davis346_346x260.aedat4")
    assert round(float(ev["p"].mean()), 2) == 0.61
    assert int(ev["t"][0]) // 1_000_000 == 1_633_953_690  # 2021-10-11T12:01:30Z
    ev, _ = read_events(recordings_dir / "ncars_atis.dat")
    assert int(ev["x"].max()) <= 77 and int(ev["y"].max()) <= 41


def test_io_real_evt2_needs_sensor_size(recordings_dir):
    with pytest.raises(EventFormatError, match="sensor_size") as info:
        read_events(recordings_dir / "prophesee_gen3_640x480_evt2.raw")
    assert "prophesee_gen3_640x480_evt2.raw" in str(info.value)


def test_io_real_evt2_too_small_sensor_raises_or_drops(recordings_dir):
    path = recordings_dir / "prophesee_gen3_640x480_evt2.raw"
    with pytest.raises(EventFormatError, match="outside the 320x240 sensor"):
        read_events(path, (320, 240, 2))
    report = read_events_with_report(path, (320, 240, 2), drop_out_of_range=True)
    full, _ = read_events(path, (640, 480, 2))
    inside = (full["x"] < 320) & (full["y"] < 240)
    assert report.n_dropped == int(np.count_nonzero(~inside))
    np.testing.assert_array_equal(report.events, full[inside])


@pytest.mark.parametrize("name", ["dvxplorer_320x240.aedat4", "davis346_346x260.aedat4"])
def test_io_real_aedat4_equals_tonic(recordings_dir, name):
    from tonic.io import read_aedat4

    ref = read_aedat4(str(recordings_dir / name))
    events, _ = read_events(recordings_dir / name)
    for field in ("t", "x", "y"):
        np.testing.assert_array_equal(events[field], ref[field].astype(np.int64))
    np.testing.assert_array_equal(events["p"], ref["p"].astype(bool))


@pytest.mark.parametrize(
    "name, encoding, sensor",
    [("prophesee_gen3_640x480_evt2.raw", "evt2", (640, 480, 2)), ("ncars_atis.dat", "dat", None)],
)
def test_io_real_prophesee_equals_expelliarmus(recordings_dir, name, encoding, sensor):
    from expelliarmus import Wizard

    ref = Wizard(encoding=encoding).read(recordings_dir / name)
    events, _ = read_events(recordings_dir / name, sensor)
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(events[field].astype(np.int64), ref[field].astype(np.int64))


def test_io_real_nmnist_equals_tonic(recordings_dir):
    from tonic.io import read_mnist_file

    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    ref = read_mnist_file(str(recordings_dir / "nmnist_34x34.bin"), dtype=dtype)
    events, _ = read_events(recordings_dir / "nmnist_34x34.bin")
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(events[field].astype(np.int64), ref[field])


def test_io_real_davis346_skips_frames_and_imu(recordings_dir):
    # the DAVIS346 file also holds APS frames and IMU packets: only the events stream is read
    report = read_events_with_report(recordings_dir / "davis346_346x260.aedat4")
    assert report.format == "aedat4" and report.truncated_bytes == 0
    assert report.n_dropped == 0 and report.n_reordered == 0


def test_io_formats_table_is_consistent():
    assert set(FORMATS) == {
        "aedat4",
        "aedat3",
        "aedat2",
        "evt2",
        "evt3",
        "dat",
        "npz",
        "hdf5",
        "nmnist",
    }
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.extensions and fmt.description
        assert all(e.startswith(".") and e == e.lower() for e in fmt.extensions)
