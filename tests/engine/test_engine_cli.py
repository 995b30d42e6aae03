"""The train / eval / report commands end to end, shipped configs, clear errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch
from sdt3_event.apps.cli import main
from testpaths import REPO

from sdt3_event.checkpoint import load_checkpoint
from sdt3_event.engine.config import load_config
from sdt3_event.engine.runner import build_experiment_model
from sdt3_event.registry import resolve_name

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path, ["data.root=/data"])
    resolve_name(cfg.model.name)
    if path.stem.startswith("finetune_"):
        assert cfg.model.pretrained and cfg.optim.name == "lamb"


def test_hardvs_config_is_the_official_recipe():
    cfg = load_config(REPO / "configs" / "hardvs_sdt3_19m.yaml", ["data.root=/data"])
    assert cfg.model.name == "sdt3_19m_hardvs" and cfg.optim.name == "adamw"
    assert cfg.train.warmup_epochs == 10 and cfg.train.epochs == 100
    assert cfg.train.label_smoothing == 0.1 and cfg.optim.clip_grad == 1.0
    assert cfg.train.ema_decay == 0.999 and cfg.data.n_time_bins == 8
    assert cfg.data.input_size == (224, 224)
    assert cfg.optim.blr * 72 / 256 == pytest.approx(1.125e-5)  # 3 GPUs x 24


def _train_args(tmp_path, *extra):
    return [
        "train",
        "-c",
        str(REPO / "configs" / "synthetic_demo.yaml"),  # needs no download or checkpoint
        "--output-dir",
        str(tmp_path),
        "--name",
        "cli",
        "--no-progress",
        "--set",
        "data.input_size=[32, 32]",
        "--set",
        "data.n_time_bins=2",
        "--set",
        "data.train_samples=16",
        "--set",
        "data.test_samples=8",
        "--set",
        "data.batch_size=8",
        "--set",
        "data.num_workers=0",
        "--set",
        "train.epochs=1",
        "--set",
        "train.warmup_epochs=0",
        *extra,
    ]


@pytest.mark.slow
def test_train_eval_report_chain(tmp_path, capsys):
    assert main(_train_args(tmp_path)) == 0
    run = tmp_path / "cli"
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    ckpt = run / "checkpoints" / "best.pt"
    payload = load_checkpoint(ckpt)
    assert payload["data_contract"]["input_size"] == [32, 32]
    assert payload["model_config"]["neuron"] == "temporal_if"
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                str(ckpt),
                "--data",
                "synthetic",
                "--samples",
                "8",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    record = json.loads((out / "eval.json").read_text())
    assert record["n"] == 8 and len(record["per_class_acc"]) == 10
    assert (out / "confusion.png").stat().st_size > 1000
    rep = tmp_path / "report"
    assert (
        main(
            [
                "report",
                str(ckpt),
                "--batches",
                "1",
                "--batch-size",
                "4",
                "--out",
                str(rep),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    report = json.loads((rep / "report.json").read_text())
    assert report["samples"] == 4 and report["sops"] > 0 and "4.6 pJ" in report["convention"]
    assert (rep / "report.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "top-1" in text and "energy per inference" in text


def test_config_typo_is_a_clear_error(tmp_path, capsys):
    assert main(_train_args(tmp_path, "--set", "optim.lrate=1")) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'optim.lrate'" in err and "optim.lr" in err


def test_missing_data_path_is_a_clear_error(tmp_path, capsys):
    args = _train_args(
        tmp_path, "--set", "data.dataset=dvs_gesture", "--set", f"data.root={tmp_path / 'nowhere'}"
    )
    assert main(args) == 2  # a user mistake: exit status 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_checkpoint_and_wrong_file_are_clear(tmp_path, capsys):
    # user mistakes exit with status 2
    assert main(["eval", str(tmp_path / "none.pt"), "--device", "cpu"]) == 2
    assert "not found" in capsys.readouterr().err
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    assert main(["report", str(bogus), "--device", "cpu"]) == 2
    assert "not an sdt3-event checkpoint" in capsys.readouterr().err
    assert main(["eval", str(bogus), "--data", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_resume_without_run_is_clear(tmp_path, capsys):
    assert main(_train_args(tmp_path, "--resume")) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_finetune_adapts_imagenet_stem(tmp_path):
    from sdt3_event.registry import create_model

    imagenet = create_model("sdt3_2m")  # 3 input channels, 1000 classes
    path = tmp_path / "imagenet.pth"
    torch.save({"model": imagenet.state_dict()}, path)
    cfg = load_config(None, ["model.name=sdt3_2m", f"model.pretrained={path}"])
    name, model, model_config = build_experiment_model(cfg, num_classes=10, in_chans=2)
    assert name == "sdt3_2m" and model_config["in_chans"] == 2
    stem = model.downsample1_1.encode_conv.weight
    expected = imagenet.downsample1_1.encode_conv.weight.mean(1, keepdim=True) * 3 / 2
    torch.testing.assert_close(stem, expected.expand_as(stem))
    torch.testing.assert_close(
        model.block4[0].attn.q_conv[0].weight, imagenet.block4[0].attn.q_conv[0].weight
    )
    assert model.head.out_features == 10
    missing = load_config(None, ["model.pretrained=/nope/10M.pth"])
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        build_experiment_model(missing, 10, 2)


def test_report_on_model_without_neurons_is_clear(tmp_path):
    from sdt3_event.spikes import estimate_energy

    with pytest.raises(ValueError, match="no MultiSpike neurons"):
        estimate_energy(
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), [torch.zeros(1, 4)]
        )


@pytest.mark.parametrize("module", ["train", "evaluate", "report", "weights"])
def test_cli_modules_import_light(module):
    """No torch / matplotlib / numpy / yaml / tqdm import at module level (only inside run())."""
    import ast

    tree = ast.parse((REPO / "apps" / f"{module}.py").read_text())
    top = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            top += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.append(node.module.split(".")[0])
    assert not set(top) & {"torch", "matplotlib", "numpy", "textual", "yaml", "tqdm", "sdt3_event"}


def test_train_under_torchrun_leaves_without_interpreter_teardown(monkeypatch, capsys):
    """Under a launcher the command exits through exit_process (gloo can abort at teardown)."""
    import sdt3_event.engine.distributed as distributed

    codes = []

    def fake_exit(code):
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(distributed.os, "_exit", fake_exit)
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["train", "-c", str(REPO / "configs" / "synthetic_demo.yaml"), "--print-config"]
    with pytest.raises(SystemExit):
        main(args)
    assert codes == [0] and "model:" in capsys.readouterr().out
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(args) == 0 and codes == [0]
