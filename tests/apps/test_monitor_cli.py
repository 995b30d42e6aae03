"""The ``monitor`` subcommand: light import, argument checks, the dashboard entry point."""

from __future__ import annotations

import subprocess
import sys

from sdt3_event.apps.cli import build_parser, main


def test_monitor_module_imports_no_ui_libraries():
    # The CLI imports every subcommand module to build --help: the UI loads only inside run().
    code = (
        "import sys, sdt3_event.apps.monitor as m; "
        "bad = [n for n in ('textual', 'rich', 'cv2', 'matplotlib') if n in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_monitor_arguments_parse():
    args = build_parser().parse_args(["monitor", "runs/x", "--poll", "2"])
    assert (args.run, args.poll, args.source) == ("runs/x", 2.0, None)
    args = build_parser().parse_args(["monitor", "--source", "synthetic:", "--fps", "10"])
    assert (args.run, args.source, args.fps) == (None, "synthetic:", 10.0)


def test_monitor_rejects_a_missing_run_folder(tmp_path, capsys):
    assert main(["monitor", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_monitor_rejects_run_folder_with_source(tmp_path, capsys):
    assert main(["monitor", str(tmp_path), "--source", "synthetic:"]) == 2
    assert "not both" in capsys.readouterr().err


def test_monitor_rejects_non_positive_rates(tmp_path, capsys):
    assert main(["monitor", str(tmp_path), "--poll", "0"]) == 2
    assert "--poll must be > 0" in capsys.readouterr().err
    assert main(["monitor", "--fps", "-1"]) == 2
    assert "--fps must be > 0" in capsys.readouterr().err


def _write_run(folder):
    import json

    lines = [
        {"event": "start", "time": 100.0, "model": "sdt3_micro", "total_epochs": 2,
         "steps_per_epoch": 5},
        {"event": "step", "time": 101.0, "epoch": 0, "step": 1, "loss": 2.5, "lr": 1e-3,
         "samples_per_s": 2.4},
        {"event": "step", "time": 103.0, "epoch": 0, "step": 5, "loss": 2.0, "lr": 1e-3,
         "samples_per_s": 2.4},
        {"event": "eval", "time": 104.0, "epoch": 0, "step": 5, "loss": 1.9, "acc1": 40.0,
         "acc5": 90.0, "best_acc1": 40.0, "is_best": True},
    ]  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in lines) + "oops\n" + '{"event": "st'
    (folder / "metrics.jsonl").write_text(text)


def test_summary_of_a_run_when_stdout_is_not_a_terminal(tmp_path, capsys):
    _write_run(tmp_path)
    assert main(["monitor", str(tmp_path), "--once"]) == 0
    out = capsys.readouterr().out
    assert "model sdt3_micro, epoch 1/2, step 5/10 (50%)" in out
    assert "best acc1 40.00% at epoch 1" in out
    assert "last eval: acc1 40, acc5 90, loss 1.9" in out
    assert "train loss 2 at step 5, lr 0.001, 2.4 samples/s" in out
    assert "1 malformed line(s) skipped; last line 5: not JSON" in out
    assert "still being written" in out


def test_summary_without_metrics(tmp_path):
    from sdt3_event.apps.monitor import summarize_run

    assert "no metrics written yet" in summarize_run(tmp_path)


def test_live_view_needs_a_terminal(capsys):
    assert main(["monitor", "--source", "synthetic:"]) == 2  # pytest's stdout is not a tty
    assert "needs a terminal" in capsys.readouterr().err
