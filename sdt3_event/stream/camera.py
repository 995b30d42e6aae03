"""``camera:`` / ``camera:SERIAL``: a live iniVation camera (DAVIS, DVXplorer, DVS128) via dv-processing.

dv-processing is an optional dependency (``pip install 'sdt3-event[camera]'``), imported only when a
camera source is opened. Opening fails with a message that says what to do when the package or the
camera is missing.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator

import numpy as np

from sdt3_event.events.schema import EVENT_DTYPE
from sdt3_event.stream.base import BaseEventSource

log = logging.getLogger(__name__)

_NO_CAMERA_HINT = (
    "plug one in and check its USB permissions (iniVation's udev rules), or use another source: "
    "synthetic:, webcam:0, or tcp://HOST:PORT (e.g. a DV instance's network output)"
)


class CameraNotFoundError(ConnectionError):
    """No iniVation camera (or not the requested one) is connected."""


def import_dv():
    """Import dv-processing, or raise an ImportError that names the extra to install."""
    try:
        return importlib.import_module("dv_processing")
    except ImportError as exc:
        raise ImportError(
            "camera: sources need dv-processing; install it with: pip install 'sdt3-event[camera]'"
        ) from exc


def store_to_events(array: np.ndarray) -> np.ndarray:
    """dv-processing's ``EventStore.numpy()`` (timestamp, x, y, polarity) -> ``EVENT_DTYPE``.

    Shape:
        ``[N]`` -> ``[N]``.
    """
    out = np.empty(len(array), dtype=EVENT_DTYPE)
    out["t"], out["x"], out["y"] = array["timestamp"], array["x"], array["y"]
    out["p"] = array["polarity"] != 0
    return out


def list_cameras() -> list[str]:
    """Serial numbers of the iniVation cameras dv-processing can see (needs dv-processing)."""
    dv = import_dv()
    return [str(getattr(d, "serialNumber", d)) for d in dv.io.camera.discover()]


class CameraSource(BaseEventSource):
    """Events from a live iniVation camera.

    Args:
        serial: the camera's serial number; ``None`` opens the first camera found.
        uri: the URI to report (default ``camera:`` / ``camera:SERIAL``).
        poll_s: how long to wait when the camera has no new events.

    Raises:
        ImportError: dv-processing is not installed (the message names the extra).
        CameraNotFoundError: no camera, or none with that serial number (the message lists the
            cameras found and the alternatives).
    """

    def __init__(self, serial: str | None = None, *, uri: str | None = None, poll_s: float = 0.001):
        super().__init__(uri or f"camera:{serial or ''}")
        self.serial = str(serial) if serial else None
        self.poll_s = float(poll_s)
        dv = import_dv()
        found = dv.io.camera.discover()
        serials = [str(getattr(d, "serialNumber", "")) for d in found]
        if not found:
            raise CameraNotFoundError(f"{self.uri}: no iniVation camera found; {_NO_CAMERA_HINT}")
        if self.serial is not None and self.serial not in serials:
            raise CameraNotFoundError(
                f"{self.uri}: no camera with serial {self.serial!r}; found {serials}. "
                f"Use camera:{serials[0]} or camera: for the first one"
            )
        try:
            self._camera = dv.io.camera.open(self.serial) if self.serial else dv.io.camera.open()
        except RuntimeError as exc:
            raise CameraNotFoundError(
                f"{self.uri}: the camera was found but could not be opened ({exc}); is another "
                "program (DV, another sdt3-event) using it?"
            ) from exc
        if not self._camera.isEventStreamAvailable():
            raise CameraNotFoundError(f"{self.uri}: {self._camera.getCameraName()} sends no events")
        w, h = (int(v) for v in self._camera.getEventResolution())
        self._sensor_size = (w, h, 2)
        self.camera_name = str(self._camera.getCameraName())
        log.info("%s: opened %s (%dx%d)", self.uri, self.camera_name, w, h)

    def _chunks(self) -> Iterator[np.ndarray]:
        w, h, _ = self._sensor_size
        self._set_status("connected", f"{self.camera_name} {w}x{h}")
        while not self.closed:
            if not self._camera.isRunning():
                raise ConnectionError(
                    f"{self.uri}: {self.camera_name} stopped sending (unplugged?); reconnect it "
                    "and start the source again"
                )
            batch = self._camera.getNextEventBatch()
            if batch is None or len(batch) == 0:
                if not self._sleep(self.poll_s):
                    return
                continue
            yield store_to_events(batch.numpy())
