"""HDF5 frame cache (keyed by the transform) and the DataLoader factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticGestures

from sdt3_event.events.cache import CachedDataset, cache_key
from sdt3_event.events.contract import DataContract
from sdt3_event.events.loader import collate_frames, make_loader
from sdt3_event.events.transforms import build_frame_transform

CONTRACT = DataContract((32, 32, 2), (16, 16), 4, 100_000, "count", 4, "resize", SYNTHETIC_CLASSES)


def _data(n=6):
    return SyntheticGestures("train", n, seed=0, sensor_size=(32, 32, 2), duration_us=100_000)


def test_cache_hits_equal_fresh_transform(tmp_path):
    tf = build_frame_transform(CONTRACT)
    cached = CachedDataset(_data(), tf, tmp_path)
    first = [cached[i] for i in range(len(cached))]
    assert cached.misses == 6 and cached.hits == 0
    again = CachedDataset(_data(), tf, tmp_path)
    for i, (frames, label) in enumerate(first):
        frames2, label2 = again[i]
        assert isinstance(frames2, torch.Tensor) and frames2.dtype == torch.float32
        torch.testing.assert_close(frames2, frames)
        torch.testing.assert_close(frames2, tf(_data()[i][0]))
        assert label2 == label == i % 10
    assert again.hits == 6 and again.misses == 0


def test_cache_changed_transform_never_reads_stale_frames(tmp_path):
    tf4 = build_frame_transform(CONTRACT)
    CachedDataset(_data(), tf4, tmp_path).fill()
    other = DataContract((32, 32, 2), (16, 16), 4, 100_000, "binary", None, "resize")
    tf_bin = build_frame_transform(other)
    assert cache_key(_data(), tf4) != cache_key(_data(), tf_bin)
    cached = CachedDataset(_data(), tf_bin, tmp_path)
    frames, _ = cached[0]
    assert cached.misses == 1 and frames.max() == 1
    # A different data set (seed) also gets its own key.
    assert cache_key(_data(), tf4) != cache_key(
        SyntheticGestures("train", 6, seed=1, sensor_size=(32, 32, 2), duration_us=100_000), tf4
    )
    assert len(list(tmp_path.iterdir())) == 2


def test_cache_refuses_random_transform_and_recovers_corrupt_entries(tmp_path):
    with pytest.raises(ValueError, match="deterministic"):
        CachedDataset(_data(), build_frame_transform(CONTRACT, train=True), tmp_path)
    tf = build_frame_transform(CONTRACT)
    cached = CachedDataset(_data(), tf, tmp_path)
    good, _ = cached[2]
    cached.sample_path(2).write_bytes(b"half-written")
    torch.testing.assert_close(cached[2][0], good)
    (cached.path / "description.txt").write_text("something else")
    with pytest.raises(RuntimeError, match="different description"):
        CachedDataset(_data(), tf, tmp_path)
    assert not list(cached.path.glob("*.tmp"))


def test_loader_batches_and_augment_after_cache(tmp_path):
    tf = build_frame_transform(CONTRACT)
    cached = CachedDataset(_data(8), tf, tmp_path, augment=lambda x: x.flip(-1))
    loader = make_loader(cached, batch_size=3, train=True, seed=1)
    batches = list(loader)
    assert len(batches) == 2  # drop_last in training
    x, y = batches[0]
    assert x.shape == (3, *CONTRACT.frame_shape) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.shape == (3,)
    order = [int(v) for b in make_loader(cached, 3, train=True, seed=1) for v in b[1]]
    assert order == [int(v) for b in batches for v in b[1]]  # seeded shuffle
    evals = list(make_loader(cached, 3, train=False))
    assert [len(b[1]) for b in evals] == [3, 3, 2]
    assert evals[0][1].tolist() == [0, 1, 2]


def test_loader_with_workers_and_distributed_sampler():
    ds = SyntheticGestures(
        "val",
        8,
        seed=0,
        sensor_size=(32, 32, 2),
        duration_us=100_000,
        transform=build_frame_transform(CONTRACT, train=True),
    )
    loader = make_loader(ds, 4, train=True, workers=2)
    x, y = next(iter(loader))
    assert x.shape == (4, *CONTRACT.frame_shape)
    halves = [
        make_loader(ds, 2, train=False, distributed=True, num_replicas=2, rank=r) for r in (0, 1)
    ]
    labels = [[int(v) for b in h for v in b[1]] for h in halves]
    assert sorted(labels[0] + labels[1]) == sorted(ds.targets)
    assert not set(range(8)) - set(halves[0].sampler.__iter__()) - set(halves[1].sampler.__iter__())


def test_collate_rejects_mixed_shapes():
    with pytest.raises(ValueError, match="different shapes"):
        collate_frames([(np.zeros((2, 2, 4, 4)), 0), (np.zeros((3, 2, 4, 4)), 1)])
