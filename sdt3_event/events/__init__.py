"""Events: the schema, readers and writers of every supported file format, and representations.

>>> from sdt3_event.events import read_events, iter_events  # doctest: +SKIP
"""

from sdt3_event.events.io import (
    FORMATS,
    EventChunks,
    detect_format,
    iter_events,
    read_events,
    read_events_with_report,
    write_events,
)
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, SensorSize, validate_events

__all__ = [
    "EVENT_DTYPE",
    "FORMATS",
    "EventChunks",
    "EventFormatError",
    "SensorSize",
    "detect_format",
    "iter_events",
    "read_events",
    "read_events_with_report",
    "validate_events",
    "write_events",
]
