"""Live inference stands below the training engine: nothing under ``sdt3_event.engine`` loads."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import importlib, json, pkgutil, sys
import sdt3_event.stream as stream
for info in pkgutil.walk_packages(stream.__path__, "sdt3_event.stream."):
    importlib.import_module(info.name)
import sdt3_event.apps.live
from sdt3_event.apps._model_args import checked_device
from sdt3_event.assets import DEMO_CHECKPOINT
from sdt3_event.checkpoint import load_model_from_checkpoint
from sdt3_event.runlog import MetricsFollower, TrainingProgress

checked_device("cpu")
load_model_from_checkpoint(DEMO_CHECKPOINT)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("sdt3_event"))))
"""


def test_live_path_never_imports_the_training_engine():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "sdt3_event.stream.pipeline" in loaded and "sdt3_event.checkpoint" in loaded
    engine = [m for m in loaded if m == "sdt3_event.engine" or m.startswith("sdt3_event.engine.")]
    assert engine == [], f"the live path imported the training engine: {engine}"
