"""The base class of the dataset classes: one ``__getitem__`` / ``__len__`` / ``__repr__``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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


class EventDataset:
    """Tonic-style map dataset: ``dataset[i] -> (sample, target)`` with the transforms applied.

    A subclass sets ``targets`` (one label per sample) and ``transform`` / ``target_transform``
    in its constructor and implements :meth:`load` (sample ``i``, untransformed) and
    :meth:`describe` (the fields its ``repr`` shows).
    """

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
