"""Pieces shared by the dataset classes."""

from __future__ import annotations

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
