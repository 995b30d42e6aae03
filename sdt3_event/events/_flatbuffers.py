"""A small, bounds-checked FlatBuffers *reader* for the few AEDAT 4.0 tables the project decodes.

FlatBuffers layout facts used here (little-endian throughout):

- a buffer starts with a ``uoffset`` (uint32) to the root table, optionally followed by a 4-byte file
  identifier (``b"EVTS"``, ``b"IOHE"``, ``b"FTAB"``); a *size-prefixed* buffer has one more uint32
  (the byte count that follows) in front, which AEDAT 4.0 always uses;
- a table starts with an ``soffset`` (int32): ``vtable = table - soffset``;
- a vtable is ``[vtable_bytes:u16, table_bytes:u16, field_0:u16, field_1:u16, ...]``, each field entry
  the byte offset of that field inside the table, 0 meaning "absent, use the default";
- reference fields (strings, vectors, sub-tables) hold a ``uoffset`` relative to the field's own
  position; strings and vectors start with a uint32 length.

Every offset read from the buffer is checked against its length, so corrupt input raises
``EventFormatError`` instead of reading garbage or crashing. The writers live in ``aedat4.py``: the
project only ever *writes* three fixed layouts, so they are laid out directly there.
"""

from __future__ import annotations

import struct

from sdt3_event.events.schema import EventFormatError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class FlatTable:
    """A view of one table inside a flatbuffer.

    Args:
        buf: the whole buffer (without a size prefix; offsets are relative to its start).
        pos: the table's position in ``buf``.
        what: a name for error messages (the file or socket and the table type).

    Raises:
        EventFormatError: the table or its vtable lies outside the buffer.
    """

    __slots__ = ("buf", "pos", "what", "_vt", "_vt_len", "_tbl_len")

    def __init__(self, buf: bytes | memoryview, pos: int, what: str) -> None:
        self.buf, self.pos, self.what = buf, pos, what
        n = len(buf)
        if pos < 0 or pos + 4 > n:
            raise EventFormatError(f"{what}: table offset {pos} outside a {n}-byte buffer")
        vt = pos - _I32.unpack_from(buf, pos)[0]
        if vt < 0 or vt + 4 > n:
            raise EventFormatError(f"{what}: vtable offset {vt} outside a {n}-byte buffer")
        vt_len, tbl_len = _U16.unpack_from(buf, vt)[0], _U16.unpack_from(buf, vt + 2)[0]
        if vt_len < 4 or vt_len % 2 or vt + vt_len > n or pos + tbl_len > n:
            raise EventFormatError(f"{what}: corrupt vtable (size {vt_len}, table size {tbl_len})")
        self._vt, self._vt_len, self._tbl_len = vt, vt_len, tbl_len

    def field_pos(self, index: int) -> int | None:
        """Absolute position of field ``index`` in the buffer, or ``None`` when it is absent."""
        entry = 4 + 2 * index
        if entry + 2 > self._vt_len:
            return None
        off = _U16.unpack_from(self.buf, self._vt + entry)[0]
        if off == 0:
            return None
        if off + 1 > self._tbl_len:
            raise EventFormatError(f"{self.what}: field {index} lies outside its table")
        return self.pos + off

    def scalar(self, index: int, fmt: struct.Struct, default):
        """A scalar field (``fmt`` is a ``struct.Struct`` of one value), or ``default`` if absent."""
        p = self.field_pos(index)
        if p is None:
            return default
        if p + fmt.size > len(self.buf):
            raise EventFormatError(f"{self.what}: field {index} runs past the buffer end")
        return fmt.unpack_from(self.buf, p)[0]

    def struct_pos(self, index: int, size: int) -> int | None:
        """Position of an inline struct field of ``size`` bytes, bounds-checked."""
        p = self.field_pos(index)
        if p is not None and p + size > len(self.buf):
            raise EventFormatError(f"{self.what}: struct field {index} runs past the buffer end")
        return p

    def _target(self, index: int) -> int | None:
        p = self.field_pos(index)
        if p is None:
            return None
        if p + 4 > len(self.buf):
            raise EventFormatError(f"{self.what}: field {index} runs past the buffer end")
        target = p + _U32.unpack_from(self.buf, p)[0]
        if target + 4 > len(self.buf):
            raise EventFormatError(f"{self.what}: field {index} points outside the buffer")
        return target

    def vector(self, index: int, elem_size: int) -> tuple[int, int]:
        """``(data_pos, length)`` of a vector field; ``(0, 0)`` when absent.

        Raises:
            EventFormatError: the declared length does not fit in the buffer.
        """
        target = self._target(index)
        if target is None:
            return 0, 0
        length = _U32.unpack_from(self.buf, target)[0]
        start = target + 4
        if start + length * elem_size > len(self.buf):
            raise EventFormatError(
                f"{self.what}: vector field {index} declares {length} elements of {elem_size} "
                f"bytes, more than the {len(self.buf) - start} bytes left in the buffer"
            )
        return start, length

    def string(self, index: int, default: str = "", *, strict: bool = False) -> str:
        """A string field decoded as UTF-8 (invalid bytes replaced, or an error when ``strict``).

        Raises:
            EventFormatError: ``strict`` and the bytes are not UTF-8.
        """
        start, length = self.vector(index, 1)
        if start == 0:
            return default
        raw = bytes(self.buf[start : start + length])
        try:
            return raw.decode("utf-8", errors="strict" if strict else "replace")
        except UnicodeDecodeError as exc:
            raise EventFormatError(f"{self.what}: a string field is not UTF-8 ({exc})") from exc

    def table(self, index: int) -> FlatTable | None:
        """A sub-table field, or ``None`` when absent."""
        target = self._target(index)
        return None if target is None else FlatTable(self.buf, target, self.what)

    def table_at(self, pos: int) -> FlatTable:
        """The table referenced by the uoffset stored at ``pos`` (an element of a table vector)."""
        if pos + 4 > len(self.buf):
            raise EventFormatError(f"{self.what}: table reference at {pos} past the buffer end")
        return FlatTable(self.buf, pos + _U32.unpack_from(self.buf, pos)[0], self.what)


def root_table(
    buf: bytes | memoryview, identifier: bytes | None, what: str, *, size_prefixed: bool = True
) -> FlatTable:
    """The root table of a (size-prefixed) flatbuffer, checking its file identifier.

    Args:
        buf: the buffer, including the 4-byte size prefix when ``size_prefixed``.
        identifier: the expected 4-byte file identifier, or ``None`` to skip the check.
        what: a name for error messages.

    Raises:
        EventFormatError: too short, a size prefix that disagrees with the length, a wrong
            identifier, or a root offset outside the buffer.
    """
    if size_prefixed:
        if len(buf) < 8:
            raise EventFormatError(f"{what}: {len(buf)} bytes is too short for a flatbuffer")
        size = _U32.unpack_from(buf, 0)[0]
        if size > len(buf) - 4:
            raise EventFormatError(
                f"{what}: size prefix says {size} bytes but only {len(buf) - 4} are present"
            )
        buf = memoryview(buf)[4 : 4 + size]
    if len(buf) < 8:
        raise EventFormatError(f"{what}: {len(buf)} bytes is too short for a flatbuffer")
    if identifier is not None and bytes(buf[4:8]) != identifier:
        raise EventFormatError(
            f"{what}: expected flatbuffer identifier {identifier!r}, found {bytes(buf[4:8])!r}"
        )
    return FlatTable(buf, _U32.unpack_from(buf, 0)[0], what)
