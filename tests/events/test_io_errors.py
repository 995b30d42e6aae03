"""Bad input: every problem raises EventFormatError naming the file and the problem; nothing is
silently zero-filled; truncation and out-of-range events are only tolerated when asked, and then
counted."""

from __future__ import annotations

import logging
import struct

import h5py
import numpy as np
import pytest
from event_support import random_events

from sdt3_event.events.io import (
    detect_format,
    read_events,
    read_events_with_report,
    write_events,
)
from sdt3_event.events.schema import EventFormatError, make_events


def _events(n=2000, w=128, h=128, seed=0, t_max=1_000_000):
    return random_events(n, w, h, seed, t_max)


def _raises(path, match, **kwargs):
    with pytest.raises(EventFormatError, match=match) as info:
        read_events(path, **kwargs)
    assert str(path) in str(info.value), f"the message does not name the file: {info.value}"
    return info.value


# ----------------------------------------------------------------------------- magic numbers
@pytest.mark.parametrize(
    "name, content",
    [
        ("a.aedat4", b"#!AER-DAT2.0\r\n" + b"\0" * 64),
        ("b.aedat4", b"\x00garbage" * 8),
        ("c.aedat", b"AER-DAT3.1 without the hash" + b"\0" * 32),
        ("d.h5", b"PK\x03\x04" + b"\0" * 64),
        ("e.npz", b"\x89HDF\r\n\x1a\n" + b"\0" * 64),
        ("f.raw", b"\xff\xfe\x00\x01" * 16),
        ("g.dat", b"#!AER-DAT2.0\r\n" + b"\0" * 16),
        ("h.aedat4", b""),
    ],
)
def test_io_wrong_magic_raises_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    err = _raises(path, r"magic|extension|content")
    with pytest.raises(EventFormatError):
        detect_format(path)
    assert name in str(err)


def test_io_unsupported_versions(tmp_path):
    path = tmp_path / "old.aedat"
    path.write_bytes(b"#!AER-DAT1.0\r\n" + b"\0" * 16)
    _raises(path, "AEDAT version '1.0' is not supported")
    path = tmp_path / "v21.raw"
    path.write_bytes(b"% evt 2.1\n" + b"\0" * 16)
    _raises(path, "evt21 is not supported")
    path = tmp_path / "noenc.raw"
    path.write_bytes(b"% camera something\n" + b"\0" * 16)
    _raises(path, "names no encoding")
    # an explicit format resolves the last case
    events, _ = read_events(path, (640, 480, 2), format="evt2")
    assert len(events) == 0


def test_io_unknown_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"hello")
    _raises(path, "unknown event file")
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "missing.aedat4")
    with pytest.raises(ValueError, match="unknown format"):
        read_events(path, format="mp4")
    with pytest.raises(ValueError, match="sensor_size"):
        read_events(path, sensor_size=(0, 10, 2))


# ----------------------------------------------------------------------------- truncation
TRUNCATABLE = [
    ("aedat3", "t.aedat", (128, 128, 2), 5),
    ("aedat2", "t.aedat", (128, 128, 2), 3),
    ("evt2", "t.raw", (640, 480, 2), 2),
    ("evt3", "t.raw", (640, 480, 2), 1),
    ("dat", "t.dat", (128, 128, 2), 7),
    ("nmnist", "t.bin", (34, 34, 2), 4),
]


@pytest.mark.parametrize("fmt, name, sensor, cut", TRUNCATABLE, ids=[t[0] for t in TRUNCATABLE])
def test_io_truncated_file_raises_unless_allowed(tmp_path, caplog, fmt, name, sensor, cut):
    ev = _events(10_000, sensor[0], sensor[1])
    path = write_events(tmp_path / name, ev, sensor, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    _raises(path, "truncated", sensor_size=sensor)
    with caplog.at_level(logging.WARNING):
        report = read_events_with_report(path, sensor, allow_truncated=True)
    assert report.truncated_bytes > 0
    assert "truncated" in caplog.text
    got = report.events
    assert 0 < len(got) < len(ev)
    # the complete part is exactly the first events, nothing zero-filled
    np.testing.assert_array_equal(got, ev[: len(got)])


def test_io_truncated_real_aedat4(recordings_dir, tmp_path, caplog):
    data = (recordings_dir / "davis346_346x260.aedat4").read_bytes()
    path = tmp_path / "cut.aedat4"
    path.write_bytes(data[: len(data) // 2])
    _raises(path, "truncated or corrupt")
    with caplog.at_level(logging.WARNING):
        report = read_events_with_report(path, allow_truncated=True)
    full, _ = read_events(recordings_dir / "davis346_346x260.aedat4")
    assert 0 < len(report.events) < len(full)
    np.testing.assert_array_equal(report.events, full[: len(report.events)])
    assert report.truncated_bytes > 0 and "truncated" in caplog.text


def test_io_truncated_real_evt2(recordings_dir, tmp_path):
    data = (recordings_dir / "prophesee_gen3_640x480_evt2.raw").read_bytes()
    path = tmp_path / "cut.raw"
    path.write_bytes(data[:-3])
    _raises(path, "truncated", sensor_size=(640, 480, 2))


def test_io_truncated_containers(tmp_path):
    ev = _events()
    for name in ("c.npz", "c.h5"):
        path = write_events(tmp_path / name, ev, (128, 128, 2))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        _raises(path, "npz|HDF5")


def test_io_aedat31_corrupt_packet_header(tmp_path):
    path = write_events(tmp_path / "g.aedat", _events(), format="aedat3")
    data = bytearray(path.read_bytes())
    start = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    data[start + 4 : start + 8] = struct.pack("<i", -8)  # eventSize
    path.write_bytes(bytes(data))
    _raises(path, "corrupt AEDAT 3.1 packet header")


# ----------------------------------------------------------------------------- coordinates
def test_io_out_of_sensor_raises_or_drops_counted(tmp_path, caplog):
    path = tmp_path / "hardvs.npz"
    np.savez(path, t=[1, 2, 3, 4], x=[0, 346, 5, 400], y=[0, 1, 260, 2], p=[1, 1, 0, 0])
    _raises(path, r"3 events lie outside the 346x260 sensor", sensor_size=(346, 260, 2))
    with caplog.at_level(logging.WARNING):
        report = read_events_with_report(path, (346, 260, 2), drop_out_of_range=True)
    assert report.n_dropped == 3 and len(report.events) == 1
    assert "dropped 3 events" in caplog.text
    # without a sensor size the coordinates are only checked against int16 / negativity
    events, sensor = read_events(path)
    assert sensor is None and len(events) == 4


def test_io_file_sensor_size_is_enforced(tmp_path):
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        g["t"], g["x"], g["y"], g["p"] = [1, 2], [10, 50], [1, 2], [0, 1]
        g.attrs["sensor_size"] = [32, 32, 2]
    _raises(path, "outside the 32x32 sensor")
    events, sensor = read_events(path, drop_out_of_range=True)
    assert len(events) == 1 and sensor == (32, 32, 2)


def test_io_negative_or_huge_coordinates(tmp_path):
    path = tmp_path / "n.npz"
    np.savez(path, t=[1, 2], x=[-1, 3], y=[0, 0], p=[0, 1])
    _raises(path, "outside the int16 range")
    np.savez(path, t=[1, 2], x=[70000, 3], y=[0, 0], p=[0, 1])
    _raises(path, "outside the int16 range")


# ----------------------------------------------------------------------------- timestamps
def test_io_non_monotonic_timestamps(tmp_path):
    path = tmp_path / "u.npz"
    np.savez(path, t=[5, 3, 9], x=[0, 1, 2], y=[0, 0, 0], p=[0, 1, 0])
    _raises(path, "timestamps go backwards at event 1")
    bad = _events(100)
    bad["t"][60] = 0  # one event jumps back to the start
    bad_t = bad["t"]
    # write the byte layouts directly so the writers' own validation does not stop us
    rec = np.empty(len(bad), [("a", ">u4"), ("t", ">u4")])
    rec["a"], rec["t"] = 0, bad_t
    path = tmp_path / "u.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n" + rec.tobytes())
    _raises(path, "timestamps go backwards")
    dat = np.empty(len(bad), [("t", "<u4"), ("d", "<u4")])
    dat["t"], dat["d"] = bad_t, 0
    path = tmp_path / "u.dat"
    path.write_bytes(b"% Version 2\n" + bytes([12, 8]) + dat.tobytes())
    _raises(path, "timestamps go backwards")


def test_io_overflowing_and_negative_timestamps(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, t=np.array([1, 2**63 + 5], np.uint64), x=[0, 1], y=[0, 0], p=[0, 1])
    _raises(path, "overflows int64")
    np.savez(path, t=np.array([1.0, 1e30]), x=[0, 1], y=[0, 0], p=[0, 1])
    _raises(path, "overflows int64")
    np.savez(path, t=np.array([1.5, 2.0]), x=[0, 1], y=[0, 0], p=[0, 1])
    _raises(path, "non-integer")
    np.savez(path, t=np.array([np.nan, 2.0]), x=[0, 1], y=[0, 0], p=[0, 1])
    _raises(path, "NaN")
    np.savez(path, t=[-5, 2], x=[0, 1], y=[0, 0], p=[0, 1])
    _raises(path, "negative timestamp")


def test_io_evt2_time_base_backwards(tmp_path):
    words = [(8 << 28) | 1000, (1 << 28), (8 << 28) | 999, (1 << 28)]
    path = tmp_path / "b.raw"
    path.write_bytes(b"% evt 2.0\n" + struct.pack("<4I", *words))
    _raises(path, "time base goes backwards", sensor_size=(640, 480, 2))


def test_io_evt3_time_base_backwards(tmp_path):
    words = [(8 << 12) | 100, (0 << 12) | 1, (2 << 12) | 1, (8 << 12) | 99, (2 << 12) | 2]
    path = tmp_path / "b.raw"
    path.write_bytes(b"% evt 3.0\n" + struct.pack("<5H", *words))
    _raises(path, "time base goes backwards", sensor_size=(640, 480, 2))


def test_io_aedat4_corrupt_header_is_rejected(recordings_dir, tmp_path):
    # a non-UTF-8 XML description (it once aborted the process inside the Rust decoder) and an
    # IOHeader size past the end of the file both raise, naming the file
    data = bytearray((recordings_dir / "dvxplorer_320x240.aedat4").read_bytes())
    at = data.index(b"<dv version")
    data[at + 20 : at + 23] = b"\xe6hA"
    path = tmp_path / "bad_xml.aedat4"
    path.write_bytes(bytes(data))
    _raises(path, "not UTF-8 XML")
    data = bytearray((recordings_dir / "dvxplorer_320x240.aedat4").read_bytes())
    data[14:18] = (10**9).to_bytes(4, "little")  # an IOHeader size past the end of the file
    path.write_bytes(bytes(data))
    _raises(path, "header length 1000000000 is not plausible")


def test_io_aedat4_sensor_from_the_stream_description(recordings_dir):
    from sdt3_event.events.aedat4 import Aedat4File

    with Aedat4File(recordings_dir / "davis346_346x260.aedat4") as f:
        assert f.sensor_size == (346, 260, 2)


def test_io_aedat4_content_in_dot_aedat(recordings_dir, tmp_path):
    path = tmp_path / "renamed.aedat"
    path.write_bytes((recordings_dir / "dvxplorer_320x240.aedat4").read_bytes())
    assert detect_format(path) == "aedat4"
    events, sensor = read_events(path)
    assert len(events) == 111_954 and sensor == (320, 240, 2)


def test_io_aedat31_negative_overflow_counter(tmp_path):
    header = b"#!AER-DAT3.1\r\n#!END-HEADER\r\n"
    packet = struct.pack("<hhiiiiii", 1, 1, 8, 4, -1, 1, 1, 1) + struct.pack("<Ii", 3, 5)
    path = tmp_path / "n.aedat"
    path.write_bytes(header + packet)
    _raises(path, "negative timestamp overflow")


# ----------------------------------------------------------------------------- corrupt records
def test_io_corrupt_records(tmp_path):
    path = tmp_path / "r.raw"
    path.write_bytes(b"% evt 2.0\n" + struct.pack("<2I", (8 << 28) | 1, 3 << 28))
    _raises(path, "reserved type 3", sensor_size=(640, 480, 2))
    path = tmp_path / "r3.raw"
    path.write_bytes(b"% evt 3.0\n" + struct.pack("<2H", 8 << 12, 0xB << 12))
    _raises(path, "reserved type 11", sensor_size=(640, 480, 2))
    path = tmp_path / "r.dat"
    path.write_bytes(b"% Version 2\n" + bytes([12, 8]) + struct.pack("<II", 1, 5 << 28))
    _raises(path, "polarity field 5")
    path.write_bytes(b"% Version 2\n" + bytes([40, 16]) + b"\0" * 16)
    _raises(path, "not a CD event file")
    path = tmp_path / "p.npz"
    np.savez(path, t=[1, 2], x=[0, 1], y=[0, 0], p=[0, 2])
    _raises(path, "polarity must be 0/1")
    np.savez(path, a=[1, 2])
    _raises(path, r"expected 't', 'x', 'y', 'p'")
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = np.zeros((2, 2))
    _raises(path, "no events in the HDF5 file")
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        g["t"], g["x"] = [1], [1]
    _raises(path, r"lacks datasets \['y', 'p'\]")


def test_io_writers_reject_what_the_format_cannot_hold(tmp_path):
    ev = make_events([1, 2], [200, 1], [3, 4], [0, 1])
    with pytest.raises(EventFormatError, match="128x128"):
        write_events(tmp_path / "a.aedat", ev, format="aedat2")
    with pytest.raises(EventFormatError, match="N-MNIST"):
        write_events(tmp_path / "a.bin", make_events([1], [1], [240], [0]))
    with pytest.raises(ValueError, match="cannot write format 'mp4'"):
        write_events(tmp_path / "a.mp4", ev, format="mp4")
    with pytest.raises(ValueError, match="needs sensor_size"):
        write_events(tmp_path / "a.aedat4", ev)
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind
