"""The chunked reader (``iter_events``) and the compiled decoders: chunks concatenate to exactly
what ``read_events`` returns, equal the peer readers' events, never come half-decoded, and bad
input raises ``EventFormatError`` (never ``MemoryError`` or an abort, even under an address-space
limit)."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from event_support import random_events

from sdt3_event.events import EventFormatError, iter_events, read_events, write_events
from sdt3_event.events.io import STREAMING_FORMATS

SENSOR = (640, 480, 2)
NAMES = {"evt2": "s.raw", "evt3": "s3.raw", "dat": "s.dat", "aedat4": "s.aedat4"}


def _events(n=20_000, w=640, h=480, seed=0, t_max=3_000_000):
    return random_events(n, w, h, seed, t_max)


def _concat(chunks):
    return np.concatenate(list(chunks))


@pytest.mark.parametrize("fmt", STREAMING_FORMATS)
@pytest.mark.parametrize("chunk", [1, 777, 1 << 20])
def test_chunks_concatenate_to_read_events(tmp_path, fmt, chunk):
    ev = _events(3000 if chunk == 1 else 20_000)
    path = write_events(tmp_path / NAMES[fmt], ev, SENSOR, format=fmt)
    chunks = iter_events(path, chunk_events=chunk, sensor_size=SENSOR)
    assert chunks.streaming and chunks.sensor_size == SENSOR
    got = list(chunks)
    assert all(0 < len(c) <= chunk for c in got)
    np.testing.assert_array_equal(np.concatenate(got), ev)
    np.testing.assert_array_equal(read_events(path, SENSOR)[0], ev)
    # iterating again decodes the file again
    np.testing.assert_array_equal(_concat(chunks), ev)


@pytest.mark.parametrize("fmt", ["evt2", "evt3"])
def test_dense_raw_blocks_that_stay_inside_one_time_base(tmp_path, fmt):
    # ~50 events per 64 us: blocks of 16 events end before the time base advances, so the events
    # held back for ordering span several blocks
    ev = _events(5000, t_max=6000)
    path = write_events(tmp_path / NAMES[fmt], ev, SENSOR, format=fmt)
    full, _ = read_events(path, SENSOR)
    np.testing.assert_array_equal(full, ev)
    for chunk in (1, 16, 100):
        np.testing.assert_array_equal(_concat(iter_events(path, chunk, SENSOR)), ev)


def test_evt3_vectors_and_unordered_words(tmp_path):
    # hand-made EVT 3.0: a vector (VECT_BASE_X + VECT_12 + VECT_8), a time-low going back inside one
    # time high (out of order: sorted stably), an EM row whose events are skipped
    words = [
        (8 << 12) | 1,  # time high 1 -> t base 4096
        (6 << 12) | 50,  # time low 50
        (0 << 12) | 7,  # y = 7
        (3 << 12) | (1 << 11) | 100,  # vector base x = 100, ON
        (4 << 12) | 0b101,  # x = 100, 102
        (5 << 12) | 0b1,  # x = 112
        (6 << 12) | 10,  # time low 10 (earlier)
        (2 << 12) | 5,  # x = 5, OFF
        (1 << 12) | 3,  # EM row: skipped
        (2 << 12) | 6,
    ]
    path = tmp_path / "v.raw"
    path.write_bytes(b"% evt 3.0\n" + struct.pack(f"<{len(words)}H", *words))
    ev, _ = read_events(path, SENSOR)
    assert ev["t"].tolist() == [4106, 4146, 4146, 4146]
    assert ev["x"].tolist() == [5, 100, 102, 112]
    assert ev["y"].tolist() == [7] * 4
    assert ev["p"].tolist() == [False, True, True, True]
    for chunk in (1, 2, 3):
        np.testing.assert_array_equal(_concat(iter_events(path, chunk, SENSOR)), ev)


def test_unordered_raw_chunks_equal_a_global_stable_sort(recordings_dir):
    path = recordings_dir / "prophesee_gen3_640x480_evt2.raw"
    full, _ = read_events(path, SENSOR)
    for chunk in (4096, 100_000):
        got = list(iter_events(path, chunk, SENSOR))
        assert all(np.all(np.diff(c["t"]) >= 0) for c in got)
        np.testing.assert_array_equal(np.concatenate(got), full)


@pytest.mark.parametrize(
    "name, sensor",
    [
        ("dvxplorer_320x240.aedat4", None),
        ("davis346_346x260.aedat4", None),
        ("prophesee_gen3_640x480_evt2.raw", SENSOR),
        ("ncars_atis.dat", None),
    ],
)
def test_real_recordings_chunked(recordings_dir, name, sensor):
    full, size = read_events(recordings_dir / name, sensor)
    chunks = iter_events(recordings_dir / name, 10_000, sensor)
    assert chunks.sensor_size == size
    np.testing.assert_array_equal(_concat(chunks), full)


@pytest.mark.parametrize("name", ["dvxplorer_320x240.aedat4", "davis346_346x260.aedat4"])
def test_aedat4_equals_the_aedat_package_and_faery(recordings_dir, name):
    aedat = pytest.importorskip("aedat")
    ours, _ = read_events(recordings_dir / name)
    ref = np.concatenate([p["events"] for p in aedat.Decoder(str(recordings_dir / name))
                          if "events" in p])  # fmt: skip
    np.testing.assert_array_equal(ours["t"], ref["t"].astype(np.int64))
    np.testing.assert_array_equal(ours["x"], ref["x"])
    np.testing.assert_array_equal(ours["p"], ref["p"] != 0)
    faery = pytest.importorskip("faery")
    fe = np.concatenate(list(faery.events_stream_from_file(recordings_dir / name)))
    np.testing.assert_array_equal(ours["t"], fe["t"].astype(np.int64))
    np.testing.assert_array_equal(ours["y"], fe["y"])


@pytest.mark.parametrize("fmt", ["evt2", "dat"])
def test_prophesee_equals_expelliarmus_and_faery(tmp_path, fmt):
    ev = _events()
    path = write_events(tmp_path / NAMES[fmt], ev, SENSOR, format=fmt)
    ours, _ = read_events(path, SENSOR)
    wizard = pytest.importorskip("expelliarmus").Wizard(encoding=fmt)
    ref = wizard.read(path)
    for f in "txyp":
        np.testing.assert_array_equal(ours[f], ref[f].astype(ours[f].dtype))
    faery = pytest.importorskip("faery")
    fe = np.concatenate(list(faery.events_stream_from_file(path, dimensions_fallback=SENSOR[:2])))
    np.testing.assert_array_equal(ours["t"], fe["t"].astype(np.int64))
    np.testing.assert_array_equal(ours["x"], fe["x"])
    np.testing.assert_array_equal(ours["p"], fe["on"])


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("fmt", ["evt2", "evt3", "dat"])
def test_a_corrupt_word_raises_at_its_chunk_after_whole_chunks(tmp_path, fmt):
    ev = _events()
    path = write_events(tmp_path / NAMES[fmt], ev, SENSOR, format=fmt)
    data = bytearray(path.read_bytes())
    at = len(data) * 3 // 4
    if fmt == "dat":
        at -= (at - (len(data) % 8)) % 8  # a record boundary
        data[at + 7] = 0x30  # polarity field 3
    else:
        size = 4 if fmt == "evt2" else 2
        at -= (at - (len(data) % size)) % size  # a word boundary
        data[at + size - 1] = 0x90 if fmt == "evt3" else 0x20  # reserved types 9 / 2
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match=rf"{path}.*byte {at}"):
        read_events(path, SENSOR)
    got = []
    with pytest.raises(EventFormatError, match=f"byte {at}"):
        for chunk in iter_events(path, 1000, SENSOR):
            got.append(chunk)
    # the chunks before the error are whole and exactly the first events: nothing half-decoded
    assert got and all(len(c) <= 1000 for c in got)
    n = sum(len(c) for c in got)
    np.testing.assert_array_equal(np.concatenate(got), ev[:n])


def test_dat_time_going_backwards_across_chunks_raises(tmp_path):
    ev = _events(5000)
    ev["t"][2500:] -= 1_500_000  # backwards in the middle
    ev["t"] = np.maximum(ev["t"], 0)
    path = tmp_path / "b.dat"
    from sdt3_event.events._prophesee import encode_dat

    path.write_bytes(encode_dat(ev, SENSOR))
    with pytest.raises(EventFormatError, match="go backwards at event 2500"):
        read_events(path)
    for chunk in (1000, 2500, 3000):
        with pytest.raises(EventFormatError, match="go backwards at event 2500"):
            list(iter_events(path, chunk))


def test_aedat4_data_table_position_pointing_at_a_packet_raises(tmp_path):
    # a dataTablePosition moved into the packets would end the read early: it raises instead
    from sdt3_event.events import aedat4

    ev = _events(5000)
    path = aedat4.write_aedat4(tmp_path / "t.aedat4", ev, SENSOR, packet_size=1000)
    with aedat4.Aedat4File(path) as f:
        header_end = f._fp.tell()
        good = f.header.data_table_position
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<q", good))
    data[at : at + 8] = struct.pack("<q", header_end)  # the first packet
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="dataTablePosition"):
        read_events(path)
    with pytest.raises(EventFormatError, match="dataTablePosition"):
        list(iter_events(path, 1000))


def test_aedat4_negative_timestamps_raise(tmp_path):
    from sdt3_event.events import aedat4

    ev = _events(3000)
    ev["t"] -= 1000  # the first events go below zero
    path = tmp_path / "n.aedat4"
    with aedat4.Aedat4Writer(path, SENSOR, validate=False) as w:
        w.write(ev)
    with pytest.raises(EventFormatError, match="negative timestamp"):
        read_events(path)
    with pytest.raises(EventFormatError, match="negative timestamp"):
        list(iter_events(path, 1000))


def test_truncated_aedat4_chunked(recordings_dir, tmp_path):
    data = (recordings_dir / "davis346_346x260.aedat4").read_bytes()
    path = tmp_path / "cut.aedat4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EventFormatError, match="truncated"):
        list(iter_events(path, 5000))
    chunks = iter_events(path, 5000, allow_truncated=True)
    got = _concat(chunks)
    full, _ = read_events(recordings_dir / "davis346_346x260.aedat4")
    assert 0 < len(got) < len(full) and chunks.truncated_bytes > 0
    np.testing.assert_array_equal(got, full[: len(got)])


_RLIMIT_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    from sdt3_event.events import EventFormatError, iter_events, read_events
    for path in sys.argv[1:]:
        for how in ("read_events", "iter_events"):
            try:
                if how == "read_events":
                    read_events(path, (640, 480, 2))
                else:
                    for _ in iter_events(path, 4096, (640, 480, 2)):
                        pass
                print(how, path, "OK")
            except EventFormatError as exc:
                print(how, path, "EventFormatError", str(exc).replace(chr(10), " "))
    """
)


def test_readers_under_an_address_space_limit(recordings_dir, tmp_path):
    """Corrupt size fields never reach an allocator: under a 3 GB RLIMIT_AS (a small edge board)
    every mutant raises EventFormatError; the process neither aborts nor raises MemoryError."""
    mutants = []
    davis = bytearray((recordings_dir / "davis346_346x260.aedat4").read_bytes())
    for at, value in [(634047, b"\xff\xff\xff\xff"), (634047, b"\xf0\xff\xff\x7f")]:
        # the packet-size field: -1 and 2**31 - 16
        data = bytearray(davis)
        data[at : at + 4] = value
        mutants.append(("packet_size", data))
    data = bytearray(davis)
    data[14:18] = b"\xff\xff\xff\x7f"  # the IOHeader size
    mutants.append(("header_size", data))
    ev = _events(5000, 128, 128)
    aedat3 = bytearray(write_events(tmp_path / "a.aedat", ev, format="aedat3").read_bytes())
    at = aedat3.index(b"#!END-HEADER\r\n") + 14
    aedat3[at + 20 : at + 24] = b"\xff\xff\xff\x7f"  # eventCapacity of the first packet
    mutants.append(("aedat3_capacity", aedat3))
    npz = bytearray(write_events(tmp_path / "a.npz", ev, (128, 128, 2)).read_bytes())
    at = npz.index(b"'shape': (") + 10
    npz[at : at + 4] = b"9999"  # an npy header that claims far more than the file holds
    mutants.append(("npz_shape", npz))
    paths = []
    for name, data in mutants:
        suffix = {"aedat3_capacity": ".aedat", "npz_shape": ".npz"}.get(name, ".aedat4")
        p = tmp_path / f"{name}{suffix}"
        p.write_bytes(bytes(data))
        paths.append(str(p))
    proc = subprocess.run(
        [sys.executable, "-c", _RLIMIT_SCRIPT, *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 * len(paths), proc.stdout
    for line in lines:
        assert " EventFormatError " in line or line.endswith(" OK"), line
    # the mutant is rejected by the length check, naming the packet's byte offset
    assert "packet at byte 634043" in lines[0] and "EventFormatError" in lines[0]


def test_evt2_out_of_order_inside_each_time_base(tmp_path):
    # Prophesee readouts are out of order inside one time base: shuffle each 64 us group, then
    # both readers must return the stable sort of the file's order, chunk boundaries anywhere
    from sdt3_event.events._prophesee import encode_evt2

    ev = _events(20_000, t_max=200_000)
    rng = np.random.default_rng(1)
    group = ev["t"] >> 6
    order = np.lexsort((rng.random(len(ev)), group))
    shuffled = ev[order]
    path = tmp_path / "u.raw"
    path.write_bytes(encode_evt2(shuffled, SENSOR))
    expected = shuffled[np.argsort(shuffled["t"], kind="stable")]
    full, _ = read_events(path, SENSOR)
    np.testing.assert_array_equal(full, expected)
    for chunk in (1, 50, 777, 1 << 20):
        got = list(iter_events(path, chunk, SENSOR))
        assert all(np.all(np.diff(c["t"]) >= 0) for c in got)
        np.testing.assert_array_equal(np.concatenate(got), expected)
