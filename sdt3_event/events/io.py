"""Read (and write) event files: one entry point, the reader picked by extension and magic bytes.

>>> events, sensor_size = read_events("recording.aedat4")             # doctest: +SKIP
>>> events, _ = read_events("gen3.raw", sensor_size=(640, 480, 2))    # doctest: +SKIP

Every reader returns a 1-D ``EVENT_DTYPE`` array (``t`` int64 µs, ``x``/``y`` int16, ``p`` bool),
sorted by ``t`` and validated with :func:`~sdt3_event.events.schema.validate_events`, plus the
sensor size ``(W, H, P)`` when the caller or the file knows it. EVT 2.0, EVT 3.0, DAT and AEDAT 4.0
are decoded by compiled numba kernels (:mod:`sdt3_event.events._kernels`, AEDAT 4.0 after lz4 /
zstd decompression) that gather the validation statistics as they write; the other formats are
vectorised numpy. :func:`iter_events` reads the same formats chunk by chunk in constant memory.

Bad input raises :class:`~sdt3_event.events.schema.EventFormatError` naming the file and the
problem: a wrong magic number, a truncated file (or, with ``allow_truncated=True``, the complete
part with a logged, counted warning), corrupt records, coordinates outside the sensor (or, with
``drop_out_of_range=True``, dropped and counted), timestamps that go backwards in a format that
promises order, or that overflow.

:data:`FORMATS` lists the supported formats; :func:`detect_format` names a file's format;
:func:`read_events_with_report` also returns the counts; :func:`write_events` writes the formats
that have an encoder (AEDAT 4.0 through :func:`sdt3_event.events.aedat4.write_aedat4`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdt3_event._files import temp_beside
from sdt3_event.events import _aedat, _arrays, _nmnist, _prophesee
from sdt3_event.events._assemble import (
    DecodedEvents,
    DecodedRecords,
    assemble,
    assemble_records,
    concat,
    take,
)
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, SensorSize, first_at

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "EventFormat",
    "EventReadReport",
    "EventChunks",
    "detect_format",
    "iter_events",
    "read_events",
    "read_events_with_report",
    "write_events",
]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class EventFormat:
    """One supported event file format.

    Attributes:
        name: the key in :data:`FORMATS` and the ``format=`` argument.
        description: what the format is and where it comes from.
        extensions: file name suffixes that select it (lower case, with the dot).
        magic: what the file starts with (``None``: no magic number).
        decoder: what decodes it.
        sensor_size: the fixed ``(W, H, P)`` of the format, if it has one.
        geometry_in_file: the file can state its sensor size.
        ordered: the format promises non-decreasing timestamps (a decrease raises); otherwise
            the reader sorts stably.
        writable: :func:`write_events` can write it.

    The last four default to what most formats do, so a row of :data:`FORMATS` names only its
    exceptions.
    """

    name: str
    description: str
    extensions: tuple[str, ...]
    magic: bytes | None
    decoder: str
    sensor_size: SensorSize | None = None
    geometry_in_file: bool = True
    ordered: bool = True
    writable: bool = True


FORMATS: dict[str, EventFormat] = {
    f.name: f
    for f in (
        EventFormat(
            "aedat4",
            "iniVation AEDAT 4.0 (DV software, DAVIS346 / DVXplorer); events stream",
            (".aedat4", ".aedat"),
            _aedat.MAGIC_AEDAT4,
            "lz4/zstd + numba",
        ),
        EventFormat(
            "aedat3",
            "iniVation AEDAT 3.1 polarity packets (DVS128 Gesture's original files)",
            (".aedat",),
            _aedat.MAGIC_AEDAT31,
            "numpy",
        ),
        EventFormat(
            "aedat2",
            "jAER AEDAT 2.0 with CIFAR10-DVS's address layout (x/y flipped, 128x128)",
            (".aedat",),
            _aedat.MAGIC_AEDAT2,
            "numpy",
            sensor_size=_aedat.CIFAR10DVS_SENSOR,
            geometry_in_file=False,
        ),
        EventFormat(
            "evt2",
            "Prophesee RAW EVT 2.0 (Gen3 / GenX320); pass sensor_size when the header has "
            "no geometry",
            (".raw",),
            b"%",
            "numba",
            ordered=False,
        ),
        EventFormat(
            "evt3", "Prophesee RAW EVT 3.0 (IMX636 / Gen4)", (".raw",), b"%", "numba", ordered=False
        ),
        EventFormat(
            "dat", "Prophesee DAT (CD / Event2d records; N-CARS, ATIS)", (".dat",), b"%", "numba"
        ),
        EventFormat(
            "npz",
            "numpy .npz with t/x/y/p arrays (HARDVS compact event files)",
            (".npz",),
            _ZIP_MAGICS[0],
            "numpy",
        ),
        EventFormat(
            "hdf5",
            "HDF5: group 'events' with t/x/y/p datasets, or a compound 'events' dataset",
            (".h5", ".hdf5", ".hdf"),
            _HDF5_MAGIC,
            "h5py",
        ),
        EventFormat(
            "nmnist",
            "N-MNIST / N-Caltech101 ATIS 5-byte .bin (34x34 for N-MNIST)",
            (".bin",),
            None,
            "numpy",
            sensor_size=_nmnist.NMNIST_SENSOR,
            geometry_in_file=False,
        ),
    )
}


@dataclass(frozen=True)
class EventReadReport:
    """Everything :func:`read_events_with_report` learned while reading one file.

    Attributes:
        events: the validated events ``[N]``.
        sensor_size: the caller's sensor size, else the file's (or the format's), else ``None``.
        format: the :data:`FORMATS` key that decoded it.
        n_dropped: events dropped as outside the sensor (``drop_out_of_range=True``).
        n_reordered: out-of-order events that were sorted (formats that allow them).
        truncated_bytes: bytes of an incomplete trailing record/packet that were skipped
            (``allow_truncated=True``; ``1`` marks "truncated, size unknown" for AEDAT 4.0).
    """

    events: np.ndarray
    sensor_size: SensorSize | None
    format: str
    n_dropped: int
    n_reordered: int
    truncated_bytes: int


def _check_sensor_size(sensor_size) -> SensorSize | None:
    if sensor_size is None:
        return None
    try:
        vals = tuple(int(v) for v in sensor_size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sensor_size must be (W, H, P) integers, got {sensor_size!r}") from exc
    if len(vals) == 2:
        vals = (*vals, 2)
    if len(vals) != 3 or min(vals) <= 0:
        raise ValueError(f"sensor_size must be (W, H, P) positive integers, got {sensor_size!r}")
    return vals  # type: ignore[return-value]


def _sniff(path: Path) -> tuple[bytes, bool]:
    """The file's first bytes, and whether they are all of it: a file below
    ``SMALL_FILE_BYTES`` is read whole here, once, for detection and decoding alike.

    Raises:
        FileNotFoundError: no file at ``path`` (or a folder).
    """
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < _prophesee.SMALL_FILE_BYTES:
                return f.read(), True
            return f.read(_SNIFF_BYTES), False
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"event file not found: {path}") from None


def _format_from_content(head: bytes, suffix: str) -> str | None:
    """The format the first bytes announce (``None`` when they announce none)."""
    if head.startswith(b"#!AER-DAT"):
        for name in ("aedat4", "aedat3", "aedat2"):
            if head.startswith(FORMATS[name].magic):
                return name
        return "aedat?"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(_ZIP_MAGICS):
        return "npz"
    if head.startswith(b"%"):
        end, lines = _prophesee.raw_header(head)
        enc = _prophesee.raw_encoding(lines)
        if enc is not None:
            return enc
        if suffix == ".raw":
            return "evt?"
        return "dat"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of an event file from its extension and its first bytes.

    The extension narrows the candidates (``.aedat`` may be 2.0, 3.1 or 4.0; ``.raw`` EVT 2.0 or
    3.0) and the magic bytes decide; a file whose content contradicts its extension is rejected.
    Files with an unknown extension are recognised by content alone.

    Returns:
        A key of :data:`FORMATS`.

    Raises:
        FileNotFoundError: the file does not exist.
        EventFormatError: wrong or unknown magic number, an unsupported version (AEDAT 1.0 / 3.0,
            EVT 2.1), or content that contradicts the extension.
    """
    path = Path(path)
    return _detect(path, _sniff(path)[0])


def _detect(path: Path, head: bytes) -> str:
    """:func:`detect_format` from the file's first bytes."""
    suffix = path.suffix.lower()
    found = _format_from_content(head, suffix)
    expected = [f.name for f in FORMATS.values() if suffix in f.extensions]

    if found == "aedat?":
        version = head[len(b"#!AER-DAT") :].split(b"\n", 1)[0].strip()
        raise EventFormatError(
            f"{path}: AEDAT version {version.decode(errors='replace')!r} is not supported "
            "(AEDAT 2.0, 3.1 and 4.0 are); convert it with iniVation's DV software"
        )
    if found == "evt?":
        raise EventFormatError(
            f"{path}: the Prophesee RAW header names no encoding ('% evt 2.0' / '% evt 3.0' / "
            "'% format EVT3'); pass format='evt2' or format='evt3'"
        )
    if found is not None and found.startswith("evt") and found not in FORMATS:
        raise EventFormatError(
            f"{path}: Prophesee encoding {found} is not supported (EVT 2.0 and 3.0 are); convert "
            "it with Metavision's metavision_file_to_hdf5 or re-record in EVT 3.0"
        )
    if expected:
        if found is None:
            if "nmnist" in expected:
                return "nmnist"
            magic = FORMATS[expected[0]].magic
            raise EventFormatError(
                f"{path}: wrong magic number for a {suffix} file: it starts with {head[:12]!r}, "
                f"expected {magic!r}; the file is corrupt or not a {'/'.join(expected)} file"
            )
        if found not in expected:
            raise EventFormatError(
                f"{path}: the extension {suffix} says {'/'.join(expected)} but the content is "
                f"{found} (starts with {head[:12]!r}); rename the file or pass format={found!r}"
            )
        return found
    if found is None:
        known = sorted({e for f in FORMATS.values() for e in f.extensions})
        raise EventFormatError(
            f"{path}: unknown event file: extension {suffix or '(none)'} is not one of {known} "
            f"and the content (starts with {head[:12]!r}) has no known magic number"
        )
    return found


def _decode(
    path: Path, fmt: str, source: str, allow_truncated: bool, data: bytes | None = None
) -> DecodedEvents | DecodedRecords:
    """The file's events or records; ``data``: its whole content when read already."""
    if fmt == "aedat4":
        from sdt3_event.events.aedat4 import decode_aedat4

        return decode_aedat4(path, allow_truncated=allow_truncated)
    if fmt == "hdf5":
        return _arrays.decode_hdf5(path, source)
    if fmt == "npz":
        return _arrays.decode_npz(path, source)
    if fmt in ("evt2", "evt3", "dat"):
        return _prophesee.decode_raw(path, fmt, source, allow_truncated, data)
    if data is None:
        data = path.read_bytes()
    if fmt == "aedat3":
        return _aedat.decode_aedat31(data, source, allow_truncated)
    if fmt == "aedat2":
        return _aedat.decode_aedat2(data, source, allow_truncated)

    if fmt == "nmnist":
        return _nmnist.decode_nmnist(data, source, allow_truncated)
    raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")


@contextlib.contextmanager
def _memory_guard(source: str) -> Iterator[None]:
    """Turn a ``MemoryError`` (a size field no check caught, or a file too large to hold) into
    the ``EventFormatError`` every reader promises."""
    try:
        yield
    except MemoryError as exc:
        raise EventFormatError(
            f"{source}: reading it needs more memory than is available; the file is corrupt (a "
            "size field that lies) or too large to read whole: read it with iter_events"
        ) from exc


def _resolve_format(path: Path, format: str | None) -> tuple[str, bytes | None]:
    """The format (``format``, or detected) and, when detection read the whole (small) file,
    its content."""
    if format is None:
        head, whole = _sniff(path)
        return _detect(path, head), (head if whole else None)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {sorted(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"event file not found: {path}")
    return format, None


def _pick_sensor(
    source: str, fmt: str, given: SensorSize | None, in_file: SensorSize | None
) -> SensorSize | None:
    """The caller's sensor size, else the file's, else the format's (EVT 2.0 needs one)."""
    file_sensor = in_file or FORMATS[fmt].sensor_size
    if given is not None and file_sensor is not None and given[:2] != file_sensor[:2]:
        logger.warning(
            "%s: the file says %dx%d but sensor_size=%s was given; using the given size",
            source,
            file_sensor[0],
            file_sensor[1],
            given,
        )
    sensor = given or file_sensor
    if sensor is None and fmt == "evt2":
        raise EventFormatError(
            f"{source}: this EVT 2.0 header states no geometry; pass sensor_size=(W, H, 2) "
            "(e.g. (640, 480, 2) for a Gen3 VGA camera, (320, 320, 2) for GenX320)"
        )
    return sensor


def read_events_with_report(
    path: str | os.PathLike,
    sensor_size: SensorSize | None = None,
    *,
    format: str | None = None,
    drop_out_of_range: bool = False,
    allow_truncated: bool = False,
) -> EventReadReport:
    """Read an event file; like :func:`read_events` but also return the counts.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed ``sensor_size`` or unknown ``format``.
        EventFormatError: see :func:`read_events`.
    """
    path = Path(path)
    source = str(path)
    sensor_size = _check_sensor_size(sensor_size)
    fmt, data = _resolve_format(path, format)
    with _memory_guard(source):
        decoded = _decode(path, fmt, source, allow_truncated, data)
        sensor = _pick_sensor(source, fmt, sensor_size, decoded.sensor_size)
        result = assemble(
            decoded, source=source, sensor_size=sensor, drop_out_of_range=drop_out_of_range
        )
    if decoded.truncated_bytes:
        logger.warning(
            "%s: file is truncated; read the %d complete events and skipped the incomplete "
            "tail (%d bytes)",
            source,
            len(result.events),
            decoded.truncated_bytes,
        )
    return EventReadReport(
        events=result.events,
        sensor_size=sensor,
        format=fmt,
        n_dropped=result.n_dropped,
        n_reordered=result.n_reordered,
        truncated_bytes=decoded.truncated_bytes,
    )


def read_events(
    path: str | os.PathLike,
    sensor_size: SensorSize | None = None,
    *,
    format: str | None = None,
    drop_out_of_range: bool = False,
    allow_truncated: bool = False,
) -> tuple[np.ndarray, SensorSize | None]:
    """Read an event file of any supported format (see :data:`FORMATS`).

    Args:
        path: the file; its format is detected from extension and magic bytes.
        sensor_size: ``(W, H, P)``; overrides the file's own size for validation. Required for
            EVT 2.0 files whose header has no geometry.
        format: skip detection and use this :data:`FORMATS` key.
        drop_out_of_range: drop (and count, in a logged warning) events outside the sensor
            instead of raising.
        allow_truncated: read the complete part of a file whose last record/packet is cut off
            (logged and counted) instead of raising.

    Returns:
        ``(events, sensor_size)``: events sorted by ``t``; the sensor size from the caller, the
        file or the format, else ``None``.

    Shape:
        events: ``[N]`` of ``EVENT_DTYPE``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed ``sensor_size`` or unknown ``format``.
        EventFormatError: wrong magic number, unsupported version, truncated or corrupt content,
            coordinates outside the sensor, timestamps that go backwards (formats that promise
            order), negative or overflowing timestamps; the message names the file.
    """
    report = read_events_with_report(
        path,
        sensor_size,
        format=format,
        drop_out_of_range=drop_out_of_range,
        allow_truncated=allow_truncated,
    )
    return report.events, report.sensor_size


#: Formats decoded block by block in constant memory by :func:`iter_events`; the others (zip /
#: HDF5 containers and the small dataset formats) are read whole, then yielded in chunks.
STREAMING_FORMATS = ("evt2", "evt3", "dat", "aedat4")


class EventChunks:
    """The events of a file as chunks of validated, time-sorted events: see :func:`iter_events`.

    The file's header is read on construction (so ``sensor_size`` and ``format`` are known before
    the first chunk); iterating decodes the file from the start, every time.

    Attributes:
        path: the file.
        format: its :data:`FORMATS` key.
        sensor_size: the caller's sensor size, else the file's (or the format's), else ``None``.
        streaming: ``True`` when the file is decoded block by block in constant memory.
        n_events: the events the file declares (AEDAT 4.0 data table, DAT size; before any
            dropping), or ``None`` when only a full pass can tell (RAW).
        n_dropped: events dropped as outside the sensor so far (``drop_out_of_range=True``).
        truncated_bytes: bytes of an incomplete tail that were left out (``allow_truncated``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        chunk_events: int = 1 << 20,
        sensor_size: SensorSize | None = None,
        *,
        format: str | None = None,
        drop_out_of_range: bool = False,
        allow_truncated: bool = False,
    ) -> None:
        if int(chunk_events) < 1:
            raise ValueError(f"chunk_events must be >= 1, got {chunk_events}")
        self.path = Path(path)
        self.chunk_events = int(chunk_events)
        self.drop_out_of_range = drop_out_of_range
        self.allow_truncated = allow_truncated
        source = str(self.path)
        given = _check_sensor_size(sensor_size)
        self.format = _resolve_format(self.path, format)[0]
        self.streaming = self.format in STREAMING_FORMATS
        self.n_dropped = 0
        self.truncated_bytes = 0
        self.n_events: int | None = None
        self._whole: np.ndarray | None = None
        if self.format == "aedat4":
            from sdt3_event.events.aedat4 import Aedat4File

            with Aedat4File(self.path) as f:
                in_file = f.sensor_size
                self.n_events = f.count_events()
        elif self.streaming:
            with open(self.path, "rb") as f:
                head = f.read((1 << 20) + 2)
            layout = _prophesee.raw_layout(head, self.format, source)
            in_file = layout.sensor_size
            if layout.ordered:  # DAT: one record per event
                self.n_events = (self.path.stat().st_size - layout.start) // layout.word_bytes
        else:
            report = read_events_with_report(
                self.path,
                given,
                format=self.format,
                drop_out_of_range=drop_out_of_range,
                allow_truncated=allow_truncated,
            )
            self._whole = report.events
            self.n_events = len(report.events)
            self.n_dropped, self.truncated_bytes = report.n_dropped, report.truncated_bytes
            in_file = report.sensor_size
        self.sensor_size = _pick_sensor(source, self.format, given, in_file)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._whole is not None:
            for i in range(0, len(self._whole), self.chunk_events):
                yield self._whole[i : i + self.chunk_events]
            return
        with _memory_guard(str(self.path)):
            yield from self._stream()

    def _decoded(self) -> Iterator[tuple[np.ndarray, np.ndarray, int, int, int]]:
        """``(records, stats, first_event, floor, truncated_bytes)`` per decoded block."""
        source = str(self.path)
        if self.format != "aedat4":
            yield from _prophesee.iter_raw(
                self.path, self.format, source, self.chunk_events, self.allow_truncated
            )
            return
        from sdt3_event.events import _kernels
        from sdt3_event.events.aedat4 import Aedat4File

        st, fresh = _kernels.new_state(), _kernels.new_state()
        bounds = slice(_kernels.N_BACK, _kernels.MAX_Y + 1)
        cap = self.chunk_events
        out, n, first = np.empty(cap, EVENT_DTYPE), 0, 0
        with Aedat4File(self.path, allow_truncated=self.allow_truncated) as f:
            for raw in f.raw_packets():
                i = 0
                while i < len(raw):
                    k = min(len(raw) - i, cap - n)
                    n = _kernels.dv16(raw[i : i + k], st, out, n)
                    i += k
                    if n == cap:
                        stats = st.copy()
                        st[bounds] = fresh[bounds]
                        yield out, stats, first, -1, 0
                        out, n, first = np.empty(cap, EVENT_DTYPE), 0, first + cap
            if n or f.truncated_bytes:
                yield out[:n], st.copy(), first, -1, f.truncated_bytes

    def _stream(self) -> Iterator[np.ndarray]:
        source = str(self.path)
        ordered = FORMATS[self.format].ordered
        self.n_dropped = self.truncated_bytes = 0
        prev_t = None
        carry = np.empty(0, EVENT_DTYPE)  # unordered formats: events a later block may precede
        for records, stats, first, floor, truncated in self._decoded():
            got = assemble_records(
                records,
                stats,
                source=source,
                sensor_size=self.sensor_size,
                ordered=ordered,
                drop_out_of_range=self.drop_out_of_range,
                first_event=first,
                prev_t=prev_t,
            )
            events = got.events
            self.n_dropped += got.n_dropped
            if truncated:
                self.truncated_bytes = truncated
                logger.warning(
                    "%s: file is truncated; read the complete part and skipped the incomplete "
                    "tail (%d bytes)",
                    source,
                    truncated,
                )
            if ordered:
                if len(events):
                    prev_t = int(events["t"][-1])
                    yield from self._pieces(events)
                continue
            # Unordered (RAW): a later block holds no event below ``floor`` (the time base in
            # force), so everything below it is final; the rest (``carry``) waits for the next
            # block. Only the next block's events stamped at or before the carry's last one merge
            # with it (a stable sort of a few events); nothing large is ever copied.
            if len(carry) and len(events):
                j = first_at(events["t"], int(carry["t"][-1]) + 1)
                if j:
                    head = concat([carry, events[:j]])
                    carry = take(head, np.argsort(head["t"], kind="stable"))
                    events = events[j:]
            # carry, then events: sorted; what lies below the new floor is final
            k = len(carry) if floor < 0 else first_at(carry["t"], floor)
            yield from self._pieces(carry[:k])
            if k < len(carry):  # the time base did not advance past the carry (tiny blocks)
                carry = concat([carry[k:], events])
                continue
            cut = len(events) if floor < 0 else first_at(events["t"], floor)
            carry = events[cut:]
            yield from self._pieces(events[:cut])
        yield from self._pieces(carry)

    def _pieces(self, events: np.ndarray) -> Iterator[np.ndarray]:
        for i in range(0, len(events), self.chunk_events):
            yield events[i : i + self.chunk_events]


def iter_events(
    path: str | os.PathLike,
    chunk_events: int = 1 << 20,
    sensor_size: SensorSize | None = None,
    **options,
) -> EventChunks:
    """Read an event file chunk by chunk: constant memory for files larger than RAM.

    EVT 2.0, EVT 3.0, DAT and AEDAT 4.0 files (:data:`STREAMING_FORMATS`) are decoded block by
    block by the same compiled kernels as :func:`read_events`; the other formats are read whole
    and then yielded in chunks. Every chunk is validated (schema, sensor, time order) before it
    is yielded, so a chunk is never half-decoded; an error raises at the chunk where it lies.
    Concatenated, the chunks equal ``read_events(path, ...)``'s events.

    >>> chunks = iter_events("big.raw", chunk_events=1 << 20, sensor_size=(640, 480, 2))  # doctest: +SKIP
    >>> for events in chunks:  # doctest: +SKIP
    ...     handle(events)

    Args:
        path: the file.
        chunk_events: the most events per chunk (RAW chunks may be shorter: events of the
            time base still open wait for the next block, where earlier-stamped ones may follow).
        sensor_size: ``(W, H, P)``, as for :func:`read_events`.
        **options: ``format``, ``drop_out_of_range`` (dropped events are counted in
            ``n_dropped``) and ``allow_truncated``, as for :func:`read_events`.

    Returns:
        An :class:`EventChunks`: iterate it for ``[n]`` ``EVENT_DTYPE`` chunks; its
        ``sensor_size`` and ``format`` are known at once.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed ``sensor_size``, unknown ``format`` or ``chunk_events < 1``.
        EventFormatError: as :func:`read_events`, on construction (header) or while iterating.
    """
    return EventChunks(path, chunk_events, sensor_size, **options)


def write_events(
    path: str | os.PathLike,
    events: np.ndarray,
    sensor_size: SensorSize | None = None,
    *,
    format: str | None = None,
) -> Path:
    """Write events in one of the writable :data:`FORMATS` (atomically: temp file + rename).

    Args:
        path: destination; the format follows from the extension unless ``format`` is given
            (``.aedat`` -> AEDAT 3.1, ``.raw`` -> EVT 2.0).
        events: ``EVENT_DTYPE`` events ``[N]``, sorted by ``t``.
        sensor_size: stored where the format can hold it.
        format: a writable :data:`FORMATS` key.

    Returns:
        The written path.

    Raises:
        ValueError: an unknown or non-writable format.
        EventFormatError: events the format cannot represent (e.g. coordinates too large).
    """
    from sdt3_event.events.schema import validate_events

    path = Path(path)
    sensor_size = _check_sensor_size(sensor_size)
    events, _ = validate_events(events, sensor_size, source="events to write")
    if format is None:
        by_suffix = {".aedat": "aedat3", ".aedat4": "aedat4", ".raw": "evt2"}
        format = by_suffix.get(path.suffix.lower())
        if format is None:
            matches = [
                f.name
                for f in FORMATS.values()
                if f.writable and path.suffix.lower() in f.extensions
            ]
            if not matches:
                raise ValueError(f"{path}: cannot infer a writable format from {path.suffix!r}")
            format = matches[0]
    if format not in FORMATS or not FORMATS[format].writable:
        writable = sorted(f.name for f in FORMATS.values() if f.writable)
        raise ValueError(f"cannot write format {format!r}; writable: {writable}")

    fd, tmp = temp_beside(path, prefix=path.name + ".")
    os.close(fd)
    try:
        if format == "hdf5":
            _arrays.encode_hdf5(tmp, events, sensor_size)
        elif format == "aedat4":
            from sdt3_event.events.aedat4 import write_aedat4

            if sensor_size is None:
                raise ValueError("writing AEDAT 4.0 needs sensor_size=(W, H, P)")
            write_aedat4(tmp, events, sensor_size)
        else:
            encoders = {
                "aedat3": lambda: _aedat.encode_aedat31(events),
                "aedat2": lambda: _aedat.encode_aedat2(events),
                "evt2": lambda: _prophesee.encode_evt2(events, sensor_size),
                "evt3": lambda: _prophesee.encode_evt3(events, sensor_size),
                "dat": lambda: _prophesee.encode_dat(events, sensor_size),
                "npz": lambda: _arrays.encode_npz(events, sensor_size),
                "nmnist": lambda: _nmnist.encode_nmnist(events),
            }
            tmp.write_bytes(encoders[format]())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
