"""Packaging: datasets/ and apps/ install inside the package namespace, never as top-level names."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from testpaths import REPO


@pytest.mark.slow
def test_wheel_maps_datasets_and_apps_into_package(tmp_path):
    out = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("sdt3_event-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sdt3_event/datasets/__init__.py" in names
    assert "sdt3_event/apps/cli.py" in names
    assert "sdt3_event/apps/tui/monitor.tcss" in names  # the monitor's stylesheet
    assert not any(n.startswith(("datasets/", "apps/", "configs/")) for n in names)
    # Install it (non-editable) into a clean target and import from there, away from the repo.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import importlib.util, sys;"
        "import sdt3_event, sdt3_event.datasets, sdt3_event.apps.cli;"
        f"assert sdt3_event.__file__.startswith({str(target)!r}), sdt3_event.__file__;"
        "assert importlib.util.find_spec('datasets') is None or "
        "'sdt3' not in (importlib.util.find_spec('datasets').origin or '');"
        "print('ok')"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_cli_lists_every_subcommand():
    from sdt3_event.apps.cli import COMMANDS, build_parser

    parser = build_parser()
    help_text = parser.format_help()
    for name in COMMANDS:
        assert name in help_text
