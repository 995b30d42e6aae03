"""Events: the schema, readers and writers of every supported format, and event -> frame binning.

The public names are importable from here::

    from sdt3_event.events import read_events, iter_events, write_events, to_frames, EventFormatError

- :mod:`.schema`: ``EVENT_DTYPE`` ``(t int64 µs, x int16, y int16, p bool)``, ``EventFormatError``,
  ``validate_events``.
- :mod:`.io`: ``read_events`` / ``iter_events`` (chunk by chunk, constant memory) /
  ``write_events`` / ``detect_format`` for every format.
- :mod:`.frames`: ``to_frames`` (Tonic's ``ToFrame``) and ``to_window_frames``.
- :mod:`.transforms`: Tonic-style frozen event transforms and ``build_frame_transform``, the one
  events -> ``(T, P, H, W)`` transform of training, evaluation and live inference.
- :mod:`.contract`: the ``DataContract`` a checkpoint stores.

Names load lazily, so ``import sdt3_event.events.schema`` stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # schema
    "EVENT_DTYPE": "schema",
    "EventFormatError": "schema",
    "SensorSize": "schema",
    "validate_events": "schema",
    # readers / writers
    "read_events": "io",
    "iter_events": "io",
    "EventChunks": "io",
    "read_events_with_report": "io",
    "write_events": "io",
    "detect_format": "io",
    "FORMATS": "io",
    # frames
    "to_frames": "frames",
    "to_window_frames": "frames",
    # the data contract and the one frame transform
    "DataContract": "contract",
    "build_frame_transform": "transforms",
    "FrameTransform": "transforms",
    # event transforms
    "SpatialResize": "transforms",
    "Letterbox": "transforms",
    "CropOrPad": "transforms",
    "CenterCrop": "transforms",
    "RandomCrop": "transforms",
    "RandomTranslate": "transforms",
    "RandomFlipLR": "transforms",
    "RandomFlipPolarity": "transforms",
    "DropByTime": "transforms",
    "DropByArea": "transforms",
    "DropRandom": "transforms",
    "EventDrop": "transforms",
    "RandomTimeCrop": "transforms",
    "TimeJitter": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
