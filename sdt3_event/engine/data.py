"""Data for the engine: data sets from a :class:`~sdt3_event.engine.config.DataConfig`, the data
contract they imply, and the seeded (distributed) loaders of the one loader factory.

The event -> frame transform is always :func:`sdt3_event.events.transforms.build_frame_transform`
built from the same :class:`DataContract` the checkpoint stores, so training, evaluation and live
inference preprocess identically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from sdt3_event.engine.config import DataConfig
from sdt3_event.events.contract import DataContract, auto_spatial
from sdt3_event.events.loader import EpochShuffleSampler, make_loader

logger = logging.getLogger(__name__)

SYNTHETIC_DEFAULT_SENSOR = (128, 128, 2)
SYNTHETIC_DEFAULT_WINDOW_US = 500_000


def make_contract(cfg: DataConfig, sensor_size, class_names) -> DataContract:
    """The data contract of ``cfg`` for a data set with ``sensor_size`` and ``class_names``."""
    sensor = tuple(cfg.sensor_size or sensor_size)
    spatial = cfg.spatial
    if spatial == "auto":
        spatial = auto_spatial(sensor[:2], cfg.input_size)
    return DataContract(
        sensor_size=sensor,
        input_size=tuple(cfg.input_size),
        n_time_bins=cfg.n_time_bins,
        window_us=cfg.window_us,
        representation=cfg.representation,
        clamp=cfg.clamp,
        spatial=spatial,
        class_names=tuple(class_names),
        filters=cfg.filters,
        tau_us=cfg.tau_us,
    )


def class_names_of(dataset: Any) -> list[str]:
    """Class names in label order from a data set's ``classes`` (a list, or Tonic's name -> label
    dict)."""
    classes = getattr(dataset, "classes", None) or []
    if isinstance(classes, dict):
        return [name for name, _ in sorted(classes.items(), key=lambda kv: kv[1])]
    return [str(c) for c in classes]


def _frame_transform(contract: DataContract, train: bool, cfg: DataConfig | None = None):
    from sdt3_event.events.transforms import build_frame_transform, default_augmentations

    augmentations = None
    if train and cfg is not None:
        augmentations = default_augmentations(
            contract,
            translate_px=cfg.translate_px,
            spatial_jitter_px=cfg.spatial_jitter_px,
            time_jitter_us=cfg.time_jitter_us,
            event_drop=cfg.event_drop,
            rotate_deg=cfg.rotate_deg,
            scale_jitter=cfg.scale_jitter,
            elastic_alpha=cfg.elastic_alpha,
            elastic_sigma=cfg.elastic_sigma,
        )
    return build_frame_transform(contract, train=train, augmentations=augmentations)


def _real_dataset(cfg: DataConfig, split: str, transform) -> Any:
    """A recorded data set by name, from :mod:`sdt3_event.datasets`.

    Raises:
        FileNotFoundError: ``cfg.root`` does not exist.
        ValueError: unknown data set name.
    """
    root = Path(cfg.root) if cfg.root else None
    if root is None or not root.exists():
        raise FileNotFoundError(
            f"data.root {cfg.root!r} does not exist (a relative root is taken from the current "
            f"folder); point it at the {cfg.dataset} folder: `--set data.root=PATH` for train, "
            f"`--data PATH` for eval and report (see `sdt3-event data --help` for downloading "
            f"and verifying data sets)"
        )
    from sdt3_event import datasets as ds

    factories = {
        "dvs_gesture": "DVSGesture",
        "cifar10dvs": "CIFAR10DVS",
        "hardvs": "HARDVS",
        "nmnist": "NMNIST",
        "folder": "EventFolder",
    }
    if cfg.dataset not in factories:
        raise ValueError(f"unknown data set {cfg.dataset!r}; choose one of {sorted(factories)}")
    cls = getattr(ds, factories[cfg.dataset], None)
    if cls is None:
        raise ValueError(
            f"data set {cfg.dataset!r} ({factories[cfg.dataset]}) is not available in this "
            f"installation of sdt3_event.datasets"
        )
    if cfg.dataset == "folder":
        return cls(
            str(root),
            sensor_size=cfg.sensor_size,
            split=split,
            transform=transform,
            test_fraction=cfg.val_fraction or 0.2,
            seed=cfg.split_seed,
        )
    if cfg.dataset == "nmnist":
        return cls(
            str(root),
            split=split,
            val_fraction=cfg.val_fraction,
            seed=cfg.split_seed,
            transform=transform,
        )
    return cls(str(root), split=split, transform=transform)


def build_datasets(cfg: DataConfig, seed: int = 0) -> tuple[Dataset, Dataset, DataContract]:
    """Train and test data sets with the contract's frame transform.

    Returns:
        ``(train, test, contract)``; each data set yields ``(frames (T, P, H, W) float32, label)``.

    Raises:
        FileNotFoundError: a missing data folder.
        ValueError: an unknown data set.
    """
    if cfg.dataset == "synthetic":
        from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticGestures

        sensor = tuple(cfg.sensor_size or SYNTHETIC_DEFAULT_SENSOR)
        window = cfg.window_us or SYNTHETIC_DEFAULT_WINDOW_US
        contract = make_contract(cfg, sensor, SYNTHETIC_CLASSES)
        if contract.window_us is None:
            contract = DataContract(**{**contract.to_dict(), "window_us": window})
        common = dict(seed=seed, sensor_size=sensor, duration_us=window)
        train = SyntheticGestures(
            "train", cfg.train_samples, transform=_frame_transform(contract, True, cfg), **common
        )
        test = SyntheticGestures("test", cfg.test_samples, **common)
        return train, _eval_frames(test, contract, cfg), contract
    train = _real_dataset(cfg, "train", None)
    sensor = cfg.sensor_size or getattr(train, "sensor_size", None)
    classes = class_names_of(train)
    if sensor is None:
        raise ValueError(
            f"data set {cfg.dataset!r} at {cfg.root} does not state its sensor size; "
            f"pass --set data.sensor_size=[W,H,P]"
        )
    if not classes:
        raise ValueError(f"data set {cfg.dataset!r} at {cfg.root} reports no classes")
    contract = make_contract(cfg, sensor, classes)
    train.transform = _frame_transform(contract, True, cfg)
    test = _real_dataset(cfg, cfg.eval_split, None)
    return train, _eval_frames(test, contract, cfg), contract


def _eval_frames(dataset: Any, contract: DataContract, cfg: DataConfig) -> Dataset:
    """The evaluation split with the contract's deterministic frame transform: through the
    HDF5 frame cache in ``cfg.cache`` when set, else applied on every read."""
    transform = _frame_transform(contract, False)
    if cfg.cache:
        from sdt3_event.events.cache import CachedDataset

        return CachedDataset(dataset, transform, cfg.cache, workers=cfg.num_workers)
    dataset.transform = transform
    return dataset


def build_loaders(
    train_ds: Dataset,
    test_ds: Dataset,
    cfg: DataConfig,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DataLoader, DataLoader, EpochShuffleSampler]:
    """Seeded loaders from :func:`~sdt3_event.events.loader.make_loader`: the train order is a
    permutation seeded by ``seed + epoch`` split over ranks (drop-last batches); evaluation shards
    without padding so counts all-reduce exactly.

    Returns:
        ``(train_loader, test_loader, train_sampler)``; call ``train_sampler.set_epoch(e)``.
    """
    common: dict[str, Any] = dict(
        workers=cfg.num_workers,
        pin_memory=True,
        distributed=world_size > 1,
        num_replicas=world_size,
        rank=rank,
        persistent_workers=False,
    )
    train = make_loader(train_ds, cfg.batch_size, train=True, seed=seed, **common)
    test = make_loader(test_ds, cfg.eval_batch_size or cfg.batch_size, train=False, **common)
    return train, test, train.sampler


def recorded_split(config: dict[str, Any]) -> dict[str, Any]:
    """The split a training run recorded in its checkpoint's ``config``, as
    :func:`build_eval_dataset` keywords (``seed``, ``val_fraction``, ``split_seed``): evaluation
    then rebuilds the run's own held-out recordings."""
    data = config.get("data", {})
    return {
        "seed": int(config.get("seed", 42)),
        "val_fraction": float(data.get("val_fraction", 0.0)),
        "split_seed": int(data.get("split_seed", 0)),
    }


def build_eval_dataset(
    contract: DataContract,
    dataset: str = "synthetic",
    root: str | None = None,
    split: str = "test",
    n_samples: int = 500,
    seed: int = 42,
    val_fraction: float = 0.0,
    split_seed: int = 0,
) -> Dataset:
    """The evaluation split of a data set, preprocessed by the checkpoint's own contract.

    Args:
        contract: from the checkpoint (never rebuilt from a config, so it cannot drift).
        dataset: data set name (``synthetic``, ``dvs_gesture``, ...).
        root: its folder (not for ``synthetic``).
        split: ``test`` (or ``val``/``train``).
        n_samples: synthetic data only: number of samples.
        seed: synthetic data only: the training run's seed.
        val_fraction: ``nmnist``: the training run's ``data.val_fraction`` (``split="val"``).
        split_seed: the training run's ``data.split_seed`` (which recordings are held out).

    Raises:
        FileNotFoundError: missing data folder.
        ValueError: unknown data set, or a synthetic contract without a window.
    """
    transform = _frame_transform(contract, train=False)
    if dataset == "synthetic":
        from sdt3_event.datasets.synthetic import SyntheticGestures

        if contract.window_us is None:
            raise ValueError("synthetic evaluation needs a contract with window_us")
        return SyntheticGestures(
            split,
            n_samples,
            seed=seed,
            sensor_size=contract.sensor_size,
            duration_us=contract.window_us,
            classes=contract.class_names,
            transform=transform,
        )
    cfg = DataConfig(dataset=dataset, root=root, val_fraction=val_fraction, split_seed=split_seed)
    return _real_dataset(cfg, split, transform)
