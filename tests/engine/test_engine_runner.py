"""The training run: metrics.jsonl, checkpoints, exact resume, NaN detection, DDP on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine.engine_toy import toy_config, toy_datasets

from sdt3_event.checkpoint import load_checkpoint, load_model_from_checkpoint
from sdt3_event.engine.runner import fit
from sdt3_event.engine.train import NonFiniteLossError

HERE = Path(__file__).parent


def _lines(run_dir):
    return [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_fit_writes_run_folder_and_learns(tmp_path):
    res = fit(toy_config(tmp_path), datasets=toy_datasets())
    run = tmp_path / "toy"
    assert (run / "config.yaml").is_file()
    lines = _lines(run)
    events = [r["event"] for r in lines]
    assert events[0] == "start" and events[-1] == "end"
    assert lines[0]["model"] == "_engine_toy" and lines[0]["total_epochs"] == 3
    assert lines[0]["steps_per_epoch"] == 6
    steps = [r for r in lines if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 19))
    assert all({"epoch", "loss", "lr", "samples_per_s", "time"} <= set(r) for r in steps)
    evals = [r for r in lines if r["event"] == "eval"]
    assert len(evals) == 3 and all("acc5" in r and "best_acc1" in r for r in evals)
    assert evals[-1]["best_acc1"] == max(max(r["acc1"], r["ema_acc1"]) for r in evals)
    assert lines[-1]["best_acc1"] == res.best_acc1 >= 90.0
    # warm-up: the lr rises during epoch 0, then the cosine decays it
    lrs = [r["lr"] for r in steps]
    assert lrs[0] < lrs[5] and lrs[6] > lrs[-1]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and last["step"] == 18 and last["optimizer"] is not None
    assert last["data_contract"]["class_names"] == ["a", "b", "c"]
    loaded = load_model_from_checkpoint(run / "checkpoints" / "best.pt")
    assert loaded.model_name == "_engine_toy" and loaded.contract.n_time_bins == 2


def test_resume_continues_exactly(tmp_path):
    full = tmp_path / "full"
    fit(toy_config(full), datasets=toy_datasets())
    reference = [(r["step"], r["loss"]) for r in _lines(full / "toy") if r["event"] == "step"]

    part = tmp_path / "part"

    class Killed(Exception):
        pass

    def kill_mid_epoch(rec):
        if rec["event"] == "step" and rec["step"] == 9:  # epoch 1, step 3 of 6
            raise Killed

    with pytest.raises(Killed):
        fit(toy_config(part), datasets=toy_datasets(), on_event=kill_mid_epoch)
    assert load_checkpoint(part / "toy" / "checkpoints" / "last.pt")["epoch"] == 1
    fit(toy_config(part), datasets=toy_datasets(), resume=True)
    lines = _lines(part / "toy")
    starts = [i for i, r in enumerate(lines) if r["event"] == "start"]
    assert len(starts) == 2 and lines[starts[1]]["resumed"] is True
    resumed = [(r["step"], r["loss"]) for r in lines[starts[1] :] if r["event"] == "step"]
    assert resumed == reference[6:]  # bit-identical losses from epoch 1 on
    a = load_checkpoint(full / "toy" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(part / "toy" / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_without_checkpoint_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        fit(toy_config(tmp_path), datasets=toy_datasets(), resume=True)


def test_nan_loss_raises_clear_error(tmp_path):
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 0, step 0"):
        fit(toy_config(tmp_path), datasets=toy_datasets(nan=True))


def test_mixup_cutmix_and_lamb_run(tmp_path):
    cfg = toy_config(
        tmp_path,
        optim={"name": "lamb", "lr": 0.05},
        train={"epochs": 1, "warmup_epochs": 0, "mixup_alpha": 0.8, "cutmix_alpha": 1.0},
    )
    res = fit(cfg, datasets=toy_datasets())
    assert res.steps_done == 6 and res.last_metrics["train_loss"] > 0


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_single_process(tmp_path):
    """torchrun, 2 processes on gloo, batch 4 each == 1 process with batch 8 (no BN in the toy)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=0",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=localhost:0",
        str(HERE / "engine_ddp_worker.py"),
        str(tmp_path),
        "ddp",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = toy_config(tmp_path, name="single", data={"batch_size": 8}, train={"ema_decay": 0.0})
    fit(single, datasets=toy_datasets())
    a = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
    assert a["metrics"]["acc1"] == pytest.approx(b["metrics"]["acc1"])
    start = _lines(tmp_path / "ddp")[0]
    assert start["world_size"] == 2 and start["steps_per_epoch"] == 6


def test_stop_after_epochs_then_resume_matches_full_run(tmp_path):
    full = tmp_path / "full"
    fit(toy_config(full), datasets=toy_datasets())
    part = tmp_path / "part"
    res = fit(toy_config(part, train={"stop_after_epochs": 1}), datasets=toy_datasets())
    assert res.epochs_done == 1 and _lines(part / "toy")[-1]["status"] == "stopped"
    fit(toy_config(part), datasets=toy_datasets(), resume=True)
    assert _lines(part / "toy")[-1]["status"] == "finished"
    a = load_checkpoint(full / "toy" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(part / "toy" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fresh_run_into_existing_folder_is_refused(tmp_path):
    cfg = toy_config(tmp_path, train={"epochs": 1})
    fit(cfg, datasets=toy_datasets())
    with pytest.raises(FileExistsError, match="--resume"):
        fit(cfg, datasets=toy_datasets())
    fit(cfg, datasets=toy_datasets(), overwrite=True)
    assert [r["event"] for r in _lines(tmp_path / "toy")].count("start") == 1


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_resume_exact_with_random_event_augmentations(tmp_path, workers):
    """Synthetic events through the real transform (random translation / EventDrop) and, with
    workers, per-worker seeding: a killed and resumed run still repeats the losses exactly."""
    sections = dict(
        data={
            "dataset": "synthetic",
            "input_size": [4, 4],
            "n_time_bins": 2,
            "sensor_size": [32, 32, 2],
            "window_us": 100_000,
            "train_samples": 24,
            "test_samples": 8,
            "batch_size": 8,
            "num_workers": workers,
        },
        train={"epochs": 2, "ema_decay": 0.0},
    )

    def steps(run):
        return [(r["step"], r["loss"]) for r in _lines(run) if r["event"] == "step"]

    full = tmp_path / "full"
    fit(toy_config(full, **sections))
    part = tmp_path / "part"

    def kill(rec):
        if rec["event"] == "step" and rec["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(toy_config(part, **sections), on_event=kill)
    fit(toy_config(part, **sections), resume=True)
    assert steps(part / "toy")[5:] == steps(full / "toy")[3:]


def test_fit_and_evaluate_on_an_event_folder(tmp_path):
    """The real-data path: EventFolder files on disk (root/<split>/<class>/*.npz), the contract
    from the data set, evaluation of the checkpoint on the same folder."""
    import numpy as np
    from sdt3_event.datasets.synthetic import generate_gesture

    from sdt3_event.engine.evaluation import evaluate_checkpoint
    from sdt3_event.events.io import write_events

    root = tmp_path / "recordings"
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        for name in ("ring_expand", "swipe_right"):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                ev = generate_gesture(name, rng, (32, 32, 2), 100_000)
                write_events(root / split / name / f"{i}.npz", ev, (32, 32, 2))
    sections = dict(
        data={
            "dataset": "folder",
            "root": str(root),
            "sensor_size": [32, 32, 2],
            "input_size": [4, 4],
            "n_time_bins": 2,
            "batch_size": 4,
        },
        train={"epochs": 1, "warmup_epochs": 0},
    )
    fit(toy_config(tmp_path, **sections))
    ckpt = tmp_path / "toy" / "checkpoints" / "last.pt"
    payload = load_checkpoint(ckpt)
    assert payload["data_contract"]["class_names"] == ["ring_expand", "swipe_right"]
    metrics, loaded = evaluate_checkpoint(ckpt, root=str(root))
    assert metrics["n"] == 8 and metrics["dataset"] == "folder"
    assert loaded.contract.window_us is None


def test_resume_restores_the_data_sets_generator(tmp_path):
    """The checkpoint keeps the training data set's generator state; restoring it (into a
    differently seeded copy, as a fresh process would be) repeats the augmented samples."""
    import numpy as np
    from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticGestures

    from sdt3_event.engine.runner import _capture_rng, _restore_rng, seed_everything
    from sdt3_event.events.contract import DataContract
    from sdt3_event.events.transforms import build_frame_transform

    contract = DataContract(
        (32, 32, 2), (8, 8), 2, 50_000, "count", None, "resize", SYNTHETIC_CLASSES
    )
    ds = SyntheticGestures(
        "train",
        4,
        sensor_size=(32, 32, 2),
        duration_us=100_000,
        transform=build_frame_transform(contract, train=True),
    )
    data = torch.utils.data.Subset(ds, range(4))  # found through the wrapper
    seed_everything(3, data)
    ds[0]
    torch.save(_capture_rng(data), tmp_path / "rng.pt")
    expected = [ds[i][0] for i in range(4)]
    seed_everything(4, data)
    assert not all(torch.equal(ds[i][0], e) for i, e in enumerate(expected))
    _restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True), data)  # as checkpoints load
    assert all(torch.equal(ds[i][0], e) for i, e in enumerate(expected))
    assert isinstance(ds.rng, np.random.Generator)
