"""N-MNIST / N-Caltech101 ``.bin`` reader (the ATIS 5-byte format), vectorised.

Format facts (Orchard et al.'s N-MNIST release notes; the same decoding as Tonic's
``tonic.io.read_mnist_file``): 40-bit big-endian records, byte 0 = x, byte 1 = y, bit 7 of byte 2
= polarity, the remaining 23 bits = timestamp (µs). A record with ``y == 240`` is a timestamp
overflow marker: every later timestamp gains ``2**13``; markers are not events. No header, no
magic number: the length must be a multiple of 5. N-MNIST's sensor crop is 34x34.
"""

from __future__ import annotations

import numpy as np

from sdt3_event.events._assemble import DecodedEvents, check_truncation
from sdt3_event.events.schema import EventFormatError, SensorSize

NMNIST_SENSOR: SensorSize = (34, 34, 2)
_OVERFLOW_Y = 240
_OVERFLOW_STEP = 1 << 13


def decode_nmnist(data: bytes, source: str, allow_truncated: bool) -> DecodedEvents:
    """Decode an N-MNIST ``.bin`` file.

    Shape:
        file bytes ``[5 N]`` -> columns ``[N - n_overflow_markers]``.

    Raises:
        EventFormatError: a length that is not a multiple of 5 (unless ``allow_truncated``).
    """
    n_extra = len(data) % 5
    truncated = check_truncation(n_extra, source, "5-byte record", allow_truncated)
    raw = np.frombuffer(data, np.uint8, count=len(data) - n_extra).reshape(-1, 5)  # [N, 5]
    is_overflow = raw[:, 1] == _OVERFLOW_Y
    ts = (
        (raw[:, 2].astype(np.int64) & 0x7F) << 16
        | raw[:, 3].astype(np.int64) << 8
        | raw[:, 4].astype(np.int64)
    )
    if is_overflow.any():
        ts += np.cumsum(is_overflow) * _OVERFLOW_STEP
        keep = ~is_overflow
        raw, ts = raw[keep], ts[keep]
    return DecodedEvents(
        t=ts,
        x=raw[:, 0],
        y=raw[:, 1],
        p=(raw[:, 2] >> 7).astype(bool),
        sensor_size=NMNIST_SENSOR,
        ordered=True,
        truncated_bytes=truncated,
    )


def encode_nmnist(events: np.ndarray) -> bytes:
    """Write events in the N-MNIST 5-byte format (no overflow markers).

    Raises:
        EventFormatError: coordinates beyond a byte (or y == 240) or timestamps beyond 23 bits.
    """
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    if len(events):
        if min(x.min(), y.min()) < 0 or x.max() > 255 or y.max() >= _OVERFLOW_Y:
            raise EventFormatError("N-MNIST .bin holds x in 0..255 and y in 0..239 only")
        if t.min() < 0 or t.max() >= (1 << 23):
            raise EventFormatError("N-MNIST .bin holds timestamps below 2**23 us only")
    rec = np.empty((len(events), 5), np.uint8)  # [N, 5]
    rec[:, 0] = x
    rec[:, 1] = y
    rec[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    rec[:, 3] = (t >> 8) & 0xFF
    rec[:, 4] = t & 0xFF
    return rec.tobytes()
