"""AEDAT readers: 3.1 and 2.0 (vectorised numpy). AEDAT 4.0 has its own codec, ``aedat4.py``.

Format facts (from iniVation's AEDAT documentation and the readers in Tonic / SpikingJelly; no
code is taken from them):

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
