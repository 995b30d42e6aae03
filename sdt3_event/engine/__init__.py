"""Training engine: typed config, train/eval loops, checkpoints, distributed helpers, run logging.

- :mod:`.checkpoint`: atomic, self-describing checkpoints (``save_checkpoint``, ``load_checkpoint``,
  ``load_model_from_checkpoint``, ``export_checkpoint``).
- :mod:`.config`: the ``ExperimentConfig`` dataclasses, YAML + ``key=value`` overrides.
- :mod:`.train`: ``train_one_epoch`` / ``evaluate`` (objects in, metric dicts out).
- :mod:`.runner`: ``fit(cfg)``: a whole run with resume, best/last checkpoints and metrics.jsonl.
- :mod:`.optim` (AdamW, LAMB, warm-up + cosine), :mod:`.ema`, :mod:`.mixing` (mixup / cutmix),
  :mod:`.distributed` (torchrun / DDP), :mod:`.data` (data sets and loaders), :mod:`.metrics_log`.
"""

from sdt3_event.engine.checkpoint import (
    CheckpointError,
    LoadedModel,
    export_checkpoint,
    load_checkpoint,
    load_model_from_checkpoint,
    save_checkpoint,
)

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "export_checkpoint",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "save_checkpoint",
]
