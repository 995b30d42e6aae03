"""The DataLoader factory: ``(B, T, P, H, W)`` float32 batches and int64 labels."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def collate_frames(batch):
    """Stack ``[(frames (T, P, H, W), label), ...]`` into ``(B, T, P, H, W)`` float32 + ``(B,)`` int64.

    Raises:
        ValueError: samples of different shapes (names both shapes).
    """
    import torch

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
):
    """A ``torch.utils.data.DataLoader`` over a frame data set.

    Args:
        dataset: returns ``(frames (T, P, H, W), label)``.
        batch_size: samples per batch (per process when distributed).
        train: shuffle (seeded) and drop the last partial batch (unless ``drop_last`` says
            otherwise).
        workers: worker processes (0: load in the main process).
        pin_memory: pin batches for faster host-to-GPU copies.
        distributed: use a ``DistributedSampler`` (call ``loader.sampler.set_epoch(epoch)``
            every epoch so shuffles differ).
        seed: shuffle seed.
        drop_last: override the default (``train``).
        num_replicas: world size for the sampler (default: from the process group).
        rank: this process's rank (default: from the process group).
        prefetch_factor: batches prefetched per worker (ignored without workers).

    Returns:
        The DataLoader; batches are ``(x (B, T, P, H, W) float32, y (B,) int64)``.

    Raises:
        ValueError: ``batch_size < 1`` or ``workers < 0``.
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    drop_last = train if drop_last is None else drop_last
    if distributed:
        sampler = DistributedSampler(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=train,
            seed=seed,
            drop_last=drop_last,
        )
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    kwargs = {}
    if workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": prefetch_factor}
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
