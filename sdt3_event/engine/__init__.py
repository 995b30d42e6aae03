"""Training engine: typed config, train/eval loops, distributed helpers, whole runs.

- :mod:`.config`: the ``ExperimentConfig`` dataclasses, YAML + ``key=value`` overrides.
- :mod:`.train`: ``train_one_epoch`` / ``evaluate`` (objects in, metric dicts out).
- :mod:`.runner`: ``fit(cfg)``: a whole run with resume, best/last checkpoints and metrics.jsonl.
- :mod:`.optim` (AdamW, LAMB, warm-up + cosine), :mod:`.ema`, :mod:`.mixing` (mixup / cutmix),
  :mod:`.distributed` (torchrun / DDP), :mod:`.data` (data sets and loaders),
  :mod:`.evaluation` (a checkpoint on a test set).

Checkpoint I/O (:mod:`sdt3_event.checkpoint`), the run log (:mod:`sdt3_event.runlog`), ONNX export
and runtime (:mod:`sdt3_event.deploy`) and the device choice (:mod:`sdt3_event.device`) live below
both the engine and the stream, so live inference loads a model without importing this package.
"""
