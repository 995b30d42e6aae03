"""DVS128 Gesture on Tonic's class, with users and lighting kept as per-sample metadata."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tonic
from sdt3_event.datasets._common import EventDataset, SplitDataset, require_folder
from tonic.dataset import Dataset as TonicDataset

from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, validate_events

_FOLDER_RE = re.compile(r"^user(\d+)_(.+)$")


class DVSGesture(EventDataset, tonic.datasets.DVSGesture):
    """IBM DVS128 Gesture (Amir et al., 2017): 11 classes, 29 users, 5 lighting conditions.

    Built on ``tonic.datasets.DVSGesture`` (its URLs, checksums, class names, sensor size and the
    preprocessed layout: one ``.npy`` per gesture, columns ``x, y, p, t`` with ``t`` in ms). Events
    come back as ``EVENT_DTYPE`` with ``t`` in µs. Nothing is downloaded unless asked.

    On-disk layout::

        <save_to>/DVSGesture/ibmGestureTrain/user01_fluorescent/<label>.npy
        <save_to>/DVSGesture/ibmGestureTest/user24_led/<label>.npy

    ``split="train"`` / ``"test"`` is an alternative to ``train=`` (the engine passes ``split``).

    Attributes:
        users: the user number of every sample.
        lighting: the lighting condition of every sample (``"fluorescent"``, ``"led"``, ...).

    Raises:
        FileNotFoundError: the split folder is missing (and ``download`` is False).
        ValueError: an empty split, a folder not named ``userNN_<lighting>``, or a file not
            named ``<label>.npy`` with a label in ``0..10``.
    """

    def __init__(
        self,
        save_to: str | os.PathLike,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        transforms: Callable | None = None,
        download: bool = False,
        split: str | None = None,
    ) -> None:
        if split is not None:
            if split not in ("train", "test"):
                raise ValueError(f"DVS Gesture has splits 'train' and 'test', got {split!r}")
            train = split == "train"
        TonicDataset.__init__(self, str(save_to), transform, target_transform, transforms)
        self.train = train
        self.folder_name = "ibmGestureTrain" if train else "ibmGestureTest"
        self.filename = self.train_filename if train else self.test_filename
        self.url = self.train_url if train else self.test_url
        self.file_md5 = self.train_md5 if train else self.test_md5
        folder = Path(self.location_on_system) / self.folder_name
        require_folder(folder, "dvsgesture", "DVS Gesture", save_to, download)
        self.users: list[int] = []
        self.lighting: list[str] = []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            m = _FOLDER_RE.match(sub.name)
            if m is None:
                raise ValueError(f"{sub}: expected a folder named userNN_<lighting>")
            for f in sorted(sub.glob("*.npy"), key=lambda p: (len(p.stem), p.stem)):
                if not f.stem.isdigit() or not 0 <= int(f.stem) < len(self.classes):
                    raise ValueError(
                        f"{f}: expected <label>.npy with a label in 0..{len(self.classes) - 1}"
                    )
                self.data.append(str(f))
                self.targets.append(int(f.stem))
                self.users.append(int(m.group(1)))
                self.lighting.append(m.group(2))
        if not self.data:
            raise ValueError(f"{folder}: no userNN_<lighting>/<label>.npy files found")

    def metadata(self, index: int) -> dict:
        """User, lighting, label and file of sample ``index``."""
        return {
            "user": self.users[index],
            "lighting": self.lighting[index],
            "label": self.targets[index],
            "path": self.data[index],
        }

    def read(self, index: int) -> np.ndarray:
        """The events of sample ``index`` as ``EVENT_DTYPE`` (``t`` in µs).

        Raises:
            EventFormatError: not an ``(N, 4)`` numeric array, or invalid events; names the file.
        """
        path = self.data[index]
        try:
            raw = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise EventFormatError(f"{path}: not a readable .npy file ({exc})") from exc
        if raw.ndim != 2 or raw.shape[1] != 4 or raw.dtype.kind not in "iuf":
            raise EventFormatError(
                f"{path}: expected an (N, 4) numeric array x, y, p, t(ms); got {raw.shape} {raw.dtype}"
            )
        ev = np.empty(len(raw), EVENT_DTYPE)
        ev["x"], ev["y"], ev["p"] = raw[:, 0], raw[:, 1], raw[:, 2] > 0
        ev["t"] = np.rint(raw[:, 3].astype(np.float64) * 1000).astype(np.int64)
        order = np.argsort(ev["t"], kind="stable")
        ev = ev[order]
        ev, _ = validate_events(ev, self.sensor_size, source=path)
        return ev

    def load(self, index: int) -> np.ndarray:
        return self.read(index)

    DESCRIBE = ("train", "n")

    def describe(self) -> dict:
        return {
            **super().describe(),
            "users": sorted(set(self.users)),
            "root": self.location_on_system,
        }


class DVSGestureRaw(SplitDataset):
    """The original IBM DVS128 Gesture release: AEDAT 3.1 recordings cut by their label files.

    Each ``userNN_<lighting>.aedat`` recording holds a user's gestures back to back; its
    ``userNN_<lighting>_labels.csv`` (``class,startTime_usec,endTime_usec``, classes 1-based) gives
    the time window of every gesture, and ``trials_to_train.txt`` / ``trials_to_test.txt`` list the
    recordings of each split. One sample is the events of one labelled window (``t`` in µs as
    recorded). The decoded recording is kept per process, so reading samples in order decodes each
    file once.

    On-disk layout (what ``DvsGesture.tar.gz`` unpacks to)::

        <root>/DvsGesture/trials_to_train.txt
        <root>/DvsGesture/user01_fluorescent.aedat
        <root>/DvsGesture/user01_fluorescent_labels.csv

    Args:
        root: the data root.
        split: ``"train"`` or ``"test"``.
        transform: applied to the events.
        target_transform: applied to the label (``0..10``).

    Raises:
        FileNotFoundError: the trials list, a listed recording or its label file is missing.
        ValueError: a malformed label file (names file and line).
    """

    sensor_size = (128, 128, 2)
    classes = list(tonic.datasets.DVSGesture.classes)

    def scan(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"DVS Gesture has splits 'train' and 'test', got {self.split!r}")
        self.folder = self.root / "DvsGesture"
        trials = self.folder / f"trials_to_{self.split}.txt"
        if not trials.is_file():
            raise FileNotFoundError(
                f"{trials} not found; extract DvsGesture.tar.gz (IBM) into {self.root}"
            )
        self.samples: list[tuple[str, int, int]] = []  # (recording, start_us, end_us)
        self.targets: list[int] = []
        self.users: list[int] = []
        self.lighting: list[str] = []
        for name in trials.read_text().split():
            rec = self.folder / name
            labels = rec.with_name(rec.stem + "_labels.csv")
            for p in (rec, labels):
                if not p.is_file():
                    raise FileNotFoundError(f"{p} (listed in {trials}) does not exist")
            m = _FOLDER_RE.match(rec.stem)
            if m is None:
                raise ValueError(f"{rec}: expected a recording named userNN_<lighting>.aedat")
            for label, start, end in parse_gesture_labels(labels):
                self.samples.append((str(rec), start, end))
                self.targets.append(label)
                self.users.append(int(m.group(1)))
                self.lighting.append(m.group(2))
        self._recording: tuple[str, np.ndarray] | None = None

    def _events_of(self, path: str) -> np.ndarray:
        if self._recording is None or self._recording[0] != path:
            from sdt3_event.events.io import read_events

            events, _ = read_events(path, self.sensor_size)
            self._recording = (path, events)
        return self._recording[1]

    def load(self, index: int) -> np.ndarray:
        path, start, end = self.samples[index]
        events = self._events_of(path)
        lo, hi = np.searchsorted(events["t"], [start, end])
        return events[lo:hi].copy()

    def metadata(self, index: int) -> dict:
        path, start, end = self.samples[index]
        return {
            "user": self.users[index],
            "lighting": self.lighting[index],
            "label": self.targets[index],
            "path": path,
            "start_us": start,
            "end_us": end,
        }

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_recording"] = None  # never ship a decoded recording to workers
        return state

    DESCRIBE = ("split", "n")

    def describe(self) -> dict:
        return {**super().describe(), "folder": str(self.folder)}


def parse_gesture_labels(path: str | os.PathLike) -> list[tuple[int, int, int]]:
    """``(label 0..10, start_us, end_us)`` rows of a DVS Gesture ``*_labels.csv`` file.

    Raises:
        ValueError: a missing header, a malformed row, a class outside 1..11 or an empty window.
    """
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or not lines[0].lower().startswith("class"):
        raise ValueError(f"{path}: expected the header 'class,startTime_usec,endTime_usec'")
    rows = []
    for lineno, line in enumerate(lines[1:], 2):
        try:
            cls, start, end = (int(v) for v in line.split(","))
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: malformed row {line!r}") from exc
        if not 1 <= cls <= 11 or end <= start:
            raise ValueError(f"{path}:{lineno}: class {cls} or window [{start}, {end}) invalid")
        rows.append((cls - 1, start, end))
    return rows
