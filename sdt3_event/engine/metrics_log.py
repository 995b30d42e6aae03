"""Run-folder logging: ``metrics.jsonl`` (one JSON object per line) and optional TensorBoard.

Line format (read by the monitor): every line has ``"event"`` in
``{"start", "step", "eval", "end", "failed"}``
and ``"time"`` (unix seconds).

- ``start``: ``model``, ``total_epochs``, ``steps_per_epoch`` (+ ``world_size``, ``resumed``)
- ``step``: ``epoch``, ``step``, ``loss``, ``lr``, ``samples_per_s``
- ``eval``: ``epoch``, ``step``, ``loss``, ``acc1``, ``acc5``, ``best_acc1``, ``is_best``
  (+ ``ema_acc1``/``ema_acc5`` with an EMA)
- ``end``: ``best_acc1`` (+ ``status``: ``"finished"``)
- ``failed``: ``reason`` (the error, one line), ``epoch``, ``step``: the run stopped on an error or
  an interrupt; it is the last line of that run
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


class MetricsLog:
    """Appends events to ``<run_dir>/metrics.jsonl`` and flushes every line.

    Only the main process writes (``enabled=False`` elsewhere). TensorBoard scalars go to
    ``<run_dir>/tb`` when the ``tensorboard`` package is installed.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
            except ImportError:
                logger.info("tensorboard is not installed; writing metrics.jsonl only")

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": time.time(), **{k: _finite(v) for k, v in fields.items()}}
        if not self.enabled:
            return record
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = int(fields.get("step", 0))
            for k, v in fields.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and k not in ("step", "epoch")
                ):
                    self._tb.add_scalar(f"{event}/{k}", v, step)
            self._tb.flush()
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
