"""HDF5 cache of deterministic preprocessing (events -> frames), keyed by the transform.

:class:`CachedDataset` wraps a data set that returns ``(events, target)`` and a deterministic
transform (typically ``build_frame_transform(contract, train=False)``). It runs the transform once
over the whole data set and stores the frames in one HDF5 file, ``<cache_dir>/<key>.h5``; every
later run with the same key reads frames straight from it. The key is a SHA-256 of a description
holding ``repr(transform)`` (frozen dataclasses, so every parameter and the data contract appear),
the data set's class, ``repr`` and length: a changed transform or data set gets a new file and never
reads stale frames. The full description is also stored in the file and compared on open.

The file is written under a temporary name and renamed when complete (atomic), so an interrupted
build never leaves a file that looks valid. Reading opens one handle per process (DataLoader
workers included). Random augmentations belong after the cache (``augment=``), never inside the
cached transform.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sdt3_event._files import temp_beside

logger = logging.getLogger(__name__)

_FORMAT = "sdt3-event frame cache v2"


def describe(dataset, transform: Callable) -> str:
    """The text the cache key is hashed from: transform and data set identity."""
    ds_type = type(dataset)
    return "\n".join(
        [
            _FORMAT,
            f"transform: {transform!r}",
            f"dataset: {ds_type.__module__}.{ds_type.__qualname__}",
            f"dataset_repr: {dataset!r}",
            f"len: {len(dataset)}",
        ]
    )


def cache_key(dataset, transform: Callable) -> str:
    """A short hex key identifying ``(dataset, transform)``."""
    return hashlib.sha256(describe(dataset, transform).encode()).hexdigest()[:20]


def _storage_dtype(transform) -> np.dtype:
    """uint8 when the transform's frames are integers in 0..255 (binary or clamped counts)."""
    contract = getattr(transform, "contract", None)
    if contract is not None and (
        contract.representation == "binary"
        or (contract.clamp is not None and contract.clamp <= 255)
    ):
        return np.dtype(np.uint8)
    return np.dtype(np.float32)


class _Computed:
    """Map-style view ``i -> (transform(events_i), target_i)`` for building the cache."""

    def __init__(self, dataset, transform) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        events, target = self.dataset[index]
        frames = self.transform(events)
        if hasattr(frames, "detach"):
            frames = frames.detach().cpu().numpy()
        return index, np.asarray(frames), target


def _identity_collate(batch):
    return batch


class CachedDataset:
    """A data set whose transformed samples come from an HDF5 cache.

    Args:
        dataset: returns ``(events, target)`` (its own ``transform`` should be ``None``).
        transform: deterministic ``events -> frames`` (numpy array or torch tensor).
        cache_dir: folder of the cache files (one per ``(dataset, transform)``).
        augment: random transform applied to the cached frames on every access.
        target_transform: applied to the target.
        workers: processes that compute the frames when the cache is built.
        progress: ``progress(done, total)`` while building.
        compression: h5py filter for the frames (``"lzf"``, ``"gzip"`` or ``None``).

    Raises:
        ValueError: ``transform`` is a training (random) frame transform, has no stable ``repr``
            (a lambda), or samples of different shapes.
        RuntimeError: the cache file holds a different description (a hash collision or a
            hand-edited cache); delete the file.
    """

    def __init__(
        self,
        dataset,
        transform: Callable,
        cache_dir: str | os.PathLike,
        augment: Callable | None = None,
        target_transform: Callable | None = None,
        workers: int = 0,
        progress: Callable[[int, int], None] | None = None,
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
        if " at 0x" in self.description:
            raise ValueError(
                "the transform or data set has no stable repr (it shows a memory address), so a "
                "cache key cannot identify it; use frozen dataclasses such as "
                "build_frame_transform(...) and data sets with a descriptive __repr__"
            )
        self.key = hashlib.sha256(self.description.encode()).hexdigest()[:20]
        self.path = Path(cache_dir) / f"{self.key}.h5"
        self.built = False  # True when this object computed the cache
        self._handle = None
        self._handle_pid = None
        if not self.path.is_file():
            self._build(workers, progress)
            self.built = True
        self._check()

    # ------------------------------------------------------------------ building
    def _build(self, workers: int, progress) -> None:
        import h5py

        self.path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self.dataset)
        if n == 0:
            raise ValueError("cannot cache an empty data set")
        computed = _Computed(self.dataset, self.transform)
        if workers > 0:
            from torch.utils.data import DataLoader

            items = DataLoader(
                computed, batch_size=None, num_workers=workers, collate_fn=_identity_collate
            )
        else:
            items = (computed[i] for i in range(n))
        dtype = _storage_dtype(self.transform)
        fd, tmp = temp_beside(self.path, prefix=f".{self.key}.")
        os.close(fd)
        logger.info("building frame cache %s (%d samples)", self.path, n)
        try:
            with h5py.File(tmp, "w") as f:
                frames_ds = None
                targets = np.empty(n, np.int64)
                for done, (index, frames, target) in enumerate(items, 1):
                    if frames_ds is None:
                        shape = frames.shape
                        frames_ds = f.create_dataset(
                            "frames",
                            shape=(n, *shape),
                            dtype=dtype,
                            chunks=(1, *shape),
                            compression=self.compression,
                        )
                    if frames.shape != shape:
                        raise ValueError(
                            f"sample {index} has frames of shape {frames.shape}, sample 0 had "
                            f"{shape}; a cache needs one shape"
                        )
                    stored = frames.astype(dtype)
                    if dtype != frames.dtype and not np.array_equal(stored, frames):
                        raise ValueError(f"sample {index}: frames do not fit {dtype} exactly")
                    frames_ds[index] = stored
                    targets[index] = int(target)
                    if progress is not None:
                        progress(done, n)
                f.create_dataset("targets", data=targets)
                f.attrs["description"] = self.description
                f.attrs["frames_dtype"] = str(frames.dtype)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _check(self) -> None:
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                stored = str(f.attrs.get("description", ""))
                self._frames_dtype = np.dtype(str(f.attrs.get("frames_dtype", "float32")))
                n = len(f["targets"])
        except (OSError, KeyError) as exc:
            raise RuntimeError(f"{self.path}: unreadable frame cache ({exc}); delete it") from exc
        if stored != self.description or n != len(self.dataset):
            raise RuntimeError(
                f"{self.path} holds a cache with a different description; delete the file"
            )

    # ------------------------------------------------------------------ reading
    def _file(self):
        """``(frames dataset, targets array)`` through this process's own file handle."""
        import h5py

        if self._handle is None or self._handle_pid != os.getpid():
            f = h5py.File(self.path, "r")  # one handle per process (h5py handles do not fork)
            self._handle = (f, f["frames"], f["targets"][()])
            self._handle_pid = os.getpid()
        return self._handle[1], self._handle[2]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"] = None
        state["_handle_pid"] = None
        return state

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        import torch

        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        frames_ds, targets = self._file()
        frames = torch.from_numpy(frames_ds[index].astype(self._frames_dtype, copy=False))
        target = int(targets[index])
        if self.augment is not None:
            frames = self.augment(frames)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return frames, target

    def close(self) -> None:
        if self._handle is not None:
            self._handle[0].close()
            self._handle = None

    def __repr__(self) -> str:
        return f"CachedDataset(key={self.key}, n={len(self)}, path={str(self.path)!r})"
