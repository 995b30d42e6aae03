"""``sdt3-event live`` in a subprocess: JSON lines when stdout is a pipe, clear errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from checkpoint_support import save_micro_checkpoint
from event_support import write_random_recording
from testpaths import REPO

from sdt3_event.events.contract import DataContract
from sdt3_event.events.schema import make_events

CLASSES = ("left", "right", "up")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _live(*args, timeout=180, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sdt3_event.apps.cli", "live", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        **kw,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    contract = DataContract((40, 32, 2), (32, 32), 2, window_us=20_000, class_names=CLASSES)
    return save_micro_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", contract)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "rec.npz"
    write_random_recording(path, 5_000, (40, 32, 2), seed=1, t_max=300_000)
    return path


def _live_here(capsys, *args):
    """Run ``sdt3-event live`` in this process (stdout captured, so not a terminal)."""
    from sdt3_event.apps.cli import main

    code = main(["live", "--device", "cpu", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _records(stdout: str):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_live_writes_json_lines_and_stops_after_max_windows(checkpoint, recording, tmp_path):
    out = tmp_path / "copy.jsonl"
    res = _live(
        "--source", f"file:{recording}", "--model", str(checkpoint), "--speed", "0", "--lossless",
        "--max-windows", "5", "--jsonl", str(out), "--device", "cpu",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    recs = _records(res.stdout)
    preds = [r for r in recs if r["type"] == "prediction"]
    assert len(preds) == 5
    assert all(p["labels"][0] in CLASSES and len(p["scores"]) == 3 for p in preds)
    assert recs[0]["type"] == "status" and recs[0]["model"] == "sdt3_micro"
    assert recs[-1]["type"] == "status" and recs[-1]["state"] == "finished"
    assert _records(out.read_text()) == recs


def test_live_predictions_only_lossless(checkpoint, recording, capsys):
    code, out, err = _live_here(
        capsys, "--source", f"file:{recording}?speed=0", "--model", str(checkpoint),
        "--predictions-only", "--lossless",
    )  # fmt: skip
    assert code == 0, err
    recs = _records(out)
    assert all(r["type"] == "prediction" for r in recs)
    # lossless replay: every 20 ms window on the 10 ms grid over 300 ms of events, none dropped
    starts = [r["window_start_us"] for r in recs]
    assert starts == list(range(0, starts[-1] + 1, 10_000)) and starts[-1] >= 270_000


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("rtsp://x", "valid sources"),
        ("file:/nonexistent/rec.aedat4", "no such recording"),
        ("synthetic:?speeed=3", "valid options"),
    ],
)
def test_live_bad_sources_exit_2_with_a_clear_message(checkpoint, source, message, capsys):
    code, out, err = _live_here(capsys, "--source", source, "--model", str(checkpoint))
    assert code == 2 and out == ""
    assert err.startswith("sdt3-event live: error:") and message in err


def test_live_sensor_mismatch_is_mapped_and_names_the_option(checkpoint, tmp_path, caplog, capsys):
    from sdt3_event.events.io import write_events

    path = tmp_path / "big.npz"
    write_events(path, make_events([0, 5], [200, 3], [100, 4], [1, 0]), (240, 180, 2))
    # by default another aspect ratio is letterboxed, and the log says so and how to choose
    code, _, _ = _live_here(capsys, "--source", f"file:{path}?speed=0", "--model", str(checkpoint))
    assert code == 0 and "letterbox" in caplog.text and "--sensor-map" in caplog.text
    code, out, err = _live_here(
        capsys, "--source", f"file:{path}?speed=0", "--model", str(checkpoint),
        "--sensor-map", "resize",
    )  # fmt: skip
    assert code == 0, err
    assert _records(out)[-1]["state"] == "finished"


def test_live_missing_checkpoint(tmp_path, capsys):
    code, _, err = _live_here(capsys, "--model", str(tmp_path / "none.pt"))
    assert code == 2 and "none.pt" in err


def test_live_rejects_bad_numbers(capsys):
    code, _, err = _live_here(capsys, "--max-windows", "0")
    assert code == 2 and "--max-windows" in err


def test_ctrl_c_stops_cleanly(checkpoint):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sdt3_event.apps.cli",
            "live",
            "--model",
            str(checkpoint),
            "--source",
            "synthetic:?sensor=40x32",
            "--device",
            "cpu",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    # wait for the first record, then interrupt
    first = proc.stdout.readline()
    assert json.loads(first)["type"] == "status"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    for line in out.splitlines():  # every line written is complete JSON
        json.loads(line)


class _InterruptedPipeline:
    """Stands in for the live pipeline: the first ``get()`` gets a Ctrl-C while inside it."""

    model_name, source_uri = "fake", "synthetic:"

    def __init__(self) -> None:
        self.calls = 0
        self.interrupted_inside = False
        self.stopped = False

    def start(self):
        return self

    def get(self, timeout=None):
        from sdt3_event.stream.records import StreamStatus

        self.calls += 1
        if self.calls == 1:
            try:  # the handler runs here, inside the pipeline's code
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                time.sleep(0.05)
            except KeyboardInterrupt:
                self.interrupted_inside = True
                raise
            return StreamStatus(state="connected", source=self.source_uri)
        assert self.calls < 100, "Ctrl-C did not stop the stream"
        return None

    @property
    def finished(self):
        return False

    def stop(self, timeout=5.0):
        self.stopped = True


def test_ctrl_c_is_never_raised_inside_the_pipeline(monkeypatch, capsys):
    """Ctrl-C asks the stream to stop; a KeyboardInterrupt raised inside the pipeline's locking
    code (the main thread waiting in get()) could corrupt the lock and hang the exit."""
    from sdt3_event.stream import pipeline as pipeline_module

    fake = _InterruptedPipeline()
    monkeypatch.setattr(pipeline_module, "build_pipeline", lambda *a, **k: fake)
    # the handlers the test runner started with (SIGINT is ignored in a background job)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    code, out, err = _live_here(capsys, "--model", "unused.pt")
    assert code == 130 and "Traceback" not in err
    assert not fake.interrupted_inside and fake.stopped
    assert [r["state"] for r in _records(out)] == ["connected"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_live_with_no_arguments_streams_the_demo(demo_checkpoint):
    res = _live("--max-windows", "5", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    preds = [r for r in _records(res.stdout) if r["type"] == "prediction"]
    assert len(preds) == 5
    assert all("true_label" in p for p in preds)
