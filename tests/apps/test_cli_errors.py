"""User mistakes on the real command line: one or two lines naming the flag, a non-zero exit status,
no traceback (``--debug`` shows it). Each case runs ``sdt3-event`` in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdt3_event.assets import DEMO_CHECKPOINT
from sdt3_event.events import write_events
from sdt3_event.events.schema import make_events

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def cli(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sdt3_event.apps.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def assert_clear(proc, *needles, code=2) -> str:
    """The error is clear: exit status ``code``, no traceback, at most two lines from the
    ``error:`` line on, and every needle in stderr."""
    err = proc.stderr
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    first = next(i for i, line in enumerate(lines) if "error:" in line.lower())
    assert len(lines) - first <= 2, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def dense_events(n: int = 2000, w: int = 32, h: int = 24) -> np.ndarray:
    i = np.arange(n)
    return make_events(i, i % w, i % h, i % 2)


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


# -- models and checkpoints ----------------------------------------------------------------------


def test_unknown_model_name_lists_close_matches(tmp_path):
    proc = cli("train", "--set", "model.name=sdt3_mcro", "--print-config")
    assert_clear(proc, "model.name", "sdt3_micro", "sdt3-event models")


def test_checkpoint_of_another_variant_names_both_and_the_first_key(tmp_path):
    proc = cli(
        "train", "-c", "configs/synthetic_demo.yaml",
        "--set", f"model.pretrained={DEMO_CHECKPOINT}", "--set", "model.name=sdt3_2m",
        "--set", "data.train_samples=20", "--set", "data.test_samples=2",
        "--output-dir", tmp_path, "--name", "variant",
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    err = assert_clear(proc, "model.pretrained", "'sdt3_micro'", "'sdt3_2m'", "the first is")
    assert err.count(" vs model ") == 1  # one tensor named, not all of them
    assert not (tmp_path / "variant").exists()  # nothing half-written


@no_cuda
@pytest.mark.parametrize("command", ["live", "eval", "report"])
def test_missing_cuda_suggests_device_cpu(command):
    args = ["--json", "--max-windows", "1"] if command == "live" else ["demo"]
    assert_clear(cli(command, *args, "--device", "cuda"), "CUDA is not available", "--device cpu")


@no_cuda
def test_train_on_missing_cuda_suggests_set_device_cpu(tmp_path):
    proc = cli(
        "train", "--set", "device=cuda", "--set", "data.train_samples=20",
        "--set", "data.test_samples=2", "--output-dir", tmp_path,
    )  # fmt: skip
    assert_clear(proc, "CUDA is not available", "--set device=cpu")


def test_garbage_checkpoint_is_one_line_and_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint" * 8)
    assert_clear(cli("eval", bad), "bad.pt", "not a readable PyTorch file")
    proc = cli("eval", bad, "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_bare_state_dict_loads_with_arch(tmp_path):
    from sdt3_event import create_model

    bare = tmp_path / "bare.pt"
    torch.save(create_model("sdt3_micro").state_dict(), bare)
    assert_clear(cli("live", "--model", bare, "--json"), "--arch")
    proc = cli(
        "live", "--model", bare, "--arch", "sdt3_micro", "--window-us", "100000",
        "--speed", "0", "--max-windows", "1", "--json", "--predictions-only",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["type"] == "prediction"


def test_models_lists_parameter_counts():
    proc = cli("models", "sdt3_micro")
    assert proc.returncode == 0 and "574,803" in proc.stdout


# -- sources: one grammar, one set of flags ------------------------------------------------------


def test_evt2_without_geometry_names_the_sensor_flag_on_every_command(tmp_path):
    raw = tmp_path / "rec.raw"
    write_events(raw, dense_events())  # EVT 2.0 without geometry in its header
    assert_clear(cli("data", "info", raw), "--sensor WxH", "sensor=WxH", code=1)
    assert_clear(cli("serve", raw, "--port", "0"), "--sensor WxH")
    ok = cli("data", "info", f"file:{raw}?sensor=32x24")
    assert ok.returncode == 0 and "32x24" in ok.stdout, ok.stderr


def test_truncated_file_names_allow_truncated(tmp_path):
    whole = tmp_path / "whole.aedat4"
    write_events(whole, dense_events(), (32, 24, 2))
    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert_clear(cli("data", "info", cut), "--allow-truncated", code=1)
    assert cli("data", "info", cut, "--allow-truncated").returncode == 0


def test_a_flag_the_source_does_not_take_is_named():
    assert_clear(cli("live", "--source", "synthetic:", "--allow-truncated"), "--allow-truncated")


def test_bad_sensor_size_names_the_flag(tmp_path):
    assert_clear(cli("serve", tmp_path / "x.raw", "--sensor", "640"), "--sensor", "640x480")


def test_tcp_without_a_server_says_so_and_gives_up():
    port = free_port()
    proc = cli("live", "--source", f"tcp://127.0.0.1:{port}", "--retries", "1", "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"no server at 127.0.0.1:{port}" in proc.stderr and "sdt3-event serve" in proc.stderr
    assert "--reconnect" in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["state"] == "error"


def test_another_aspect_ratio_is_letterboxed_by_default(tmp_path):
    rec = tmp_path / "wide.npz"
    write_events(
        rec, make_events([0, 5, 900_000], [200, 3, 7], [100, 4, 9], [1, 0, 1]), (240, 180, 2)
    )
    proc = cli("live", "--source", f"file:{rec}?speed=0", "--json", "--predictions-only")
    assert proc.returncode == 0, proc.stderr
    assert "letterbox" in proc.stderr and "--sensor-map" in proc.stderr


# -- limits --------------------------------------------------------------------------------------


def test_a_window_longer_than_the_duration_is_warned_about():
    proc = cli("live", "--window-us", "100000000000", "--duration", "0.2", "--json", timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "--window-us" in proc.stderr and "no prediction" in proc.stderr


def test_almost_all_windows_dropped_is_warned_about(tmp_path):
    rec = tmp_path / "dense.npz"
    write_events(rec, dense_events(), (32, 24, 2))
    proc = cli(
        "live", "--source", f"file:{rec}?speed=0", "--window-us", "1", "--json",
        "--predictions-only", "--sensor-map", "resize", "--no-firing",
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "windows were dropped" in proc.stderr and "--lossless" in proc.stderr


# -- your own data, end to end --------------------------------------------------------------------


def _folder(root: Path, per_class: int, bad: bool = False) -> Path:
    for k, name in enumerate(("left", "right")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            ev = make_events(
                np.arange(50) * 1000,
                (np.arange(50) + 3 * k) % 16,
                np.arange(50) % 12,
                np.arange(50) % 2,
            )
            write_events(root / name / f"rec{i}.npz", ev, (16, 12, 2))
    if bad:
        (root / "left" / "rec_broken.npz").write_bytes(b"broken")
    return root


def _train_folder(tmp_path, root, *extra):
    return cli(
        "train", "--set", "data.dataset=folder", "--set", f"data.root={root}",
        "--set", "data.input_size=[16,16]", "--set", "data.n_time_bins=2",
        "--set", "data.batch_size=1", "--set", "train.epochs=1", "--set", "device=cpu",
        "--set", "train.warmup_epochs=0", "--output-dir", tmp_path / "runs", "--name", "own",
        "--no-progress", *extra, timeout=180,
    )  # fmt: skip


def test_small_folder_is_refused_up_front_then_trains(tmp_path):
    root = _folder(tmp_path / "data", per_class=2)
    assert_clear(_train_folder(tmp_path, root), "data.val_fraction", "evaluation split")
    assert not (tmp_path / "runs" / "own").exists()  # nothing half-written
    proc = _train_folder(tmp_path, root, "--set", "data.val_fraction=0.5")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "runs" / "own" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "end"
    assert (tmp_path / "runs" / "own" / "checkpoints" / "best.pt").is_file()


def test_a_failed_run_ends_with_a_failed_record_and_monitor_says_so(tmp_path):
    root = _folder(tmp_path / "data", per_class=3, bad=True)
    proc = _train_folder(tmp_path, root, "--set", "data.val_fraction=0.34")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "rec_broken.npz" in proc.stderr
    last = json.loads((tmp_path / "runs" / "own" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "failed" and "rec_broken.npz" in last["reason"]
    shown = cli("monitor", tmp_path / "runs" / "own", "--once")
    assert shown.returncode == 0 and "failed: " in shown.stdout and "running" not in shown.stdout


def test_eval_writes_beside_the_checkpoints_run(tmp_path):
    ckpt = tmp_path / "runs" / "demo_copy" / "checkpoints" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(DEMO_CHECKPOINT, ckpt)
    proc = cli("eval", ckpt, "--samples", "4", "--batch-size", "4", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "demo_copy" / "eval" / "best" / "eval.json").is_file()
    assert not (tmp_path / "runs" / "eval").exists()


def test_version_names_the_folder_the_package_runs_from(tmp_path):
    # install.sh compares this folder with its own to catch a stale sdt3-event on PATH
    import sdt3_event

    r = cli("--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = Path(sdt3_event.__file__).parent
    assert r.stdout.strip() == f"sdt3-event {sdt3_event.__version__} from {folder}"


@pytest.mark.parametrize("command", [("live", "--model", "nope"), ("eval", "nope.pt")])
def test_an_unknown_model_names_the_bundled_ones(command):
    r = cli(*command)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "checkpoint not found" in r.stderr and "not a bundled model: demo, nmnist" in r.stderr
