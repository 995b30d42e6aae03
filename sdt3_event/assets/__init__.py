"""Files shipped inside the package.

``DEMO_CHECKPOINT``: the bundled demo model, ``sdt3_micro`` with integrate-and-fire neurons trained
on :class:`~sdt3_event.datasets.synthetic.SyntheticGestures` (128×128 sensor -> 64×64 input, T=8 over
a 500 ms window) from scratch by ``configs/synthetic_demo.yaml``. It is an ordinary
sdt3-event checkpoint (optimizer state stripped); load it with
:func:`sdt3_event.engine.checkpoint.load_model_from_checkpoint`. The live demo
(``sdt3-event`` with no arguments) runs it on the synthetic event stream, so a fresh install needs
no download.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEMO_CHECKPOINT = ASSETS_DIR / "demo_gestures.pt"

__all__ = ["ASSETS_DIR", "DEMO_CHECKPOINT"]
