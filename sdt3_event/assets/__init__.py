"""Files shipped inside the package: the two bundled models.

``DEMO_CHECKPOINT``: the bundled demo model, ``sdt3_micro`` with integrate-and-fire neurons trained
on :class:`~sdt3_event.datasets.synthetic.SyntheticGestures` (128×128 sensor -> 64×64 input, T=8 over
a 500 ms window) from scratch by ``configs/synthetic_demo.yaml``. The live demo (``sdt3-event`` with
no arguments) runs it on the synthetic event stream, so a fresh install needs no download.

``NMNIST_CHECKPOINT``: a model trained on real events, ``sdt3_micro`` on the 1,000 N-MNIST training
recordings (34×34 ATIS sensor, 10 digits) by ``configs/nmnist_sdt3_micro.yaml``.

Both are ordinary sdt3-event checkpoints (optimizer state stripped, data contract inside); load them
with :func:`sdt3_event.checkpoint.load_model_from_checkpoint`. The commands take their names
(``--model nmnist``, ``sdt3-event eval demo``): see :func:`bundled_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEMO_CHECKPOINT = ASSETS_DIR / "demo_gestures.pt"
NMNIST_CHECKPOINT = ASSETS_DIR / "nmnist.pt"
BUNDLED_MODELS = {"demo": DEMO_CHECKPOINT, "nmnist": NMNIST_CHECKPOINT}
"""Bundled model name -> checkpoint file."""


def bundled_checkpoint(name: str | os.PathLike) -> Path:
    """The checkpoint a bundled model's name stands for; any other value is a path, returned as
    one."""
    return BUNDLED_MODELS.get(str(name), Path(name))


__all__ = [
    "ASSETS_DIR",
    "BUNDLED_MODELS",
    "DEMO_CHECKPOINT",
    "NMNIST_CHECKPOINT",
    "bundled_checkpoint",
]
