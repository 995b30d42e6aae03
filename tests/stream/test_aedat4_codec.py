"""AEDAT 4.0 codec and writer: round trips, interoperability with `aedat` and dv-processing, bad input."""

from __future__ import annotations

import io
import struct

import aedat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdt3_event.events import aedat4
from sdt3_event.events.aedat4 import (
    MAGIC,
    Aedat4Writer,
    Compression,
    decode_data_table,
    decode_event_packet,
    decode_io_header,
    decompress,
    encode_data_table,
    encode_event_packet,
    encode_io_header,
    iter_aedat4_packets,
    read_aedat4,
    read_io_header,
    write_aedat4,
)
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, make_events

REAL = {
    "dvxplorer_320x240.aedat4": ((320, 240, 2), 111_954, 1605537493718345),
    "davis346_346x260.aedat4": ((346, 260, 2), 117_667, None),
}


def random_events(n: int, sensor=(64, 48, 2), seed: int = 0, t0: int = 1_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, 50_000, n))
    return make_events(
        t, rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), rng.random(n) < 0.5
    )


def aedat_events(path) -> np.ndarray:
    """The events of a file as the `aedat` package decodes them, in the project's dtype."""
    chunks = [p["events"] for p in aedat.Decoder(str(path)) if "events" in p]
    ref = (
        np.concatenate(chunks)
        if chunks
        else np.zeros(0, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
    )
    return make_events(ref["t"].astype(np.int64), ref["x"], ref["y"], ref["on"])


def dv_events(path) -> tuple[np.ndarray, tuple[int, int]]:
    """The events of a file as dv-processing's MonoCameraRecording decodes them."""
    dv = pytest.importorskip("dv_processing")
    rec = dv.io.MonoCameraRecording(str(path))
    resolution = tuple(rec.getEventResolution())
    chunks = []
    while rec.isRunning():
        batch = rec.getNextEventBatch()
        if batch is None:
            break
        chunks.append(batch.numpy())
    if not chunks:
        return np.zeros(0, dtype=EVENT_DTYPE), resolution
    r = np.concatenate(chunks)
    return make_events(r["timestamp"], r["x"], r["y"], r["polarity"] != 0), resolution


# -- packets ---------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**16))
def test_event_packet_round_trip(n, seed):
    ev = random_events(n, seed=seed)
    buf = encode_event_packet(ev)
    assert len(buf) == 32 + 16 * n
    out = decode_event_packet(buf)
    assert out.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(out, ev)


def test_event_packet_layout_matches_dv_processing_bytes():
    # The exact bytes dv-processing's NetworkWriter sent for these 5 events (captured once by hand).
    dv_bytes = bytes.fromhex(
        "6c 00 00 00 10 00 00 00 45 56 54 53 00 00 06 00 08 00 04 00 06 00 00 00 04 00 00 00"
        " 05 00 00 00"
        " e8 03 00 00 00 00 00 00 00 00 00 00 01 00 00 00"
        " e9 03 00 00 00 00 00 00 01 00 02 00 00 00 00 00"
        " ea 03 00 00 00 00 00 00 02 00 04 00 01 00 00 00"
        " eb 03 00 00 00 00 00 00 03 00 06 00 00 00 00 00"
        " ec 03 00 00 00 00 00 00 04 00 08 00 01 00 00 00"
    )
    ev = make_events(
        [1000, 1001, 1002, 1003, 1004], [0, 1, 2, 3, 4], [0, 2, 4, 6, 8], [1, 0, 1, 0, 1]
    )
    assert encode_event_packet(ev) == dv_bytes
    np.testing.assert_array_equal(decode_event_packet(dv_bytes), ev)


@pytest.mark.parametrize("compression", list(Compression))
def test_compression_round_trip(compression):
    payload = encode_event_packet(random_events(500))
    packed = aedat4.compress(payload, compression)
    assert bytes(decompress(packed, compression)) == payload


def test_io_header_round_trip():
    streams = [aedat4.StreamInfo(3, "EVTS", "events", size=(346, 260), source="DAVIS346_test")]
    xml = aedat4.build_info_xml(streams, Compression.LZ4)
    h = decode_io_header(encode_io_header(Compression.LZ4, xml, 12345))
    assert h.compression == Compression.LZ4 and h.data_table_position == 12345
    assert h.sensor_size() == (346, 260, 2)
    s = h.event_stream()
    assert (s.stream_id, s.output_name, s.source) == (3, "events", "DAVIS346_test")
    with pytest.raises(EventFormatError, match="no event stream named 'frames'"):
        h.event_stream("frames")


def test_data_table_round_trip():
    entries = [(838 + 100 * i, i % 2, 90 + i, 4 + i, 1000 + i, 2000 + i) for i in range(7)]
    assert decode_data_table(encode_data_table(entries)) == entries
    assert decode_data_table(encode_data_table([])) == []


# -- files: interoperability -----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["lz4", "none", "zstd"])
def test_write_read_back_by_project_aedat_and_dv(tmp_path, compression):
    sensor = (64, 48, 2)
    ev = random_events(3000, sensor)
    path = write_aedat4(tmp_path / "x.aedat4", ev, sensor, compression=compression, packet_size=700)
    got, size = read_aedat4(path)
    np.testing.assert_array_equal(got, ev)
    assert size == sensor
    np.testing.assert_array_equal(aedat_events(path), ev)
    dv_ev, resolution = dv_events(path)
    np.testing.assert_array_equal(dv_ev, ev)
    assert resolution == (64, 48)
    # The data table indexes every packet: dv-processing reports the time range from it.
    with open(path, "rb") as fp:
        header = read_io_header(fp)
        fp.seek(header.data_table_position)
        table = decode_data_table(decompress(fp.read(), header.compression))
    assert [e[3] for e in table] == [700, 700, 700, 700, 200]
    assert table[0][4] == ev["t"][0] and table[-1][5] == ev["t"][-1]


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_recordings_decode_like_aedat_and_rewrite_identically(recordings_dir, tmp_path, name):
    sensor, count, first_t = REAL[name]
    ev, size = read_aedat4(recordings_dir / name)
    assert size == sensor and len(ev) == count
    if first_t is not None:
        assert ev["t"][0] == first_t
    np.testing.assert_array_equal(ev, aedat_events(recordings_dir / name))
    out = write_aedat4(tmp_path / name, ev, sensor)
    np.testing.assert_array_equal(aedat_events(out), ev)
    dv_ev, resolution = dv_events(out)
    np.testing.assert_array_equal(dv_ev, ev)
    assert resolution == sensor[:2]


def test_iter_packets_skips_other_streams(recordings_dir):
    # The DAVIS file interleaves events with frames, IMU and triggers (stream ids 0..3).
    sizes = [len(p) for p in iter_aedat4_packets(recordings_dir / "davis346_346x260.aedat4")]
    assert sum(sizes) == 117_667 and len(sizes) > 1


def test_empty_file_round_trip(tmp_path):
    path = write_aedat4(tmp_path / "empty.aedat4", np.zeros(0, EVENT_DTYPE), (10, 10, 2))
    ev, size = read_aedat4(path)
    assert len(ev) == 0 and size == (10, 10, 2)
    assert len(aedat_events(path)) == 0


# -- the incremental writer ------------------------------------------------------------------------


def test_incremental_writer_chunks_equal_one_shot(tmp_path):
    sensor = (64, 48, 2)
    ev = random_events(2500, sensor)
    with Aedat4Writer(tmp_path / "inc.aedat4", sensor, packet_size=256) as w:
        for chunk in np.array_split(ev, 7):
            w.write(chunk)
        assert not (tmp_path / "inc.aedat4").exists()  # atomic: nothing until close
    assert w.n_events == 2500
    np.testing.assert_array_equal(read_aedat4(tmp_path / "inc.aedat4")[0], ev)
    np.testing.assert_array_equal(dv_events(tmp_path / "inc.aedat4")[0], ev)


def test_writer_exception_leaves_nothing_behind(tmp_path):
    target = tmp_path / "keep.aedat4"
    target.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="boom"):
        with Aedat4Writer(target, (10, 10, 2)) as w:
            w.write(random_events(10, (10, 10, 2)))
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.aedat4"]


def test_writer_rejects_bad_events(tmp_path):
    with Aedat4Writer(tmp_path / "bad.aedat4", (10, 10, 2)) as w:
        with pytest.raises(EventFormatError, match="outside the 10x10 sensor"):
            w.write(make_events([1], [10], [0], [True]))
        w.write(make_events([100], [1], [1], [True]))
        with pytest.raises(EventFormatError, match="before the previous chunk"):
            w.write(make_events([50], [1], [1], [True]))
    with pytest.raises(ValueError, match="unknown AEDAT4 compression 'brotli'"):
        write_aedat4(tmp_path / "c.aedat4", random_events(3), (64, 48, 2), compression="brotli")


# -- bad input -------------------------------------------------------------------------------------


@pytest.fixture
def small_file(tmp_path):
    return write_aedat4(tmp_path / "s.aedat4", random_events(2000), (64, 48, 2), packet_size=500)


def test_wrong_magic_raises(tmp_path):
    p = tmp_path / "nope.aedat4"
    p.write_bytes(b"#!AER-DAT3.1\r\n" + bytes(100))
    with pytest.raises(EventFormatError, match="not an AEDAT 4.0 file"):
        read_aedat4(p)


def test_truncated_file_raises(tmp_path, small_file):
    data = small_file.read_bytes()
    with open(small_file, "rb") as fp:
        header = read_io_header(fp)
        first_packet = fp.tell()
    for cut in (
        len(MAGIC) + 2,
        first_packet + 5,
        first_packet + 200,
        header.data_table_position - 7,
    ):
        p = tmp_path / f"cut{cut}.aedat4"
        p.write_bytes(data[:cut])
        with pytest.raises(EventFormatError, match="truncated|ended before"):
            read_aedat4(p)


def test_absurd_packet_length_is_never_allocated(tmp_path, small_file):
    data = bytearray(small_file.read_bytes())
    with open(small_file, "rb") as fp:
        read_io_header(fp)
        first_packet = fp.tell()
    data[first_packet + 4 : first_packet + 8] = struct.pack("<i", 0x7FFFFFF0)
    p = tmp_path / "absurd.aedat4"
    p.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="refusing to read it"):
        read_aedat4(p)
    data[first_packet : first_packet + 4] = struct.pack("<i", 77)
    p.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="stream id 77"):
        read_aedat4(p)


def test_lying_vector_length_raises():
    buf = bytearray(encode_event_packet(random_events(4)))
    buf[28:32] = struct.pack("<I", 1 << 28)  # claims 268M events in a 96-byte buffer
    with pytest.raises(EventFormatError, match="declares 268435456 elements"):
        decode_event_packet(bytes(buf))
    with pytest.raises(EventFormatError, match="identifier"):
        decode_event_packet(b"\x10\x00\x00\x00" + bytes(16))


def test_decompression_bomb_is_capped():
    packed = aedat4.compress(bytes(10_000_000), Compression.LZ4)
    assert len(packed) < 100_000
    with pytest.raises(EventFormatError, match="more than 1000000 bytes"):
        decompress(packed, Compression.LZ4, max_bytes=1_000_000)
    with pytest.raises(EventFormatError, match="corrupt LZ4|truncated LZ4"):
        decompress(packed[: len(packed) // 2], Compression.LZ4)


def test_garbage_header_raises():
    with pytest.raises(EventFormatError, match="header length"):
        read_io_header(io.BytesIO(b"\xff" * 64), expect_magic=False)
    with pytest.raises(EventFormatError, match="IOHE"):
        read_io_header(io.BytesIO(struct.pack("<I", 40) + bytes(40)), expect_magic=False)


@pytest.fixture(scope="module")
def fuzz_seed_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "seed.aedat4"
    return write_aedat4(path, random_events(600), (64, 48, 2), packet_size=150).read_bytes()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_files_raise_only_event_format_errors(fuzz_seed_file, tmp_path_factory, data):
    buf = bytearray(fuzz_seed_file)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    path = tmp_path_factory.getbasetemp() / "mutated.aedat4"
    path.write_bytes(bytes(buf))
    try:
        events, _ = read_aedat4(path)
    except EventFormatError:
        return
    assert events.dtype == EVENT_DTYPE
