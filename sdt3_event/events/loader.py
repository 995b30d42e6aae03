"""The one DataLoader factory (training, evaluation, tests and benchmarks): ``(B, T, P, H, W)``
float32 batches and int64 labels, seeded shuffles split over ranks, seeded workers."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


class EpochShuffleSampler(Sampler[int]):
    """This process's share of a permutation seeded by ``seed + epoch``.

    With one process it is a seeded shuffle; with several it splits one permutation across ranks
    like :class:`torch.utils.data.DistributedSampler` (``drop_last``: each rank gets
    ``len // world`` indices, so every rank runs the same number of steps). Call
    :meth:`set_epoch` before each epoch; a resumed run reproduces the same order.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.per_rank = n // world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        order = order[: self.per_rank * self.world_size]
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.per_rank


class ShardSampler(Sampler[int]):
    """Evaluation sharding without padding: rank ``r`` takes indices ``r, r + W, ...``.

    Every sample is evaluated exactly once over all ranks, so all-reduced counts are exact.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return max(0, math.ceil((self.n - self.rank) / self.world_size))


def rng_owner(dataset: Any) -> Any:
    """The data set whose generator (``rng``, as
    :class:`~sdt3_event.datasets._common.EventDataset` owns) the random transforms of ``dataset``
    draw from, found through wrappers' ``.dataset`` (``torch.utils.data.Subset`` and the like);
    ``None`` when there is none."""
    while dataset is not None and not hasattr(type(dataset), "rng"):
        dataset = getattr(dataset, "dataset", None)
    return dataset


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed this worker's random streams from torch's per-worker seed, so
    augmentations differ between workers and repeat in a run with the same seed (and a resumed
    one).

    Seeds NumPy's global state and the generator of the worker's copy of the data set (its
    :func:`rng_owner`), which its random transforms draw from.
    """
    from torch.utils.data import get_worker_info

    np.random.seed(torch.initial_seed() % 2**32)
    info = get_worker_info()
    owner = None if info is None else rng_owner(info.dataset)
    if owner is not None:
        owner.rng = np.random.default_rng(info.seed)


def collate_frames(batch):
    """Stack ``[(frames (T, P, H, W), label), ...]`` into ``(B, T, P, H, W)`` float32 + ``(B,)`` int64.

    Raises:
        ValueError: samples of different shapes (names both shapes).
    """
    frames = [
        torch.as_tensor(np.asarray(f)) if not isinstance(f, torch.Tensor) else f for f, _ in batch
    ]
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) != 1:
        raise ValueError(
            f"samples in a batch have different shapes {sorted(shapes)}; give every sample the "
            "same frame shape (one data contract / frame transform for the whole data set)"
        )
    x = torch.stack(frames).to(torch.float32)  # (B, T, P, H, W)
    y = torch.as_tensor([int(label) for _, label in batch], dtype=torch.int64)
    return x, y


def make_loader(
    dataset,
    batch_size: int,
    train: bool,
    workers: int = 0,
    pin_memory: bool = False,
    distributed: bool = False,
    *,
    seed: int = 0,
    drop_last: bool | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
    prefetch_factor: int | None = 2,
    persistent_workers: bool = True,
):
    """A ``torch.utils.data.DataLoader`` over a frame data set.

    Args:
        dataset: returns ``(frames (T, P, H, W), label)``.
        batch_size: samples per batch (per process when distributed).
        train: shuffle (an :class:`EpochShuffleSampler`: call ``loader.sampler.set_epoch(epoch)``
            every epoch so shuffles differ) and drop the last partial batch (unless
            ``drop_last`` says otherwise); evaluation reads in order (:class:`ShardSampler`).
        workers: worker processes (0: load in the main process), seeded by :func:`seed_worker`.
        pin_memory: pin batches for faster host-to-GPU copies (when CUDA is available).
        distributed: split the samples over ``num_replicas`` processes (training: one seeded
            permutation, ``len // world`` each; evaluation: shards without padding).
        seed: shuffle seed.
        drop_last: override the default (``train``).
        num_replicas: world size for the sampler (default: from the process group).
        rank: this process's rank (default: from the process group).
        prefetch_factor: batches prefetched per worker (ignored without workers).
        persistent_workers: keep the workers between epochs (ignored without workers).

    Returns:
        The DataLoader; batches are ``(x (B, T, P, H, W) float32, y (B,) int64)``.

    Raises:
        ValueError: ``batch_size < 1`` or ``workers < 0``.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    drop_last = train if drop_last is None else drop_last
    world, this_rank = 1, 0
    if distributed:
        import torch.distributed as dist

        world = num_replicas if num_replicas is not None else dist.get_world_size()
        this_rank = rank if rank is not None else dist.get_rank()
    if train:
        sampler: Sampler[int] = EpochShuffleSampler(len(dataset), seed, this_rank, world)
    else:
        sampler = ShardSampler(len(dataset), this_rank, world)
    kwargs = {}
    if workers > 0:
        kwargs = {
            "persistent_workers": persistent_workers,
            "prefetch_factor": prefetch_factor,
            "worker_init_fn": seed_worker,
        }
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        drop_last=drop_last,
        collate_fn=collate_frames,
        **kwargs,
    )
