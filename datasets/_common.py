"""The base class of the dataset classes: one ``__getitem__`` / ``__len__`` / ``__repr__``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdt3_event.events.schema import EVENT_DTYPE


def apply_transforms(dataset: Any, sample: Any, target: Any) -> tuple[Any, Any]:
    """Apply a Tonic-style dataset's ``transform``, ``target_transform`` and ``transforms``.

    ``transforms`` (a joint callable ``(sample, target) -> (sample, target)``, as in Tonic and
    torchvision) is optional: datasets that do not define it skip that step.
    """
    if dataset.transform is not None:
        sample = dataset.transform(sample)
    if dataset.target_transform is not None:
        target = dataset.target_transform(target)
    joint = getattr(dataset, "transforms", None)
    if joint is not None:
        sample, target = joint(sample, target)
    return sample, target


def require_folder(
    folder: Path, dataset: str, title: str, root: str | os.PathLike, download: bool
) -> None:
    """Make sure a downloadable data set's ``folder`` exists.

    Args:
        folder: the folder the dataset class reads.
        dataset: the name ``sdt3-event data download`` knows (``"cifar10dvs"``).
        title: the data set's name in messages (``"CIFAR10-DVS"``).
        root: the data root the download goes to.
        download: download when the folder is missing.

    Raises:
        FileNotFoundError: the folder is missing (after the download, when asked); the message
            gives the command that fetches it.
    """
    if not folder.is_dir() and download:
        from sdt3_event.datasets.download import download_dataset

        download_dataset(dataset, root)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{title} folder {folder} not found; run `sdt3-event data download {dataset} "
            f"--root {root}` or pass download=True"
        )


class EventDataset:
    """Tonic-style map dataset: ``dataset[i] -> (sample, target)`` with the transforms applied.

    Samples are structured events (``dtype``, in ``ordering``) unless a subclass says otherwise
    (frame datasets set both to None). A subclass sets ``targets`` (one label per sample) and ``transform`` / ``target_transform``
    in its constructor and implements :meth:`load` (sample ``i``, untransformed) and
    :meth:`describe` (the fields its ``repr`` shows).
    """

    dtype: Any = EVENT_DTYPE
    ordering: str | None = "txyp"
    targets: list[int]
    transform: Callable | None = None
    target_transform: Callable | None = None

    def load(self, index: int) -> Any:
        """Sample ``index`` before any transform (events, or frames for frame datasets)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The ``name -> value`` pairs ``repr`` shows, in order."""
        return {}

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        sample = self.load(index)
        return apply_transforms(self, sample, self.targets[index])

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"{type(self).__name__}({fields})"
