"""End to end: the real monitor in a real terminal (tmux), on the synthetic stream with a real model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from checkpoint_support import micro_contract, save_micro_checkpoint
from testpaths import REPO

pytestmark = pytest.mark.slow


def _checkpoint(tmp_path: Path) -> Path:
    """The bundled demo model; without it, a small random-weight V3 model with the same contract
    kind (the app path under test is the same: build_pipeline -> LivePipeline -> monitor)."""
    try:
        from sdt3_event.assets import DEMO_CHECKPOINT

        if Path(DEMO_CHECKPOINT).is_file():
            return Path(DEMO_CHECKPOINT)
    except ImportError:
        pass
    from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES

    contract = micro_contract((128, 128, 2), (64, 64), 100_000, SYNTHETIC_CLASSES)
    return save_micro_checkpoint(tmp_path / "micro.pt", contract)


class Tmux:
    """A private tmux server (its own socket), so the test never touches anyone else's sessions."""

    def __init__(self) -> None:
        self.socket = f"sdt3-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "mon")

    def wait_for(self, condition, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if condition(text):
                return text
            time.sleep(0.5)
        raise AssertionError(f"{what} did not happen within {timeout:.0f} s; screen:\n{text}")


def _predictions_shown(screen: str) -> int:
    for part in screen.split("predictions ")[1:]:
        head = part.split(" ", 1)[0]
        if head.isdigit():
            return int(head)
    return 0


@pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (apt-get install -y tmux) - the e2e terminal check needs it",
)
def test_monitor_runs_in_a_terminal_and_quits_on_its_key(tmp_path):
    ckpt = _checkpoint(tmp_path)
    rc_file = tmp_path / "rc"
    snaps = tmp_path / "snaps"
    # A new tmux pane may start at 80x24 and be resized a moment later: wait for the final size
    # so the app starts at it. COLUMNS/LINES (set under pytest) would override the pane's size.
    command = (
        'for i in $(seq 50); do [ "$(stty size)" = "36 120" ] && break; sleep 0.1; done; '
        f"cd {tmp_path} && PYTHONPATH={REPO} env -u COLUMNS -u LINES "
        f"{sys.executable} -m sdt3_event.apps.cli monitor "
        f"--source synthetic: --model {ckpt} --device cpu --snapshot-dir {snaps}; "
        f"echo $? > {rc_file}; sleep 60"
    )
    tmux = Tmux()
    tmux("new-session", "-d", "-s", "mon", "-x", "120", "-y", "36", command)
    try:
        screen = tmux.wait_for(
            lambda s: _predictions_shown(s) >= 3, 120, "three predictions on screen"
        )
        assert "● connected" in screen and "synthetic" in screen
        assert "▀" in screen  # the event view drew the window
        assert "▶ " in screen and "recent" in screen  # smoothed label and history
        tmux("send-keys", "-t", "mon", "s")
        tmux.wait_for(lambda s: "saved" in s, 30, "the snapshot notification")
        assert len(list(snaps.glob("*.png"))) == 1
        tmux("send-keys", "-t", "mon", "q")
        deadline = time.monotonic() + 30
        while not rc_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        after = tmux.screen()
        assert rc_file.exists(), f"the app did not exit after q; screen:\n{after}"
        assert rc_file.read_text().strip() == "0"
        assert "Traceback" not in after
    finally:
        tmux("kill-server")
