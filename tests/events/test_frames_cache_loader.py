"""HDF5 frame cache (keyed by the transform) and the DataLoader factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticGestures

from sdt3_event.events.cache import CachedDataset, cache_key
from sdt3_event.events.contract import DataContract
from sdt3_event.events.loader import collate_frames, make_loader, rng_owner
from sdt3_event.events.transforms import EventDrop, RandomTranslate, build_frame_transform

CONTRACT = DataContract((32, 32, 2), (16, 16), 4, 100_000, "count", 4, "resize", SYNTHETIC_CLASSES)


def _data(n=6):
    return SyntheticGestures("train", n, seed=0, sensor_size=(32, 32, 2), duration_us=100_000)


def test_cache_equals_fresh_transform_and_is_reused(tmp_path):
    tf = build_frame_transform(CONTRACT)
    cached = CachedDataset(_data(), tf, tmp_path)
    assert cached.built and cached.path.suffix == ".h5"
    again = CachedDataset(_data(), tf, tmp_path)
    assert not again.built
    for i in range(len(again)):
        frames, label = again[i]
        assert isinstance(frames, torch.Tensor) and frames.dtype == torch.float32
        torch.testing.assert_close(frames, tf(_data()[i][0]))
        assert label == i % 10
    assert again[-1][1] == 5
    with pytest.raises(IndexError):
        again[6]


def test_cache_changed_transform_never_reads_stale_frames(tmp_path):
    tf4 = build_frame_transform(CONTRACT)
    CachedDataset(_data(), tf4, tmp_path)
    other = DataContract((32, 32, 2), (16, 16), 4, 100_000, "binary", None, "resize")
    tf_bin = build_frame_transform(other)
    assert cache_key(_data(), tf4) != cache_key(_data(), tf_bin)
    cached = CachedDataset(_data(), tf_bin, tmp_path)
    assert cached.built and cached[0][0].max() == 1
    # A different data set (seed) also gets its own key.
    assert cache_key(_data(), tf4) != cache_key(
        SyntheticGestures("train", 6, seed=1, sensor_size=(32, 32, 2), duration_us=100_000), tf4
    )
    assert len(list(tmp_path.glob("*.h5"))) == 2


class _Failing:
    def __init__(self, inner, bad_index):
        self.inner, self.bad_index = inner, bad_index

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if i == self.bad_index:
            raise OSError(f"sample {i} unreadable")
        return self.inner[i]

    def __repr__(self):
        return f"_Failing({self.inner!r}, {self.bad_index})"


def test_cache_build_is_atomic_and_checks_its_description(tmp_path):
    with pytest.raises(ValueError, match="deterministic"):
        CachedDataset(_data(), build_frame_transform(CONTRACT, train=True), tmp_path)
    with pytest.raises(ValueError, match="stable repr"):
        CachedDataset(_data(), lambda ev: ev, tmp_path)
    tf = build_frame_transform(CONTRACT)
    with pytest.raises(OSError, match="sample 3"):
        CachedDataset(_Failing(_data(), 3), tf, tmp_path)
    assert not list(tmp_path.iterdir())  # neither a cache file nor a temporary one
    cached = CachedDataset(_data(), tf, tmp_path)
    import h5py

    with h5py.File(cached.path, "a") as f:
        f.attrs["description"] = "something else"
    with pytest.raises(RuntimeError, match="different description"):
        CachedDataset(_data(), tf, tmp_path)
    cached.path.write_bytes(b"half-written")
    with pytest.raises(RuntimeError, match="delete it"):
        CachedDataset(_data(), tf, tmp_path)


def test_cache_built_by_workers_matches(tmp_path):
    tf = build_frame_transform(CONTRACT)
    seen = []
    cached = CachedDataset(_data(), tf, tmp_path, workers=2, progress=lambda d, n: seen.append(d))
    assert seen == [1, 2, 3, 4, 5, 6]
    for i in range(6):
        torch.testing.assert_close(cached[i][0], tf(_data()[i][0]))
    x, y = next(iter(make_loader(cached, 3, train=False, workers=2)))  # handles per worker
    torch.testing.assert_close(x[1], tf(_data()[1][0]))
    assert y.tolist() == [0, 1, 2]


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


@pytest.mark.gpu
def test_loader_pins_memory_for_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ds = SyntheticGestures(
        "val",
        4,
        seed=0,
        sensor_size=(32, 32, 2),
        duration_us=100_000,
        transform=build_frame_transform(CONTRACT),
    )
    x, y = next(iter(make_loader(ds, 4, train=False, workers=1, pin_memory=True)))
    assert x.is_pinned() and y.is_pinned()
    x = x.cuda(non_blocking=True)
    assert x.shape == (4, *CONTRACT.frame_shape) and x.device.type == "cuda"


class _SameClip(SyntheticGestures):
    """Every sample is the same recording, so two samples differ only by their augmentations."""

    def load(self, index):
        return super().load(0)


def _augmenting(n=8):
    augs = (RandomTranslate((32, 32, 2), (3, 3)), EventDrop((32, 32, 2)))
    tf = build_frame_transform(CONTRACT, train=True, augmentations=augs)
    return _SameClip("train", n, seed=0, sensor_size=(32, 32, 2), duration_us=100_000, transform=tf)


def test_two_workers_draw_different_augmentations():
    ds = _augmenting()
    ds.rng = np.random.default_rng(0)  # set before the workers fork: each must still reseed it
    torch.manual_seed(0)
    frames = [x[0] for x, _ in make_loader(ds, 1, train=True, workers=2)]  # worker 0, 1, 0, ...
    assert not torch.equal(torch.stack(frames[0::2]), torch.stack(frames[1::2]))
    assert len({f.numpy().tobytes() for f in frames}) > 4  # the clips differ within a worker too


@pytest.mark.parametrize("workers", [0, 2])
def test_same_seed_same_augmented_batches(workers):
    def batches(seed):
        ds = _augmenting()
        ds.rng = np.random.default_rng(seed)  # the main process (workers=0)
        torch.manual_seed(seed)  # the workers' seeds
        return torch.cat([x for x, _ in make_loader(ds, 4, train=True, workers=workers)])

    first = batches(1)
    assert torch.equal(first, batches(1))
    assert not torch.equal(first, batches(2))


def test_workers_seed_a_wrapped_data_set():
    """seed_worker finds the generator through a Subset (rng_owner)."""
    ds = _augmenting()
    ds.rng = np.random.default_rng(0)
    torch.manual_seed(0)
    sub = torch.utils.data.Subset(ds, range(8))
    assert rng_owner(sub) is ds and rng_owner(torch.utils.data.TensorDataset()) is None
    frames = [x[0] for x, _ in make_loader(sub, 1, train=False, workers=2)]
    assert not torch.equal(torch.stack(frames[0::2]), torch.stack(frames[1::2]))
