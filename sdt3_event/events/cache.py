"""HDF5 cache of deterministic preprocessing (events -> frames), keyed by the transform.

:class:`CachedDataset` wraps a data set that returns ``(events, target)`` and a deterministic
transform (typically ``build_frame_transform(contract, train=False)``). The first access of sample
``i`` runs the transform and stores the result in ``<cache_dir>/<key>/<i>.h5``; later accesses read
it back. The key is a SHA-256 of a description that includes ``repr(transform)`` (frozen
dataclasses, so every parameter and the data contract appear in it), the data set's class, its
``repr`` and its length, so a changed transform or data set never reads stale frames. The full
description is stored beside the samples and compared on open.

Writes are atomic (temporary file + ``os.replace``), so DataLoader workers can fill the cache
concurrently and an interrupted run never leaves a half-written sample. Random augmentations belong
after the cache (``augment=``), never inside the cached transform.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_DESCRIPTION_FILE = "description.txt"


def describe(dataset, transform: Callable) -> str:
    """The text the cache key is hashed from: transform and data set identity."""
    ds_type = type(dataset)
    return "\n".join(
        [
            "sdt3-event frame cache v1",
            f"transform: {transform!r}",
            f"dataset: {ds_type.__module__}.{ds_type.__qualname__}",
            f"dataset_repr: {dataset!r}",
            f"len: {len(dataset)}",
        ]
    )


def cache_key(dataset, transform: Callable) -> str:
    """A short hex key identifying ``(dataset, transform)``."""
    return hashlib.sha256(describe(dataset, transform).encode()).hexdigest()[:20]


class CachedDataset:
    """A data set whose transformed samples are cached in HDF5 files.

    Args:
        dataset: returns ``(events, target)`` (its own ``transform`` should be ``None``).
        transform: deterministic ``events -> frames`` (numpy array or torch tensor).
        cache_dir: root folder of the caches; each ``(dataset, transform)`` pair gets a sub-folder.
        augment: random transform applied to the cached frames on every access.
        target_transform: applied to the target.
        compression: h5py compression filter for the frames (``"lzf"``, ``"gzip"`` or ``None``).

    Raises:
        ValueError: ``transform`` is a training (random) frame transform.
        RuntimeError: the cache folder holds a different description (a hash collision or a
            hand-edited cache); delete the folder.
    """

    def __init__(
        self,
        dataset,
        transform: Callable,
        cache_dir: str | os.PathLike,
        augment: Callable | None = None,
        target_transform: Callable | None = None,
        compression: str | None = "lzf",
    ) -> None:
        if getattr(transform, "train", False):
            raise ValueError(
                "the cached transform must be deterministic: build it with train=False and pass "
                "random augmentations as augment="
            )
        self.dataset = dataset
        self.transform = transform
        self.augment = augment
        self.target_transform = target_transform
        self.compression = compression
        self.description = describe(dataset, transform)
        self.key = hashlib.sha256(self.description.encode()).hexdigest()[:20]
        self.path = Path(cache_dir) / self.key
        self.path.mkdir(parents=True, exist_ok=True)
        desc_file = self.path / _DESCRIPTION_FILE
        if desc_file.is_file():
            if desc_file.read_text() != self.description:
                raise RuntimeError(
                    f"{self.path} holds a cache with a different description; delete the folder"
                )
        else:
            _atomic_write_bytes(desc_file, self.description.encode())
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def sample_path(self, index: int) -> Path:
        return self.path / f"{index}.h5"

    def _load(self, index: int):
        import h5py

        with h5py.File(self.sample_path(index), "r") as f:
            frames = f["frames"][()]
            target = f["target"][()]
            as_torch = bool(f.attrs.get("torch", False))
        if isinstance(target, np.ndarray) and target.shape == ():
            target = target.item()
        elif isinstance(target, np.generic):
            target = target.item()
        if as_torch:
            import torch

            frames = torch.from_numpy(frames)
        return frames, target

    def _store(self, index: int, frames, target) -> None:
        import h5py

        as_torch = False
        if hasattr(frames, "detach"):  # a torch tensor
            frames, as_torch = frames.detach().cpu().numpy(), True
        fd, tmp = tempfile.mkstemp(prefix=f".{index}.", suffix=".tmp", dir=self.path)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("frames", data=np.asarray(frames), compression=self.compression)
                f.create_dataset("target", data=np.asarray(target))
                f.attrs["torch"] = as_torch
            os.replace(tmp, self.sample_path(index))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        path = self.sample_path(index)
        frames = target = None
        if path.is_file():
            try:
                frames, target = self._load(index)
                self.hits += 1
            except (OSError, KeyError) as exc:  # a corrupt entry: recompute it
                logger.warning("cache entry %s unreadable (%s); recomputing", path, exc)
                frames = None
        if frames is None:
            events, target = self.dataset[index]
            frames = self.transform(events)
            self._store(index, frames, target)
            self.misses += 1
        if self.augment is not None:
            frames = self.augment(frames)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return frames, target

    def fill(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Compute every missing sample now; returns how many were computed."""
        computed = 0
        for i in range(len(self)):
            if not self.sample_path(i).is_file():
                events, target = self.dataset[i]
                self._store(i, self.transform(events), target)
                computed += 1
            if progress is not None:
                progress(i + 1, len(self))
        return computed

    def __repr__(self) -> str:
        return f"CachedDataset(key={self.key}, n={len(self)}, path={str(self.path)!r})"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
