"""Evaluate a checkpoint on a data split: top-1 / top-5, per-class accuracy, confusion matrix."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from sdt3_event.checkpoint import LoadedModel, load_model_from_checkpoint
from sdt3_event.engine.data import build_eval_dataset, recorded_split
from sdt3_event.engine.train import Progress, evaluate


def evaluate_checkpoint(
    checkpoint,
    *,
    dataset: str | None = None,
    root: str | None = None,
    split: str = "test",
    n_samples: int | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    use_ema: bool = True,
    spike_driven: bool = False,
    progress: Progress | None = None,
    arch: str | None = None,
) -> tuple[dict[str, Any], LoadedModel]:
    """Load ``checkpoint`` and evaluate it.

    Args:
        checkpoint: an sdt3-event checkpoint path.
        dataset: data set name; default the one the checkpoint was trained on.
        root: data folder (real data sets).
        split: which split.
        n_samples: synthetic only; default the training config's ``test_samples``.
        batch_size, num_workers, device: loader and device.
        use_ema: evaluate the EMA weights when present.
        spike_driven: run the spike-driven executor instead of the integer model.
        progress: wraps the loader (progress bars).
        arch: the model of a checkpoint that does not name one (see
            :func:`~sdt3_event.checkpoint.load_model_from_checkpoint`).

    Returns:
        ``(metrics, loaded)``: metrics as :func:`sdt3_event.engine.train.evaluate` plus
        ``class_names``, ``model_name``, ``checkpoint``; ``loaded`` the rebuilt model.

    Raises:
        FileNotFoundError: missing checkpoint or data.
        CheckpointError: not a checkpoint.
    """
    loaded = load_model_from_checkpoint(checkpoint, device=device, use_ema=use_ema, arch=arch)
    cfg = loaded.meta.get("config") or {}
    data_cfg = cfg.get("data", {})
    dataset = dataset or data_cfg.get("dataset", "synthetic")
    ds = build_eval_dataset(
        loaded.contract,
        dataset,
        root=root or data_cfg.get("root"),
        split=split,
        n_samples=n_samples or data_cfg.get("test_samples", 500),
        **recorded_split(cfg),
    )
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model = loaded.model
    if spike_driven:
        from sdt3_event.spikes import to_spike_driven

        example = next(iter(loader))[0][:2].to(device)
        model = to_spike_driven(model, example)
    dev = torch.device(device)
    metrics = evaluate(
        model,
        loader,
        device=dev,
        num_classes=len(loaded.contract.class_names),
        progress=progress,
    )
    metrics.update(
        class_names=list(loaded.contract.class_names),
        model_name=loaded.model_name,
        checkpoint=str(checkpoint),
        dataset=dataset,
        split=split,
        weights=loaded.meta.get("weights"),
        spike_driven=spike_driven,
    )
    return metrics, loaded
