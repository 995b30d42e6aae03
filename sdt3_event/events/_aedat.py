"""AEDAT readers: 4.0 (through the ``aedat`` package), 3.1 and 2.0 (vectorised numpy).

Format facts (from iniVation's AEDAT documentation and the readers in Tonic / SpikingJelly; no
code is taken from them):

AEDAT 4.0
    ``#!AER-DAT4.0\\r\\n``, an IOHeader, then LZ4/Zstd-compressed FlatBuffers packets per stream.
    Decoded by the ``aedat`` package (a Rust decoder); the events stream's ``width``/``height`` come
    from the stream description that ``aedat.Decoder.id_to_stream()`` exposes.

AEDAT 3.1 (DVS128 Gesture's original ``.aedat`` files)
    Text header lines starting with ``#`` (``#!AER-DAT3.1`` first, ``#!END-HEADER`` last), then
    packets, each a 28-byte little-endian header ``eventType:i16, eventSource:i16, eventSize:i32,
    eventTSOffset:i32, eventTSOverflow:i32, eventCapacity:i32, eventNumber:i32, eventValid:i32``
    followed by ``eventCapacity * eventSize`` bytes. Polarity packets (``eventType == 1``) hold
    8-byte events ``data:u32, timestamp:i32``: bit 0 = valid mark, bit 1 = polarity,
    bits 2-16 = y, bits 17-31 = x; the full timestamp is ``eventTSOverflow << 31 | timestamp``.
    Other packet types (special, frame, IMU events) are skipped. ``#Source N: DVS128`` in the header
    gives 128x128.

AEDAT 2.0 (CIFAR10-DVS's original ``.aedat`` files)
    ``#!AER-DAT2.0`` and more ``#`` header lines, then big-endian ``address:u32, timestamp:u32``
    (µs) records. CIFAR10-DVS's address layout: bit 0 = polarity (inverted: 0 is ON), bits 1-7 = a,
    bits 8-14 = b, and the image coordinates are ``x = 127 - b``, ``y = 127 - a`` (the DVS128 was
    mounted flipped); this is the decoding SpikingJelly's ``CIFAR10DVS`` and older Tonic use.
    Sensor 128x128.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from sdt3_event.events._assemble import (
    DecodedEvents,
    check_truncation,
    header_lines,
    split_header,
)
from sdt3_event.events.schema import EventFormatError, SensorSize

logger = logging.getLogger(__name__)

MAGIC_AEDAT4 = b"#!AER-DAT4.0"
MAGIC_AEDAT31 = b"#!AER-DAT3.1"
MAGIC_AEDAT2 = b"#!AER-DAT2.0"

CIFAR10DVS_SENSOR: SensorSize = (128, 128, 2)

# Sensor names that AEDAT 3.1 headers put in "#Source N: <name>" lines -> (W, H, P).
_AEDAT3_SOURCES: dict[str, SensorSize] = {
    "DVS128": (128, 128, 2),
    "DAVIS240A": (240, 180, 2),
    "DAVIS240B": (240, 180, 2),
    "DAVIS240C": (240, 180, 2),
    "DAVIS346": (346, 260, 2),
    "DAVIS346B": (346, 260, 2),
    "DAVIS640": (640, 480, 2),
    "DVXPLORER": (640, 480, 2),
    "DVXPLORER_LITE": (320, 240, 2),
}

_AEDAT3_HEADER = np.dtype(
    [
        ("type", "<i2"),
        ("source", "<i2"),
        ("size", "<i4"),
        ("ts_offset", "<i4"),
        ("ts_overflow", "<i4"),
        ("capacity", "<i4"),
        ("number", "<i4"),
        ("valid", "<i4"),
    ]
)
_AEDAT3_POLARITY = 1
_AEDAT3_EVENT = np.dtype([("data", "<u4"), ("t", "<i4")])
_AEDAT2_RECORD = np.dtype([("address", ">u4"), ("t", ">u4")])


# ----------------------------------------------------------------------------------- AEDAT 4.0
def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")


def _unpack(fmt: struct.Struct, buf: bytes, pos: int, source: str):
    if pos < 0 or pos + fmt.size > len(buf):
        raise EventFormatError(f"{source}: corrupt AEDAT 4.0 IOHeader (offset {pos} out of bounds)")
    return fmt.unpack_from(buf, pos)[0]


def aedat4_description(path: Path, source: str) -> str:
    """The IOHeader's XML description of an AEDAT 4.0 file, read with bounds checks.

    AEDAT 4.0 facts: after ``#!AER-DAT4.0\\r\\n`` comes a size-prefixed FlatBuffer ``IOHeader``
    table (``compression``, ``dataTablePosition``, ``infoNode``: field 2, a string holding the
    XML stream description). The ``aedat`` decoder aborts the whole process (a Rust panic inside
    a destructor) on a description that is not UTF-8, so this is checked here first.

    Raises:
        EventFormatError: wrong magic, a header that does not fit in the file, out-of-bounds
            FlatBuffer offsets, or a description that is not UTF-8 XML.
    """
    with open(path, "rb") as f:
        head = f.read(len(MAGIC_AEDAT4) + 2 + 4)
        if not head.startswith(MAGIC_AEDAT4 + b"\r\n") or len(head) < len(MAGIC_AEDAT4) + 6:
            raise EventFormatError(f"{source}: wrong magic number for AEDAT 4.0 or no IOHeader")
        size = _U32.unpack_from(head, len(MAGIC_AEDAT4) + 2)[0]
        buf = f.read(size)
    if len(buf) != size:
        raise EventFormatError(
            f"{source}: truncated AEDAT 4.0 file: the IOHeader needs {size} bytes, {len(buf)} left"
        )
    table = _unpack(_U32, buf, 0, source)
    vtable = table - _unpack(_I32, buf, table, source)
    vt_size = _unpack(_U16, buf, vtable, source)
    field = 2  # infoNode
    if 4 + 2 * field + 2 > vt_size:
        raise EventFormatError(f"{source}: the AEDAT 4.0 IOHeader has no stream description")
    rel = _unpack(_U16, buf, vtable + 4 + 2 * field, source)
    if rel == 0:
        raise EventFormatError(f"{source}: the AEDAT 4.0 IOHeader has no stream description")
    at = table + rel
    start = at + _unpack(_U32, buf, at, source)
    length = _unpack(_U32, buf, start, source)
    if start + 4 + length > len(buf):
        raise EventFormatError(f"{source}: corrupt AEDAT 4.0 IOHeader (description out of bounds)")
    raw = buf[start + 4 : start + 4 + length]
    try:
        text = raw.decode("utf-8")
        ElementTree.fromstring(text)
    except (UnicodeDecodeError, ElementTree.ParseError) as exc:
        raise EventFormatError(
            f"{source}: corrupt AEDAT 4.0 stream description (not UTF-8 XML: {exc})"
        ) from exc
    return text


def _xml_event_sensor(text: str) -> SensorSize | None:
    """``(W, H, 2)`` of the first ``EVTS`` stream in an AEDAT 4.0 XML description."""
    root = ElementTree.fromstring(text)
    for node in root.iter("node"):
        attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
        if attrs.get("typeIdentifier") != "EVTS":
            continue
        for info in node.findall("node"):
            iattrs = {a.get("key"): (a.text or "") for a in info.findall("attr")}
            if iattrs.get("sizeX", "").isdigit() and iattrs.get("sizeY", "").isdigit():
                return (int(iattrs["sizeX"]), int(iattrs["sizeY"]), 2)
    return None


def decode_aedat4(path: Path, source: str, allow_truncated: bool) -> DecodedEvents:
    """Decode the events stream of an AEDAT 4.0 file with the ``aedat`` package.

    The sensor size comes from the events stream's description (``aedat`` exposes ``width`` and
    ``height``), else from the ``sizeX``/``sizeY`` of the XML description.

    Raises:
        EventFormatError: a corrupt IOHeader (see :func:`aedat4_description`), the decoder rejects
            the file, it has no events stream, or it ends inside a packet (unless
            ``allow_truncated``).
    """
    import aedat

    description = aedat4_description(path, source)
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
    except Exception as exc:
        raise EventFormatError(f"{source}: not a readable AEDAT 4.0 file ({exc})") from exc
    except BaseException as exc:  # pyo3 turns Rust panics into PanicException(BaseException)
        if not _is_panic(exc):
            raise
        raise EventFormatError(f"{source}: the AEDAT 4.0 decoder failed ({exc})") from exc
    event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
    if not event_ids:
        kinds = sorted({str(s.get("type")) for s in streams.values()})
        raise EventFormatError(
            f"{source}: the AEDAT 4.0 file has no events stream (streams: {', '.join(kinds)})"
        )
    stream_id = event_ids[0]
    desc = streams[stream_id]
    sensor = None
    if desc.get("width") and desc.get("height"):
        sensor = (int(desc["width"]), int(desc["height"]), 2)
    else:
        sensor = _xml_event_sensor(description)

    packets = []
    truncated = 0
    try:
        for packet in decoder:
            if packet["stream_id"] == stream_id and "events" in packet:
                packets.append(packet["events"])
    except Exception as exc:
        if not allow_truncated:
            raise EventFormatError(
                f"{source}: AEDAT 4.0 file is truncated or corrupt after {len(packets)} event "
                f"packets ({exc}); re-copy it, or pass allow_truncated=True to read the complete "
                "packets"
            ) from exc
        truncated = 1
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        raise EventFormatError(f"{source}: the AEDAT 4.0 decoder failed ({exc})") from exc
    if packets:
        raw = np.concatenate(packets)
        t, x, y = raw["t"], raw["x"], raw["y"]
        p = raw["p"]
    else:
        t = np.zeros(0, np.uint64)
        x = y = np.zeros(0, np.uint16)
        p = np.zeros(0, bool)
    return DecodedEvents(t, x, y, p, sensor_size=sensor, ordered=True, truncated_bytes=truncated)


# ----------------------------------------------------------------------------------- AEDAT 3.1
def _aedat3_sensor(lines: list[str]) -> SensorSize | None:
    for line in lines:
        text = line.lstrip("#").strip()
        if text.lower().startswith("source") and ":" in text:
            words = text.split(":", 1)[1].split()
            if words and words[0].upper() in _AEDAT3_SOURCES:
                return _AEDAT3_SOURCES[words[0].upper()]
    return None


def decode_aedat31(data: bytes, source: str, allow_truncated: bool) -> DecodedEvents:
    """Decode the polarity events of an AEDAT 3.1 file.

    Shape:
        file bytes -> columns ``[N]``.

    Raises:
        EventFormatError: wrong magic, a packet header with impossible sizes, a polarity packet
            with an event size other than 8, timestamps that overflow, or a truncated last
            packet (unless ``allow_truncated``).
    """
    if not data.startswith(MAGIC_AEDAT31):
        raise EventFormatError(f"{source}: not an AEDAT 3.1 file (no {MAGIC_AEDAT31!r} magic)")
    start = split_header(data, b"#", end_line=b"#!END-HEADER")
    sensor = _aedat3_sensor(header_lines(data, start))
    hsize = _AEDAT3_HEADER.itemsize
    size = len(data)
    pos = start
    chunks: list[np.ndarray] = []
    overflows: list[int] = []
    n_other = 0
    truncated = 0
    while pos < size:
        if size - pos < hsize:
            truncated = check_truncation(
                size - pos, source, "28-byte packet header", allow_truncated
            )
            break
        head = np.frombuffer(data, _AEDAT3_HEADER, count=1, offset=pos)[0]
        ev_size, capacity, number = int(head["size"]), int(head["capacity"]), int(head["number"])
        if ev_size <= 0 or capacity < 0 or number < 0 or number > capacity:
            raise EventFormatError(
                f"{source}: corrupt AEDAT 3.1 packet header at byte {pos} (eventSize={ev_size}, "
                f"eventCapacity={capacity}, eventNumber={number})"
            )
        body = capacity * ev_size
        if pos + hsize + body > size:
            truncated = check_truncation(size - pos, source, "packet", allow_truncated)
            break
        if int(head["type"]) == _AEDAT3_POLARITY:
            if ev_size != _AEDAT3_EVENT.itemsize:
                raise EventFormatError(
                    f"{source}: polarity packet at byte {pos} has eventSize={ev_size}, expected 8"
                )
            if int(head["ts_overflow"]) < 0:
                raise EventFormatError(
                    f"{source}: negative timestamp overflow counter in the packet at byte {pos}"
                )
            if number:
                chunks.append(np.frombuffer(data, _AEDAT3_EVENT, count=number, offset=pos + hsize))
                overflows.append(int(head["ts_overflow"]))
        else:
            n_other += 1
        pos += hsize + body
    if n_other:
        logger.debug("%s: skipped %d non-polarity AEDAT 3.1 packets", source, n_other)
    if chunks:
        raw = np.concatenate(chunks)
        data_u = np.ascontiguousarray(raw["data"])
        ts = raw["t"].astype(np.int64)
        if len(ts) and int(ts.min()) < 0:
            raise EventFormatError(f"{source}: negative 31-bit event timestamp in a packet")
        if any(overflows):
            counts = np.fromiter((len(c) for c in chunks), np.int64, len(chunks))
            ts |= np.repeat(np.asarray(overflows, np.int64) << 31, counts)
        valid = (data_u & 1).astype(bool)
        if not valid.all():
            data_u, ts = data_u[valid], ts[valid]
        t = ts
        x = (data_u >> 17) & 0x7FFF
        y = (data_u >> 2) & 0x7FFF
        p = ((data_u >> 1) & 1).astype(bool)
    else:
        t = np.zeros(0, np.int64)
        x = y = np.zeros(0, np.uint32)
        p = np.zeros(0, bool)
    return DecodedEvents(t, x, y, p, sensor_size=sensor, ordered=True, truncated_bytes=truncated)


def encode_aedat31(
    events: np.ndarray,
    sensor_name: str = "DVS128",
    packet_events: int = 4096,
) -> bytes:
    """Write events as an AEDAT 3.1 file (the layout :func:`decode_aedat31` reads).

    Args:
        events: ``EVENT_DTYPE`` events ``[N]``, sorted by ``t``.
        sensor_name: written as ``#Source 1: <name>``.
        packet_events: events per polarity packet.

    Returns:
        The file's bytes.
    """
    header = (
        "#!AER-DAT3.1\r\n"
        "#Format: RAW\r\n"
        f"#Source 1: {sensor_name}\r\n"
        "#Start-Time: 1970-01-01 00:00:00 (TZ+0000)\r\n"
        "#!END-HEADER\r\n"
    ).encode()
    t = events["t"].astype(np.int64)
    data = (
        (events["x"].astype(np.uint32) << 17)
        | (events["y"].astype(np.uint32) << 2)
        | (events["p"].astype(np.uint32) << 1)
        | np.uint32(1)
    )
    parts = [header]
    for i in range(0, len(events), packet_events):
        tt = t[i : i + packet_events]
        overflow = int(tt[0]) >> 31
        if int(tt[-1]) >> 31 != overflow:  # an overflow boundary inside: split there
            cut = int(np.searchsorted(tt, (overflow + 1) << 31))
            spans = [(i, i + cut), (i + cut, i + len(tt))]
        else:
            spans = [(i, i + len(tt))]
        for a, b in spans:
            n = b - a
            ov = int(t[a]) >> 31
            head = np.zeros(1, _AEDAT3_HEADER)
            head["type"], head["source"], head["size"] = _AEDAT3_POLARITY, 1, 8
            head["ts_offset"], head["ts_overflow"] = 4, ov
            head["capacity"] = head["number"] = head["valid"] = n
            body = np.empty(n, _AEDAT3_EVENT)
            body["data"] = data[a:b]
            body["t"] = t[a:b] & 0x7FFFFFFF
            parts += [head.tobytes(), body.tobytes()]
    return b"".join(parts)


# ----------------------------------------------------------------------------------- AEDAT 2.0
def decode_aedat2(data: bytes, source: str, allow_truncated: bool) -> DecodedEvents:
    """Decode an AEDAT 2.0 file with CIFAR10-DVS's address layout.

    Shape:
        file bytes -> columns ``[N]``.

    Raises:
        EventFormatError: wrong magic, or an incomplete last 8-byte record (unless
            ``allow_truncated``).
    """
    if not data.startswith(MAGIC_AEDAT2):
        raise EventFormatError(f"{source}: not an AEDAT 2.0 file (no {MAGIC_AEDAT2!r} magic)")
    start = split_header(data, b"#")
    n_extra = (len(data) - start) % _AEDAT2_RECORD.itemsize
    truncated = check_truncation(n_extra, source, "8-byte record", allow_truncated)
    count = (len(data) - start) // _AEDAT2_RECORD.itemsize
    raw = np.frombuffer(data, _AEDAT2_RECORD, count=count, offset=start)
    address = raw["address"]
    a = (address >> 1) & 0x7F
    b = (address >> 8) & 0x7F
    x = 127 - b.astype(np.int32)
    y = 127 - a.astype(np.int32)
    p = (address & 1) == 0
    t = raw["t"].astype(np.int64)
    return DecodedEvents(
        t, x, y, p, sensor_size=CIFAR10DVS_SENSOR, ordered=True, truncated_bytes=truncated
    )


def encode_aedat2(events: np.ndarray) -> bytes:
    """Write events as a CIFAR10-DVS-style AEDAT 2.0 file (what :func:`decode_aedat2` reads).

    Raises:
        EventFormatError: coordinates outside 128x128 or timestamps beyond 32 bits.
    """
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if len(events) and (x.min() < 0 or x.max() > 127 or y.min() < 0 or y.max() > 127):
        raise EventFormatError("AEDAT 2.0 (CIFAR10-DVS layout) holds only 128x128 coordinates")
    t = events["t"]
    if len(events) and (int(t.min()) < 0 or int(t.max()) > 0xFFFFFFFF):
        raise EventFormatError("AEDAT 2.0 timestamps are 32-bit microseconds")
    header = b"#!AER-DAT2.0\r\n# This is a raw AE data file created by sdt3-event\r\n"
    rec = np.empty(len(events), _AEDAT2_RECORD)
    rec["address"] = ((127 - x) << 8) | ((127 - y) << 1) | (~events["p"]).astype(np.int64)
    rec["t"] = t
    return header + rec.tobytes()
