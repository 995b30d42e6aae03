"""EventFolder: the user's own recordings, one folder per class, any supported file format."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from sdt3_event.datasets._common import EventDataset, apply_transforms

from sdt3_event.events.schema import SensorSize


def supported_suffixes() -> tuple[str, ...]:
    """File name suffixes :func:`sdt3_event.events.io.read_events` can read."""
    from sdt3_event.events.io import FORMATS

    return tuple(sorted({ext for f in FORMATS.values() for ext in f.extensions}))


class EventFolder(EventDataset):
    """A Tonic-style data set over ``root/<class>/<recording>`` files.

    Classes are the sub-folder names in sorted order (or ``classes`` in the given order); every
    file whose suffix a reader supports (``.aedat4``, ``.aedat``, ``.raw``, ``.dat``, ``.npz``,
    ``.h5``, ...) is one sample. ``dataset[i]`` returns ``(events, label)``.

    Args:
        root: the folder holding one sub-folder per class.
        sensor_size: ``(W, H, P)`` for every file, needed for formats whose files do not state it
            (EVT 2.0). Without it each file is read with its own size, and
            ``self.sensor_size`` is the first file's (the size the data contract is built for).
        classes: the class folders to use, in label order (default: all, sorted).
        suffixes: file suffixes to include (default: every supported one).
        transform: applied to the events.
        target_transform: applied to the label.
        drop_out_of_range: drop (and count) events outside ``sensor_size`` instead of raising.
        split: ``None``/``"all"`` (everything), or ``"train"``/``"val"``/``"test"``: the folder
            ``root/<split>/<class>/`` when it exists, else a seeded stratified split of ``root``.
        test_fraction: share of each class held out for ``"val"``/``"test"``.
        seed: split seed.

    A recording from another sensor than ``self.sensor_size`` is mapped onto the model input by
    the transform's data contract (a :func:`~sdt3_event.events.transforms.build_frame_transform`
    transform, whose spatial mode maps it); with any other transform, or none, it is refused with
    the file's name.

    Raises:
        FileNotFoundError: ``root`` or a requested class folder is missing.
        ValueError: no class folders, or a class folder with no readable files (named); from
            ``dataset[i]``, a recording of another sensor that no data contract maps.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        sensor_size: SensorSize | None = None,
        classes: Sequence[str] | None = None,
        suffixes: Sequence[str] | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        drop_out_of_range: bool = False,
        split: str | None = None,
        test_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a folder; expected root/<class>/<files>")
        self.split = split
        split_dir = self.root / split if split not in (None, "all") else None
        if split_dir is not None and split_dir.is_dir():
            self.root = split_dir  # root/<split>/<class>/<files>
            split_dir = None
        elif split not in (None, "all", "train", "val", "test"):
            raise ValueError(f"split must be None, 'all', 'train', 'val' or 'test', got {split!r}")
        self.sensor_size = tuple(int(v) for v in sensor_size) if sensor_size else None
        self._sensor_given = self.sensor_size is not None
        self.suffixes = tuple(s.lower() for s in (suffixes or supported_suffixes()))
        if classes is None:
            classes = sorted(
                p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
        if not classes:
            raise ValueError(f"{self.root}: no class folders found; expected root/<class>/<files>")
        self.classes = list(classes)
        self.transform = transform
        self.target_transform = target_transform
        self.drop_out_of_range = drop_out_of_range
        self.data: list[str] = []
        self.targets: list[int] = []
        for label, name in enumerate(self.classes):
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder {folder} does not exist")
            files = sorted(
                p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in self.suffixes
            )
            if not files:
                raise ValueError(
                    f"class folder {folder} holds no recordings with suffixes {self.suffixes}; "
                    "add recordings or remove the folder"
                )
            self.data += [str(p) for p in files]
            self.targets += [label] * len(files)
        if split_dir is not None:
            # No root/<split> folder: a seeded stratified split ("val" and "test" are the same).
            from sdt3_event.datasets.cifar10dvs import stratified_split

            train_idx, test_idx = stratified_split(self.targets, test_fraction, seed)
            keep = train_idx if split == "train" else test_idx
            self.data = [self.data[i] for i in keep]
            self.targets = [self.targets[i] for i in keep]
        if self.sensor_size is None and self.data:
            # The sensor size of the first recording that states one (the engine needs it).
            self.sensor_size = self.read(0)[1]

    def read(self, index: int):
        """``(events, sensor_size)`` of sample ``index``, untransformed: the file's own sensor
        size unless ``sensor_size`` was given."""
        from sdt3_event.events.io import read_events

        events, size = read_events(
            self.data[index],
            self.sensor_size if self._sensor_given else None,
            drop_out_of_range=self.drop_out_of_range,
        )
        return events, size or self.sensor_size

    def load(self, index: int):
        return self.read(index)[0]

    def __getitem__(self, index: int):
        events, size = self.read(index)
        target = self.targets[index]
        if self.sensor_size is None or size is None or size[:2] == self.sensor_size[:2]:
            return apply_transforms(self, events, target)
        contract = getattr(self.transform, "contract", None)
        if contract is None or not dataclasses.is_dataclass(self.transform):
            raise ValueError(
                f"{self.data[index]} is from a {size[0]}x{size[1]} sensor, the folder's first "
                f"recording from a {self.sensor_size[0]}x{self.sensor_size[1]} one; pass a "
                "transform from build_frame_transform(contract), whose spatial mode maps every "
                "sensor onto the model input, or keep one sensor per folder"
            )
        mapped = dataclasses.replace(self.transform, contract=contract.with_sensor(size))
        sample = mapped(events, rng=self.rng)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target

    def describe(self) -> dict:
        return {
            "root": str(self.root),
            "classes": self.classes,
            "n": len(self),
            "split": self.split,
            "sensor_size": self.sensor_size,
        }
