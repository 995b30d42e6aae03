"""The base class of the dataset classes: one ``__getitem__`` / ``__len__`` / ``__repr__``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sdt3_event.events.schema import EVENT_DTYPE
from sdt3_event.events.transforms import call_transform, default_generator


def apply_transforms(dataset: Any, sample: Any, target: Any) -> tuple[Any, Any]:
    """Apply a Tonic-style dataset's ``transform``, ``target_transform`` and ``transforms``.

    A random ``transform`` (:class:`~sdt3_event.events.transforms.RandomTransform`) draws from
    the data set's generator ``dataset.rng``. ``transforms`` (a joint callable
    ``(sample, target) -> (sample, target)``, as in Tonic and torchvision) is optional: datasets
    that do not define it skip that step.
    """
    if dataset.transform is not None:
        sample = call_transform(dataset.transform, sample, dataset.rng)
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

    The data set owns the :class:`numpy.random.Generator` its random transforms draw from,
    :attr:`rng`; a subclass that draws itself (a random clip start) uses it too.
    """

    dtype: Any = EVENT_DTYPE
    ordering: str | None = "txyp"
    targets: list[int]
    transform: Callable | None = None
    target_transform: Callable | None = None
    _rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator:
        """The generator of this data set's random transforms, one per process: set it to seed
        them (``dataset.rng = np.random.default_rng(seed)``; the training run does). In a
        DataLoader worker :func:`~sdt3_event.events.loader.seed_worker` (``make_loader``'s
        ``worker_init_fn``) seeds the worker's copy from the worker's seed. Unset, the first use
        draws it from NumPy's global state
        (:func:`~sdt3_event.events.transforms.default_generator`)."""
        if self._rng is None:
            self._rng = default_generator()
        return self._rng

    @rng.setter
    def rng(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def load(self, index: int) -> Any:
        """Sample ``index`` before any transform (events, or frames for frame datasets)."""
        raise NotImplementedError

    #: the attributes ``repr`` shows, in order (``"n"``: the sample count); a subclass that shows
    #: more (a derived value, a path) adds it in :meth:`describe`.
    DESCRIBE: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The ``name -> value`` pairs ``repr`` shows, in order: :attr:`DESCRIBE`'s attributes."""
        return {name: len(self) if name == "n" else getattr(self, name) for name in self.DESCRIBE}

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        sample = self.load(index)
        return apply_transforms(self, sample, self.targets[index])

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"{type(self).__name__}({fields})"


class SplitDataset(EventDataset):
    """An event data set of one split under a data root:
    ``cls(root, split="train", transform=None, target_transform=None)``.

    The constructor keeps its arguments (``root`` as a :class:`~pathlib.Path`) and calls
    :meth:`scan`, which checks the split and fills ``targets`` and what :meth:`load` reads.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        self.scan()

    def scan(self) -> None:
        """Read the split's sample list (called by the constructor).

        Raises:
            ValueError: an unknown split or a malformed list.
            FileNotFoundError: the list or a file it names is missing.
        """
        raise NotImplementedError
