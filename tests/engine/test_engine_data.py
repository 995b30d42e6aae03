"""The engine's data sets: the evaluation split through the HDF5 frame cache (``data.cache``)."""

from __future__ import annotations

import torch

from sdt3_event.engine.config import DataConfig
from sdt3_event.engine.data import build_datasets, build_loaders
from sdt3_event.events.cache import CachedDataset


def _cfg(**kw) -> DataConfig:
    base = dict(
        sensor_size=(32, 32, 2),
        input_size=(16, 16),
        n_time_bins=4,
        window_us=100_000,
        train_samples=8,
        test_samples=6,
        batch_size=4,
    )
    return DataConfig(**{**base, **kw})


def test_data_cache_serves_the_same_eval_frames_and_is_reused(tmp_path):
    _, plain, contract = build_datasets(_cfg(), seed=3)
    _, cached, cached_contract = build_datasets(_cfg(cache=str(tmp_path)), seed=3)
    assert cached_contract == contract
    assert isinstance(cached, CachedDataset) and cached.built
    assert len(list(tmp_path.glob("*.h5"))) == 1
    for i in range(len(plain)):
        torch.testing.assert_close(cached[i][0], plain[i][0])
        assert cached[i][1] == plain[i][1]
    _, again, _ = build_datasets(_cfg(cache=str(tmp_path)), seed=3)
    assert not again.built  # read from the file the first run wrote
    _, other, _ = build_datasets(_cfg(cache=str(tmp_path), n_time_bins=2), seed=3)
    assert other.built and len(list(tmp_path.glob("*.h5"))) == 2  # a new contract, a new key
    train, test, sampler = build_loaders(
        *build_datasets(_cfg(cache=str(tmp_path)), 3)[:2], _cfg(), seed=3
    )
    x, y = next(iter(test))
    assert x.shape == (4, *contract.frame_shape) and y.dtype == torch.int64
    assert test.dataset is not None and sampler is train.sampler
