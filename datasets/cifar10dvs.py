"""CIFAR10-DVS on Tonic's class, with the deterministic stratified train/test split it lacks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tonic
from sdt3_event.datasets._common import EventDataset, require_folder
from tonic.dataset import Dataset as TonicDataset

_SUFFIXES = (".aedat4", ".aedat")
_SPLITS = ("train", "test", "all")


def stratified_split(
    targets: list[int] | np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified train/test split.

    Every class contributes ``round(n_class * test_fraction)`` samples to the test split, picked by
    a generator seeded with ``(seed, class)``; the result depends only on the sorted sample list,
    the seed and the fraction (never on file-system order or on other classes).

    Returns:
        ``(train_indices, test_indices)``, each sorted.

    Raises:
        ValueError: ``test_fraction`` outside ``(0, 1)``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    targets = np.asarray(targets)
    train, test = [], []
    for cls in np.unique(targets):
        idx = np.flatnonzero(targets == cls)
        perm = np.random.default_rng([int(seed), int(cls)]).permutation(idx)
        n_test = int(round(len(idx) * test_fraction))
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class CIFAR10DVS(EventDataset, tonic.datasets.CIFAR10DVS):
    """CIFAR10-DVS (Li et al., 2017): 10 classes x 1000 recordings, DVS128, 128x128.

    Built on ``tonic.datasets.CIFAR10DVS`` (its URL, checksum, class names and sensor size) but
    reads the events with :func:`sdt3_event.events.io.read_events` (``EVENT_DTYPE``), never
    downloads unless asked, and adds a seeded stratified split.

    On-disk layout (what Tonic's archive unpacks to; the original AEDAT 2.0 ``.aedat`` files in
    the same layout work too)::

        <save_to>/CIFAR10DVS/<class>/*.aedat4

    Args:
        save_to: the data root.
        split: ``"train"``, ``"test"`` or ``"all"``.
        test_fraction: share of every class in the test split.
        seed: split seed.
        transform: applied to the events.
        target_transform: applied to the label.
        transforms: applied to ``(events, target)``.
        download: fetch and extract the archive when the folder is missing.

    Raises:
        FileNotFoundError: the folder is missing (and ``download`` is False).
        ValueError: a class folder without recordings, an unknown folder, or a bad split.
    """

    def __init__(
        self,
        save_to: str | os.PathLike,
        split: str = "train",
        test_fraction: float = 0.1,
        seed: int = 0,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        transforms: Callable | None = None,
        download: bool = False,
    ) -> None:
        TonicDataset.__init__(self, str(save_to), transform, target_transform, transforms)
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        self.split = split
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        folder = Path(self.location_on_system)
        require_folder(folder, "cifar10dvs", "CIFAR10-DVS", save_to, download)
        files, targets = [], []
        for name, label in sorted(self.classes.items(), key=lambda kv: kv[1]):
            class_dir = folder / name
            found = sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in _SUFFIXES)
            if not class_dir.is_dir() or not found:
                raise ValueError(
                    f"{class_dir}: no .aedat4/.aedat recordings for class {name!r}; the data set "
                    "is incomplete (re-extract it with `sdt3-event data download cifar10dvs`)"
                )
            files += found
            targets += [label] * len(found)
        extra = sorted(
            p.name for p in folder.iterdir() if p.is_dir() and p.name not in self.classes
        )
        if extra:
            raise ValueError(
                f"{folder}: unknown class folders {extra}; expected {list(self.classes)}"
            )
        if split == "all":
            keep = np.arange(len(files))
        else:
            train, test = stratified_split(targets, self.test_fraction, self.seed)
            keep = train if split == "train" else test
        self.data = [str(files[i]) for i in keep]
        self.targets = [targets[i] for i in keep]

    @property
    def class_names(self) -> list[str]:
        return [n for n, _ in sorted(self.classes.items(), key=lambda kv: kv[1])]

    def load(self, index: int) -> np.ndarray:
        from sdt3_event.events.io import read_events

        return read_events(self.data[index], self.sensor_size)[0]

    DESCRIBE = ("split", "n", "test_fraction", "seed")

    def describe(self) -> dict:
        return {**super().describe(), "root": self.location_on_system}
