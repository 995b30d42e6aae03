"""Tonic-style event data sets, installed as ``sdt3_event.datasets``.

- :mod:`.synthetic`: ``SyntheticGestures`` (procedural, no download) and the live gesture stream.
- :mod:`.cifar10dvs`: ``CIFAR10DVS`` with a seeded stratified split.
- :mod:`.dvsgesture`: ``DVSGesture`` with users and lighting as metadata.
- :mod:`.hardvs`: ``HARDVS`` (``.npz`` events) and ``HARDVSFrames`` (SDT-V3's PNG rawframes).
- :mod:`.nmnist`: ``NMNIST`` in the official ``Train/`` / ``Test/`` layout, with a validation split.
- :mod:`.folder`: ``EventFolder`` for your own recordings (one folder per class).
- :mod:`.download`: URLs, checksums, download / verify / extract.

The HDF5 frame cache and the DataLoader factory live in :mod:`sdt3_event.events.cache` and
:mod:`sdt3_event.events.loader`.

Names are imported lazily so ``import sdt3_event.datasets`` stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SYNTHETIC_CLASSES": "synthetic",
    "SyntheticGestures": "synthetic",
    "generate_gesture": "synthetic",
    "gesture_stream": "synthetic",
    "CIFAR10DVS": "cifar10dvs",
    "DVSGesture": "dvsgesture",
    "DVSGestureRaw": "dvsgesture",
    "HARDVS": "hardvs",
    "HARDVSFrames": "hardvs",
    "EventFolder": "folder",
    "NMNIST": "nmnist",
}

__all__ = sorted(_EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
