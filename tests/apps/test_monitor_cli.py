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
