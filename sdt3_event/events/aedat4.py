"""AEDAT 4.0: the packet codec, a streaming reader and an atomic writer (files and DV network streams).

The layout (iniVation's AEDAT 4.0 / DV; all integers little-endian):

- files start with the magic line ``#!AER-DAT4.0\\r\\n``; DV network streams (dv-processing's
  ``NetworkWriter``, the DV software's network outputs) are the same byte stream *without* it;
- then the ``IOHeader``: a size-prefixed flatbuffer (identifier ``IOHE``) with ``compression``
  (int32 enum: NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH), ``dataTablePosition`` (int64, -1 when absent)
  and ``infoNode`` (an XML string describing each stream: id, ``typeIdentifier``,
  ``originalOutputName``, and for events ``sizeX`` / ``sizeY`` under its ``info`` node);
- then packets: ``[stream_id:int32][size:int32][size bytes]``; the bytes are the packet's
  size-prefixed flatbuffer, compressed as a whole (LZ4 *frame* format or zstd) unless compression is
  NONE. Event packets have identifier ``EVTS`` and one field, a vector of 16-byte ``Event`` structs
  ``(timestamp:int64 us, x:int16, y:int16, polarity:bool, 3 bytes padding)``;
- files end with a ``FileDataTable`` (identifier ``FTAB``, compressed like the packets, no packet
  header) at ``dataTablePosition``: one entry per packet (payload byte offset, stream id and size,
  element count, first and last timestamp), which readers use to seek.

Decoding is bounds-checked: every length is capped (``max_packet_bytes``) *before* anything of that
size is allocated, and a truncated packet or header raises ``EventFormatError``.

Example:
    >>> write_aedat4("out.aedat4", events, sensor_size=(346, 260, 2))  # doctest: +SKIP
    >>> with Aedat4Writer("live.aedat4", (346, 260, 2)) as w:  # doctest: +SKIP
    ...     w.write(chunk)
"""

from __future__ import annotations

import enum
import io
import logging
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sdt3_event._files import temp_beside
from sdt3_event.events._assemble import _V13
from sdt3_event.events._flatbuffers import root_table
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, SensorSize, validate_events

log = logging.getLogger(__name__)

MAGIC = b"#!AER-DAT4.0\r\n"
EVENT_TYPE_ID = "EVTS"
#: The 16-byte on-wire event struct.
DV_EVENT_DTYPE = np.dtype(
    {"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"], "itemsize": 16}
)
#: Default cap on one packet's bytes, compressed or decompressed (an int32 length could claim 2 GiB).
MAX_PACKET_BYTES = 256 * 1024 * 1024
#: Cap on the IOHeader (its XML describes a handful of streams: a few KiB).
MAX_HEADER_BYTES = 1024 * 1024
DEFAULT_PACKET_SIZE = 16384

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
#: ``[stream_id:int32][size:int32]`` in front of every packet.
PACKET_HEADER = struct.Struct("<ii")
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Compression(enum.IntEnum):
    """The ``compression`` enum of the IOHeader."""

    NONE = 0
    LZ4 = 1
    LZ4_HIGH = 2
    ZSTD = 3
    ZSTD_HIGH = 4

    @classmethod
    def parse(cls, value: str | int | Compression) -> Compression:
        """Accept ``"lz4"``, ``"LZ4_HIGH"``, ``"none"``, 1, ... .

        Raises:
            ValueError: an unknown name or number (the message lists the valid ones).
        """
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        else:
            try:
                return cls(int(value))
            except ValueError:
                pass
        raise ValueError(
            f"unknown AEDAT4 compression {value!r}; use one of "
            f"{', '.join(c.name.lower() for c in cls)}"
        )


# --------------------------------------------------------------------------------------------------
# compression


def compress(payload: bytes, compression: Compression) -> bytes:
    """Compress one packet's flatbuffer as AEDAT 4.0 does (LZ4 frame format or a zstd frame)."""
    if compression == Compression.NONE:
        return payload
    if compression in (Compression.LZ4, Compression.LZ4_HIGH):
        import lz4.frame

        level = 9 if compression == Compression.LZ4_HIGH else 0
        return lz4.frame.compress(payload, compression_level=level, store_size=False)
    zstd = _import_zstd()
    level = 10 if compression == Compression.ZSTD_HIGH else 3
    return zstd.ZstdCompressor(level=level).compress(payload)


def decompress(
    data: bytes | memoryview,
    compression: Compression,
    *,
    max_bytes: int = MAX_PACKET_BYTES,
    what: str = "packet",
) -> bytes | memoryview:
    """Undo ``compress``, never producing more than ``max_bytes``.

    Raises:
        EventFormatError: corrupt or truncated compressed data, or more than ``max_bytes`` of output.
    """
    if compression == Compression.NONE:
        return data
    if compression in (Compression.LZ4, Compression.LZ4_HIGH):
        import lz4.frame

        if bytes(data[:4]) != _LZ4_MAGIC:
            raise EventFormatError(f"{what}: not an LZ4 frame (magic {bytes(data[:4]).hex()})")
        dec = lz4.frame.LZ4FrameDecompressor()
        # Ask for a likely size first (a buffer of ``max_bytes`` per call costs more than the
        # decompression), then for the rest while the frame is unfinished, up to the cap.
        want = min(max_bytes + 1, max(1 << 16, 4 * len(data)))
        try:
            out = dec.decompress(bytes(data), max_length=want)
            if not dec.eof and len(out) <= max_bytes:
                parts = [out]
                total = len(out)
                while not dec.eof and total <= max_bytes and not dec.needs_input:
                    more = dec.decompress(b"", max_length=min(max_bytes + 1 - total, 4 * total))
                    if not more:
                        break
                    parts.append(more)
                    total += len(more)
                out = b"".join(parts)
        except RuntimeError as exc:
            raise EventFormatError(f"{what}: corrupt LZ4 data ({exc})") from exc
        if len(out) > max_bytes:
            raise EventFormatError(
                f"{what}: decompresses to more than {max_bytes} bytes; raise max_packet_bytes "
                "if the recording really has packets this large"
            )
        if not dec.eof:
            raise EventFormatError(f"{what}: truncated LZ4 frame")
        return out
    zstd = _import_zstd()
    if bytes(data[:4]) != _ZSTD_MAGIC:
        raise EventFormatError(f"{what}: not a zstd frame (magic {bytes(data[:4]).hex()})")
    try:
        with zstd.ZstdDecompressor().stream_reader(io.BytesIO(bytes(data))) as reader:
            out = reader.read(max_bytes + 1)
    except zstd.ZstdError as exc:
        raise EventFormatError(f"{what}: corrupt zstd data ({exc})") from exc
    if len(out) > max_bytes:
        raise EventFormatError(f"{what}: decompresses to more than {max_bytes} bytes")
    return out


def _import_zstd():
    try:
        import zstandard
    except ImportError as exc:  # pragma: no cover - zstandard is a declared dependency
        raise ImportError(
            "AEDAT4 zstd compression needs the 'zstandard' package: pip install zstandard"
        ) from exc
    return zstandard


# --------------------------------------------------------------------------------------------------
# IOHeader and the info XML


@dataclass(frozen=True)
class StreamInfo:
    """One stream declared in the IOHeader's info XML.

    Attributes:
        stream_id: the id used in packet headers.
        type_identifier: the flatbuffer identifier of its packets (``EVTS`` for events).
        output_name: ``originalOutputName`` (``"events"``, ``"frames"``, ``"imu"``, ...).
        module_name: ``originalModuleName``.
        size: ``(sizeX, sizeY)`` of its ``info`` node, when present.
        source: the camera name (``info/source``), when present.
        attrs: every ``info`` attribute as text.
    """

    stream_id: int
    type_identifier: str
    output_name: str = ""
    module_name: str = ""
    size: tuple[int, int] | None = None
    source: str = ""
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def is_events(self) -> bool:
        return self.type_identifier == EVENT_TYPE_ID


@dataclass(frozen=True)
class IOHeader:
    """The decoded IOHeader: compression, data table position, info XML and its streams."""

    compression: Compression
    data_table_position: int
    info_xml: str
    streams: tuple[StreamInfo, ...]

    def event_stream(self, name: str | None = None) -> StreamInfo:
        """The first event stream (or the one whose ``originalOutputName`` is ``name``).

        Raises:
            EventFormatError: no such event stream; the message lists what the header declares.
        """
        for s in self.streams:
            if s.is_events and (name is None or s.output_name == name):
                return s
        have = ", ".join(
            f"{s.stream_id}:{s.output_name}({s.type_identifier})" for s in self.streams
        )
        raise EventFormatError(
            f"no event stream{f' named {name!r}' if name else ''} in the AEDAT4 header "
            f"(streams: {have or 'none'})"
        )

    def sensor_size(self, name: str | None = None) -> SensorSize | None:
        """``(W, H, 2)`` of the event stream, or ``None`` when the header does not say."""
        s = self.event_stream(name)
        return None if s.size is None else (s.size[0], s.size[1], 2)


def build_info_xml(streams: list[StreamInfo], compression: Compression) -> str:
    """The ``infoNode`` XML that DV and dv-processing write, for the given streams."""
    root = ET.Element("dv", version="2.0")
    out = ET.SubElement(root, "node", name="outInfo", path="/outInfo/")

    def attr(parent: ET.Element, key: str, type_: str, value) -> None:
        ET.SubElement(parent, "attr", key=key, type=type_).text = str(value)

    for s in streams:
        node = ET.SubElement(out, "node", name=str(s.stream_id), path=f"/outInfo/{s.stream_id}/")
        attr(node, "compression", "string", compression.name)
        attr(node, "originalModuleName", "string", s.module_name or "sdt3-event")
        attr(node, "originalOutputName", "string", s.output_name or "events")
        attr(node, "typeDescription", "string", "Array of events (polarity ON/OFF).")
        attr(node, "typeIdentifier", "string", s.type_identifier)
        info = ET.SubElement(node, "node", name="info", path=f"/outInfo/{s.stream_id}/info/")
        if s.size is not None:
            attr(info, "sizeX", "int", int(s.size[0]))
            attr(info, "sizeY", "int", int(s.size[1]))
        attr(info, "source", "string", s.source or "sdt3-event")
        for k, v in s.attrs.items():
            if k not in ("sizeX", "sizeY", "source"):
                attr(info, k, "string", v)
    ET.indent(root, space="    ")
    return ET.tostring(root, encoding="unicode") + "\n"


def parse_info_xml(text: str, what: str = "AEDAT4 header") -> tuple[StreamInfo, ...]:
    """The streams declared by an IOHeader's info XML.

    Raises:
        EventFormatError: the XML does not parse.
    """
    try:
        root = ET.fromstring(text.rstrip("\x00").strip() or "<dv/>")
    except ET.ParseError as exc:
        raise EventFormatError(f"{what}: the info XML does not parse ({exc})") from exc
    streams = []
    for out in root.iter("node"):
        if out.get("name") != "outInfo":
            continue
        for node in out.findall("node"):
            name = node.get("name", "")
            if not name.lstrip("-").isdigit():
                continue
            attrs = {a.get("key", ""): (a.text or "") for a in node.findall("attr")}
            info_node = next((n for n in node.findall("node") if n.get("name") == "info"), None)
            info = {}
            if info_node is not None:
                info = {a.get("key", ""): (a.text or "") for a in info_node.findall("attr")}
            size = None
            if "sizeX" in info and "sizeY" in info:
                try:
                    size = (int(info["sizeX"]), int(info["sizeY"]))
                except ValueError as exc:
                    raise EventFormatError(f"{what}: non-integer sizeX/sizeY {info}") from exc
            streams.append(
                StreamInfo(
                    stream_id=int(name),
                    type_identifier=attrs.get("typeIdentifier", ""),
                    output_name=attrs.get("originalOutputName", ""),
                    module_name=attrs.get("originalModuleName", ""),
                    size=size,
                    source=info.get("source", ""),
                    attrs=info,
                )
            )
        break
    return tuple(streams)


def encode_io_header(
    compression: Compression, info_xml: str, data_table_position: int = -1
) -> bytes:
    """The size-prefixed ``IOHeader`` flatbuffer (the same layout as dv-processing writes).

    Layout after the 4-byte size prefix: root offset (24), ``IOHE``, 6 bytes padding, the vtable
    (10 bytes: fields at +4 compression, +12 dataTablePosition, +8 infoNode), the 20-byte table,
    then the NUL-terminated string padded to 4 bytes.
    """
    text = info_xml.encode("utf-8")
    body = bytearray()
    body += _U32.pack(24) + b"IOHE" + bytes(6)
    body += struct.pack("<5H", 10, 20, 4, 12, 8)
    body += _I32.pack(10) + _I32.pack(int(compression)) + _U32.pack(12)
    body += _I64.pack(int(data_table_position))
    body += _U32.pack(len(text)) + text + b"\x00"
    body += bytes(-len(body) % 4)
    return _U32.pack(len(body)) + bytes(body)


def decode_io_header(buf: bytes | memoryview, what: str = "AEDAT4 header") -> IOHeader:
    """Decode a size-prefixed IOHeader flatbuffer.

    Raises:
        EventFormatError: not an IOHeader, an unknown compression, or unparsable info XML.
    """
    t = root_table(buf, b"IOHE", what)
    code = t.scalar(0, _I32, 0)
    try:
        compression = Compression(code)
    except ValueError as exc:
        raise EventFormatError(f"{what}: unknown compression code {code}") from exc
    try:
        xml_text = t.string(2, strict=True)
    except EventFormatError as exc:
        raise EventFormatError(f"{what}: corrupt stream description (not UTF-8 XML)") from exc
    return IOHeader(compression, t.scalar(1, _I64, -1), xml_text, parse_info_xml(xml_text, what))


# --------------------------------------------------------------------------------------------------
# event packets

_EVTS_PREFIX = struct.Struct("<II4s2x3HiI")  # size, root, ident, pad, vtable(3), soffset, uoffset


# ``EVENT_DTYPE`` is packed ``t, x, y, p`` (13 bytes): byte for byte the first 13 bytes of the 16-byte
# on-wire struct. Converting is one copy of 13-byte items ("V13"), far faster than field by field.
_ROW_V13 = np.dtype({"names": ["v"], "formats": [_V13], "offsets": [0], "itemsize": 16})


def _packed(events: np.ndarray) -> np.ndarray:
    """``EVENT_DTYPE`` events as a ``[N]`` array of 13-byte items."""
    if events.dtype != EVENT_DTYPE:
        raise EventFormatError(f"expected events of dtype {EVENT_DTYPE}, got {events.dtype}")
    return np.ascontiguousarray(events).view(_V13)


def _rows_v13(rows: np.ndarray) -> np.ndarray:
    """The first 13 bytes of each 16-byte row of a ``[N, 16]`` uint8 array, as ``[N]`` V13 items."""
    return rows.reshape(-1).view(_ROW_V13)["v"]


def events_to_dv(events: np.ndarray) -> np.ndarray:
    """``EVENT_DTYPE`` -> the 16-byte on-wire struct array (padding zeroed).

    Shape:
        ``[N]`` -> ``[N]``.
    """
    out = np.zeros(len(events), dtype=DV_EVENT_DTYPE)
    rows = out.view(np.uint8).reshape(len(events), 16)  # [N, 16]
    np.copyto(_rows_v13(rows), _packed(events))
    return out


def _dv_into(out: np.ndarray, raw: np.ndarray) -> None:
    """Convert on-wire rows into the contiguous ``EVENT_DTYPE`` array ``out`` of the same length."""
    n = len(raw)
    if n == 0:
        return
    if raw.dtype == np.uint8 and raw.ndim == 2 and raw.shape[1] == 16:
        rows = np.ascontiguousarray(raw)
    elif raw.dtype == DV_EVENT_DTYPE:
        rows = np.ascontiguousarray(raw).view(np.uint8).reshape(n, 16)  # [N, 16]
    else:
        raise EventFormatError(f"expected {DV_EVENT_DTYPE} or [N, 16] uint8 rows, got {raw.dtype}")
    np.copyto(out.view(_V13), _rows_v13(rows))
    on = rows[:, 12]
    if on.max() > 1:  # a writer that stored polarity as something other than 0/1
        out["p"] = on != 0


def dv_to_events(raw: np.ndarray) -> np.ndarray:
    """The 16-byte on-wire struct array -> ``EVENT_DTYPE`` (any non-zero polarity byte is ON).

    Shape:
        ``[N]`` of ``DV_EVENT_DTYPE`` or ``[N, 16]`` uint8 rows -> ``[N]``.
    """
    out = np.empty(len(raw), dtype=EVENT_DTYPE)
    _dv_into(out, raw)
    return out


def encode_event_packet(events: np.ndarray) -> bytearray:
    """One size-prefixed ``EventPacket`` flatbuffer (uncompressed), laid out as dv-processing does.

    Layout: ``[size][root=16]["EVTS"][2 pad][vtable 6,8,4][soffset 6][uoffset 4][n][n x 16 bytes]``,
    which puts the int64 timestamps on 8-byte boundaries of the prefixed buffer.

    Shape:
        events: ``[N]`` of ``EVENT_DTYPE`` (or the 16-byte ``DV_EVENT_DTYPE``).
    """
    n = len(events)
    buf = bytearray(32 + 16 * n)
    _EVTS_PREFIX.pack_into(buf, 0, 28 + 16 * n, 16, b"EVTS", 6, 8, 4, 6, 4)
    _U32.pack_into(buf, 28, n)
    if n:
        rows = np.frombuffer(buf, dtype=np.uint8, count=16 * n, offset=32).reshape(n, 16)
        if events.dtype == DV_EVENT_DTYPE:
            rows[...] = np.ascontiguousarray(events).view(np.uint8).reshape(n, 16)
        else:
            np.copyto(_rows_v13(rows), _packed(events))
    return buf


def decode_event_packet(buf: bytes | memoryview, what: str = "event packet") -> np.ndarray:
    """Decode one (decompressed, size-prefixed) ``EventPacket`` flatbuffer into ``EVENT_DTYPE``.

    Shape:
        returns ``[N]``.

    Raises:
        EventFormatError: not an event packet, or its vector runs past the buffer.
    """
    return dv_to_events(decode_event_packet_raw(buf, what))


def decode_event_packet_raw(buf: bytes | memoryview, what: str = "event packet") -> np.ndarray:
    """Like ``decode_event_packet`` but returns a zero-copy view in ``DV_EVENT_DTYPE``."""
    t = root_table(buf, b"EVTS", what)
    start, n = t.vector(0, DV_EVENT_DTYPE.itemsize)
    if n == 0:
        return np.zeros(0, dtype=DV_EVENT_DTYPE)
    # ``t.buf`` is the buffer without its size prefix: shift by 4 into the original.
    return np.frombuffer(buf, dtype=DV_EVENT_DTYPE, count=n, offset=start + 4)


def encode_packet(
    stream_id: int, events: np.ndarray, compression: Compression = Compression.NONE
) -> bytes:
    """A complete packet on the wire: ``[stream_id][size][compressed EventPacket]``."""
    payload = compress(encode_event_packet(events), compression)
    return PACKET_HEADER.pack(stream_id, len(payload)) + payload


# --------------------------------------------------------------------------------------------------
# the data table

_FTAB_ELEM = struct.Struct("<iiiiqqqq")  # soffset, stream_id, size, pad, byte_offset, n, t0, t1


def encode_data_table(entries: list[tuple[int, int, int, int, int, int]]) -> bytes:
    """The size-prefixed ``FileDataTable`` flatbuffer (uncompressed).

    Args:
        entries: ``(byte_offset, stream_id, size, n_elements, t_start, t_end)`` per packet, where
            ``byte_offset`` is the file offset of the packet's payload (after its 8-byte header).

    Layout: ``[size][root=20]["FTAB"][6 pad][root vtable 6,8,4][soffset 6][uoffset 4][n][n uoffsets]``
    then, 8-aligned, one shared element vtable (14 bytes + 2 pad) and the 48-byte element tables
    ``[soffset][PacketHeader][pad][ByteOffset][NumElements][TimestampStart][TimestampEnd]``.
    """
    n = len(entries)
    body = bytearray(_U32.pack(20) + b"FTAB" + bytes(6) + struct.pack("<3H", 6, 8, 4))
    body += _I32.pack(6) + _U32.pack(4) + _U32.pack(n)
    refs_pos = len(body)
    body += bytes(4 * n)
    # +4 for the size prefix: element tables must sit on 8-byte boundaries of the prefixed buffer.
    body += bytes(-(len(body) + 4) % 8)
    vt_pos = len(body)
    body += struct.pack("<7H", 14, 48, 16, 4, 24, 32, 40) + bytes(2)
    refs = bytearray()
    for i, (byte_offset, sid, size, count, t0, t1) in enumerate(entries):
        pos = len(body)
        refs += _U32.pack(pos - (refs_pos + 4 * i))
        body += _FTAB_ELEM.pack(pos - vt_pos, sid, size, 0, byte_offset, count, t0, t1)
    body[refs_pos : refs_pos + 4 * n] = refs
    return _U32.pack(len(body)) + bytes(body)


def decode_data_table(
    buf: bytes | memoryview, what: str = "AEDAT4 data table"
) -> list[tuple[int, int, int, int, int, int]]:
    """Decode a (decompressed) ``FileDataTable``: the inverse of ``encode_data_table``.

    Raises:
        EventFormatError: not a data table, or corrupt.
    """
    t = root_table(buf, b"FTAB", what)
    start, n = t.vector(0, 4)
    out = []
    for i in range(n):
        e = t.table_at(start + 4 * i)
        ph = e.struct_pos(1, 8)
        sid, size = PACKET_HEADER.unpack_from(e.buf, ph) if ph is not None else (0, 0)
        out.append(
            (
                e.scalar(0, _I64, 0),
                sid,
                size,
                e.scalar(2, _I64, 0),
                e.scalar(3, _I64, 0),
                e.scalar(4, _I64, 0),
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# reading a byte stream (file or socket)


class TruncatedError(EventFormatError):
    """A file that ends inside a packet; ``offset`` is where the incomplete packet starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Packet:
    """One packet as read from the stream: its stream id and its still-compressed payload."""

    stream_id: int
    payload: bytes
    offset: int = -1  # file offset of the payload, when known


#: Reads up to this size are filled in place (one allocation); larger ones grow as data arrives,
#: so a length field that lies costs no more memory than the bytes actually sent.
_PREALLOC_BYTES = 16 * 1024 * 1024


def _read_exact(fp: BinaryIO, n: int, what: str, *, allow_eof: bool = False) -> bytes | None:
    """Read exactly ``n`` bytes, in bounded steps (a lying length never allocates up front)."""
    if 8 < n <= _PREALLOC_BYTES and hasattr(fp, "readinto"):
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = fp.readinto(view[got:])
            if not k:
                if allow_eof and got == 0:
                    return None
                raise EventFormatError(f"{what}: truncated: expected {n} bytes, got {got}")
            got += k
        return buf
    chunks, got = [], 0
    while got < n:
        chunk = fp.read(min(n - got, 1 << 20))
        if not chunk:
            if allow_eof and got == 0:
                return None
            raise EventFormatError(f"{what}: truncated: expected {n} bytes, got {got}")
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_io_header(
    fp: BinaryIO, *, expect_magic: bool | None = True, what: str = "AEDAT4 stream"
) -> IOHeader:
    """Read the magic line (files) and the IOHeader from a binary stream.

    Args:
        fp: positioned at the start of the file or stream.
        expect_magic: ``True`` for files, ``False`` for DV network streams, ``None`` to accept
            both (a file piped into a socket).

    Raises:
        EventFormatError: a wrong magic line, an absurd header length, or a corrupt header.
    """
    head = _read_exact(fp, 4, what, allow_eof=True)
    if head is None:
        raise EventFormatError(f"{what}: ended before the AEDAT4 header")
    head = bytes(head)
    if expect_magic or (expect_magic is None and head == MAGIC[:4]):
        magic = head + bytes(_read_exact(fp, len(MAGIC) - 4, what, allow_eof=True) or b"")
        if magic != MAGIC:
            raise EventFormatError(
                f"{what}: not an AEDAT 4.0 file (starts with {magic[:16]!r}, expected {MAGIC!r})"
            )
        head = _read_exact(fp, 4, what, allow_eof=True)
        if head is None:
            raise EventFormatError(f"{what}: ended before the AEDAT4 header")
        head = bytes(head)
    size = _U32.unpack(head)[0]
    if size < 8 or size > MAX_HEADER_BYTES:
        raise EventFormatError(
            f"{what}: header length {size} is not plausible (expected 8..{MAX_HEADER_BYTES} bytes);"
            " is this an AEDAT 4.0 / DV stream?"
        )
    return decode_io_header(head + bytes(_read_exact(fp, size, what)), what)


def iter_packets(
    fp: BinaryIO,
    header: IOHeader,
    *,
    start_offset: int = -1,
    max_packet_bytes: int = MAX_PACKET_BYTES,
    what: str = "AEDAT4 stream",
    skip_streams: bool = True,
    end_offset: int = -1,
) -> Iterator[Packet]:
    """Yield the packets after the header until the data table (files) or a clean EOF.

    Args:
        fp: the binary stream, positioned just after the IOHeader.
        header: from ``read_io_header``; packets of undeclared streams raise.
        start_offset: the file offset of ``fp`` now (to stop at the data table), or -1 (streams).
        max_packet_bytes: the largest packet accepted; larger length fields raise before reading.
        skip_streams: packets of declared non-event streams are read past but yielded with an
            empty payload (their bytes are discarded as they arrive).
        end_offset: the file's size (files): every length field is checked against the bytes
            left before anything is read or allocated.

    Raises:
        TruncatedError: (files) a packet header or payload runs past the end of the file.
        EventFormatError: absurd lengths, undeclared stream ids.
    """
    known = {s.stream_id: s for s in header.streams}
    offset = start_offset
    stop = (
        header.data_table_position if (start_offset >= 0 and header.data_table_position > 0) else -1
    )
    while True:
        if stop >= 0 and offset >= stop:
            # A corrupt dataTablePosition must not end the read early in silence: the table is
            # never a packet of a declared stream.
            if 0 <= offset and offset + 8 <= end_offset:
                sid, size = PACKET_HEADER.unpack(bytes(_read_exact(fp, 8, what)))
                if sid in known and 0 <= size <= end_offset - offset - 8:
                    raise EventFormatError(
                        f"{what}: the header's dataTablePosition ({stop}) points at a packet of "
                        f"stream {sid} (byte {offset}), not at the data table; the header is corrupt"
                    )
            return
        if 0 <= offset < end_offset < offset + 8:
            raise TruncatedError(
                f"{what}: truncated: a packet header at byte {offset} needs 8 bytes, "
                f"{end_offset - offset} left",
                offset,
            )
        raw = _read_exact(fp, 8, what, allow_eof=True)
        if raw is None:
            return
        sid, size = PACKET_HEADER.unpack(raw)
        where = f"{what}: packet at byte {offset}" if offset >= 0 else f"{what}: packet"
        if sid not in known:
            raise EventFormatError(
                f"{where} has stream id {sid}, which the header does not declare "
                f"(declared: {sorted(known)}); the stream is corrupt or not AEDAT 4.0"
            )
        if end_offset >= 0 and offset >= 0 and 0 <= size and offset + 8 + size > end_offset:
            if size <= max_packet_bytes:
                raise TruncatedError(
                    f"{where}: truncated: it claims {size} bytes, {end_offset - offset - 8} left",
                    offset,
                )
            raise EventFormatError(
                f"{where} claims {size} bytes but only {end_offset - offset - 8} are left in the "
                "file; the length field is corrupt, refusing to read it"
            )
        if size < 0 or size > max_packet_bytes:
            raise EventFormatError(
                f"{where} claims {size} bytes (limit {max_packet_bytes}); refusing to read it"
            )
        if offset >= 0:
            offset += 8
        if skip_streams and not known[sid].is_events:
            left = size
            while left:
                got = fp.read(min(left, 1 << 20))
                if not got:
                    raise EventFormatError(f"{where}: truncated inside a {size}-byte packet")
                left -= len(got)
            payload = b""
        else:
            payload = _read_exact(fp, size, where)
        yield Packet(sid, payload, offset)
        if offset >= 0:
            offset += size


def packet_event_rows(
    packet: Packet,
    compression: Compression,
    *,
    max_packet_bytes: int = MAX_PACKET_BYTES,
    what: str = "AEDAT4 stream",
) -> np.ndarray:
    """Decompress an event packet and view its events as on-wire ``DV_EVENT_DTYPE`` rows (the
    network source converts them in one compiled pass, as the file reader does).

    Raises:
        EventFormatError: corrupt compressed data or flatbuffer.
    """
    where = f"{what}: packet of stream {packet.stream_id}"
    data = decompress(packet.payload, compression, max_bytes=max_packet_bytes, what=where)
    return decode_event_packet_raw(data, where)


#: The data table is read (for an event count) only when it is at most this large.
_MAX_TABLE_BYTES = 32 * 1024 * 1024


class Aedat4File:
    """The one AEDAT 4.0 file reader: header, then the event stream's packets, bounds-checked.

    Every length field is checked against the bytes left in the file (and against
    ``max_packet_bytes``) before anything is read, allocated or decompressed, so a corrupt size
    raises ``EventFormatError`` naming the file and byte offset instead of exhausting memory.
    :func:`read_aedat4`, :func:`sdt3_event.events.io.read_events` and
    :func:`sdt3_event.events.io.iter_events` all read through it.

    Args:
        path: the ``.aedat4`` file.
        stream: the event stream's ``originalOutputName``; default the first event stream.
        max_packet_bytes: cap on one packet (compressed and decompressed).
        allow_truncated: stop at a packet cut off by the end of the file (``truncated_bytes``
            then counts the bytes left out) instead of raising.

    Raises:
        EventFormatError: not AEDAT 4.0, a corrupt header, no event stream.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        stream: str | None = None,
        max_packet_bytes: int = MAX_PACKET_BYTES,
        allow_truncated: bool = False,
    ) -> None:
        self.path = Path(path)
        self.what = str(path)
        self.max_packet_bytes = max_packet_bytes
        self.allow_truncated = allow_truncated
        self.truncated_bytes = 0
        self.size = self.path.stat().st_size
        self._fp = open(self.path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        try:
            self.header = read_io_header(self._fp, what=self.what)
            self.stream_id = self.header.event_stream(stream).stream_id
            self.sensor_size = self.header.sensor_size(stream)
        except BaseException:
            self._fp.close()
            raise

    def raw_packets(self) -> Iterator[np.ndarray]:
        """Yield each event packet's events as ``DV_EVENT_DTYPE`` ``[n]`` (zero-copy views).

        Raises:
            EventFormatError: a corrupt packet, or one cut off by the end of the file (unless
                ``allow_truncated``); the message names the file and the packet's byte offset.
        """
        fp, what = self._fp, self.what
        packets = iter_packets(
            fp,
            self.header,
            start_offset=fp.tell(),
            max_packet_bytes=self.max_packet_bytes,
            what=what,
            end_offset=self.size,
        )
        while True:
            try:
                pkt = next(packets)
            except StopIteration:
                return
            except TruncatedError as exc:
                if not self.allow_truncated:
                    raise EventFormatError(
                        f"{exc}: the AEDAT 4.0 file is truncated or corrupt; re-copy it, or pass "
                        "allow_truncated=True to read the complete packets"
                    ) from exc
                self.truncated_bytes = max(1, self.size - exc.offset)
                return
            if pkt.stream_id != self.stream_id:
                continue
            where = f"{what}: packet at byte {pkt.offset}"
            data = decompress(
                pkt.payload, self.header.compression, max_bytes=self.max_packet_bytes, what=where
            )
            yield decode_event_packet_raw(data, where)

    def count_events(self) -> int | None:
        """The events the file's data table declares for the event stream (``None`` when the
        file has no readable data table). Only read from the table: for display, not trusted."""
        pos = self.header.data_table_position
        if pos <= 0 or not 0 < self.size - pos <= _MAX_TABLE_BYTES:
            return None
        here = self._fp.tell()
        try:
            self._fp.seek(pos)
            raw = self._fp.read(self.size - pos)
            where = f"{self.what}: data table at byte {pos}"
            table = decode_data_table(
                decompress(
                    raw, self.header.compression, max_bytes=self.max_packet_bytes, what=where
                ),
                where,
            )
        except (EventFormatError, MemoryError):
            return None
        finally:
            self._fp.seek(here)
        return sum(n for _, sid, _, n, _, _ in table if sid == self.stream_id)

    def close(self) -> None:
        self._fp.close()

    def __enter__(self) -> Aedat4File:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_aedat4_packets(
    path: str | os.PathLike,
    *,
    stream: str | None = None,
    max_packet_bytes: int = MAX_PACKET_BYTES,
) -> Iterator[np.ndarray]:
    """Yield the event packets of an AEDAT 4.0 file one by one, decoded to ``EVENT_DTYPE``.

    Args:
        path: the ``.aedat4`` file.
        stream: the event stream's ``originalOutputName``; default the first event stream.
        max_packet_bytes: cap on one packet (compressed and decompressed).

    Raises:
        EventFormatError: not AEDAT 4.0, no event stream, truncated or corrupt packets.
    """
    with Aedat4File(path, stream=stream, max_packet_bytes=max_packet_bytes) as f:
        for raw in f.raw_packets():
            yield dv_to_events(raw)


def decode_aedat4(
    path: str | os.PathLike, *, stream: str | None = None, allow_truncated: bool = False
):
    """Decode an AEDAT 4.0 file's event stream into unvalidated records with their statistics.

    Returns:
        A :class:`~sdt3_event.events._assemble.DecodedRecords` (what ``read_events`` validates).

    Raises:
        EventFormatError: see :class:`Aedat4File`.
    """
    from sdt3_event.events import _kernels
    from sdt3_event.events._assemble import DecodedRecords

    st = _kernels.new_state()
    with Aedat4File(path, stream=stream, allow_truncated=allow_truncated) as f:
        # Each packet goes straight into the output while its decompressed bytes are still in
        # cache. The data table's count sizes the output (capped by the file size: the table is
        # not trusted); without one, the output grows by doubling.
        declared = f.count_events() or 0
        out = np.empty(min(declared, f.size // 2), dtype=EVENT_DTYPE)
        n = 0
        for r in f.raw_packets():
            if n + len(r) > len(out):
                grown = np.empty(max(2 * len(out), n + len(r), 1 << 16), dtype=EVENT_DTYPE)
                grown.view(_V13)[:n] = out.view(_V13)[:n]
                out = grown
            n = _kernels.dv16(r, st, out, n)
    return DecodedRecords(
        out[:n], st, f.sensor_size, ordered=True, truncated_bytes=f.truncated_bytes
    )


def read_aedat4(
    path: str | os.PathLike, *, stream: str | None = None
) -> tuple[np.ndarray, SensorSize | None]:
    """All events of an AEDAT 4.0 file's event stream, and its sensor size ``(W, H, 2)``.

    Unlike :func:`sdt3_event.events.io.read_events`, the events are not validated (the codec
    level: what the file holds).

    Shape:
        returns ``[N]`` of ``EVENT_DTYPE``.

    Raises:
        EventFormatError: see :class:`Aedat4File`.
    """
    decoded = decode_aedat4(path, stream=stream)
    return decoded.events, decoded.sensor_size


# --------------------------------------------------------------------------------------------------
# writing


class Aedat4Writer:
    """Write events to an AEDAT 4.0 file incrementally; the file appears atomically on ``close``.

    Events go to a temporary file beside ``path``; ``close()`` appends the data table, rewrites the
    header with its position and renames the file into place. Leaving the ``with`` block by an
    exception removes the temporary file and leaves ``path`` untouched.

    Args:
        path: the ``.aedat4`` file to create (replaced if it exists).
        sensor_size: ``(W, H, P)`` written as ``sizeX`` / ``sizeY``.
        compression: ``"lz4"`` (DV's default), ``"lz4_high"``, ``"zstd"``, ``"zstd_high"``,
            ``"none"``.
        packet_size: the most events per packet.
        source: the camera name written to the header.
        stream_id: the event stream's id.
        validate: check each chunk against the schema, the sensor and the previous timestamps.

    Raises:
        ValueError: an unknown compression or a non-positive packet size.
        EventFormatError: from ``write`` when events are invalid.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sensor_size: SensorSize,
        *,
        compression: str | Compression = "lz4",
        packet_size: int = DEFAULT_PACKET_SIZE,
        source: str = "sdt3-event",
        stream_id: int = 0,
        validate: bool = True,
    ) -> None:
        if packet_size < 1:
            raise ValueError(f"packet_size must be >= 1, got {packet_size}")
        self.path = Path(path)
        self.sensor_size = tuple(int(s) for s in sensor_size)
        self.compression = Compression.parse(compression)
        self.packet_size = int(packet_size)
        self.stream_id = int(stream_id)
        self.validate = validate
        self.n_events = 0
        self._last_t: int | None = None
        self._table: list[tuple[int, int, int, int, int, int]] = []
        stream = StreamInfo(
            stream_id=self.stream_id,
            type_identifier=EVENT_TYPE_ID,
            output_name="events",
            module_name="sdt3-event",
            size=(self.sensor_size[0], self.sensor_size[1]),
            source=source,
        )
        self._xml = build_info_xml([stream], self.compression)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = temp_beside(self.path)
        self._fp: BinaryIO | None = os.fdopen(fd, "wb")
        self._fp.write(MAGIC)
        # Placeholder with the final header's exact length (the int64 position is fixed-size).
        self._fp.write(encode_io_header(self.compression, self._xml, -1))
        self._offset = self._fp.tell()

    def write(self, events: np.ndarray) -> None:
        """Append events (sorted by time, continuing the previous chunk).

        Shape:
            events: ``[N]`` of ``EVENT_DTYPE``.

        Raises:
            EventFormatError: wrong dtype, coordinates outside the sensor, or time going backwards.
            RuntimeError: the writer is closed.
        """
        if self._fp is None:
            raise RuntimeError(f"{self.path}: the writer is closed")
        if self.validate:
            validate_events(events, self.sensor_size, source=str(self.path))
            if len(events) and self._last_t is not None and int(events["t"][0]) < self._last_t:
                raise EventFormatError(
                    f"{self.path}: chunk starts at t={int(events['t'][0])} us, before the previous "
                    f"chunk's last event ({self._last_t} us); write chunks in time order"
                )
        for i in range(0, len(events), self.packet_size):
            part = events[i : i + self.packet_size]
            payload = compress(encode_event_packet(part), self.compression)
            self._fp.write(PACKET_HEADER.pack(self.stream_id, len(payload)))
            self._fp.write(payload)
            t0, t1 = int(part["t"][0]), int(part["t"][-1])
            self._table.append((self._offset + 8, self.stream_id, len(payload), len(part), t0, t1))
            self._offset += 8 + len(payload)
        if len(events):
            self.n_events += len(events)
            self._last_t = int(events["t"][-1])

    @property
    def bytes_written(self) -> int:
        """Bytes in the file so far (header and packets; the data table comes on ``close``)."""
        return self._offset

    def close(self) -> Path:
        """Finish the file (data table, final header) and move it into place. Idempotent."""
        if self._fp is None:
            return self.path
        fp, self._fp = self._fp, None
        try:
            table_pos = self._offset
            fp.write(compress(encode_data_table(self._table), self.compression))
            fp.seek(len(MAGIC))
            fp.write(encode_io_header(self.compression, self._xml, table_pos))
            fp.flush()
            os.fsync(fp.fileno())
        except BaseException:
            fp.close()
            self._tmp.unlink(missing_ok=True)
            raise
        fp.close()
        os.replace(self._tmp, self.path)
        log.debug("wrote %d events to %s", self.n_events, self.path)
        return self.path

    def abort(self) -> None:
        """Discard everything written so far; ``path`` is left untouched."""
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Aedat4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # a writer dropped without close() leaves no temp file behind
        try:
            self.abort()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def write_aedat4(
    path: str | os.PathLike,
    events: np.ndarray,
    sensor_size: SensorSize,
    *,
    compression: str | Compression = "lz4",
    packet_size: int = DEFAULT_PACKET_SIZE,
    source: str = "sdt3-event",
) -> Path:
    """Write events to an AEDAT 4.0 file atomically (temporary file + rename).

    The file is read back identically by the ``aedat`` package and by dv-processing's
    ``dv.io.MonoCameraRecording``.

    Shape:
        events: ``[N]`` of ``EVENT_DTYPE``, sorted by ``t``.

    Raises:
        EventFormatError: invalid events (dtype, outside ``sensor_size``, unsorted).
        ValueError: unknown compression.
    """
    with Aedat4Writer(
        path, sensor_size, compression=compression, packet_size=packet_size, source=source
    ) as w:
        w.write(events)
    return Path(path)
