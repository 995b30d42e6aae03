"""The bundled N-MNIST model: small, self-describing, trained by the shipped recipe, and right on
the real recordings in ../shared/data/nmnist_small (spike-driven too, live in clip mode)."""

from __future__ import annotations

import pytest
import torch
from checkpoint_support import assert_trained_by
from sdt3_event.datasets.nmnist import NMNIST_CLASSES
from testpaths import REPO, SHARED

from sdt3_event.assets import NMNIST_CHECKPOINT, bundled_checkpoint
from sdt3_event.checkpoint import load_checkpoint, load_model_from_checkpoint
from sdt3_event.engine.config import load_config

NMNIST_SMALL = SHARED / "data" / "nmnist_small"
RECIPE = REPO / "configs" / "nmnist_sdt3_micro.yaml"
needs_data = pytest.mark.skipif(
    not NMNIST_SMALL.is_dir(), reason="../shared/data/nmnist_small is absent"
)


def test_nmnist_checkpoint_is_small_and_carries_its_data_contract():
    assert bundled_checkpoint("nmnist") == NMNIST_CHECKPOINT and NMNIST_CHECKPOINT.is_file()
    assert NMNIST_CHECKPOINT.stat().st_size < 10 * 2**20
    payload = load_checkpoint(NMNIST_CHECKPOINT)  # weights_only=True
    assert payload["optimizer"] is None and payload["model_name"] == "sdt3_micro"
    c = load_model_from_checkpoint(NMNIST_CHECKPOINT).contract
    assert c.sensor_size == (34, 34, 2) and c.input_size == (34, 34)
    assert c.class_names == NMNIST_CLASSES and c.window_us == 330_000
    assert c.frame_shape == (6, 2, 34, 34) and c.representation == "count"


def test_nmnist_checkpoint_was_trained_by_the_shipped_config():
    stored = assert_trained_by(NMNIST_CHECKPOINT, RECIPE)
    assert stored["data"]["val_fraction"] == 0.0 and stored["data"]["eval_split"] == "train"


def test_nmnist_weights_load_through_create_model():
    from sdt3_event import create_model

    loaded = load_model_from_checkpoint(NMNIST_CHECKPOINT)
    conf = loaded.model.model_config
    model = create_model("sdt3_micro", pretrained=str(NMNIST_CHECKPOINT), **conf).eval()
    x = torch.rand(2, *loaded.contract.frame_shape).mul(4).round()
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded.model(x))


@needs_data
def test_recipe_builds_the_validation_split_and_its_augmentations():
    from sdt3_event.engine.data import build_datasets
    from sdt3_event.events.transforms import EventDrop, SpatialJitter, TimeJitter

    cfg = load_config(
        RECIPE, [f"data.root={NMNIST_SMALL}", "data.val_fraction=0.2", "data.eval_split=val"]
    )
    train, val, contract = build_datasets(cfg.data)
    assert (len(train), len(val)) == (801, 199) and not set(train.data) & set(val.data)
    kinds = {type(a) for a in train.transform.augmentations}
    assert {SpatialJitter, TimeJitter, EventDrop} <= kinds and not val.transform.augmentations
    assert train[0][0].shape == contract.frame_shape


@needs_data
@pytest.mark.slow
def test_nmnist_model_spike_driven_equals_integer_on_real_recordings():
    from sdt3_event.datasets.nmnist import NMNIST

    from sdt3_event.events.transforms import build_frame_transform
    from sdt3_event.spikes import to_spike_driven

    loaded = load_model_from_checkpoint(NMNIST_CHECKPOINT)
    ds = NMNIST(NMNIST_SMALL, transform=build_frame_transform(loaded.contract))
    idx = range(0, 1000, 50)  # two recordings of every digit
    x = torch.stack([ds[i][0] for i in idx]).double()  # (20, T, P, H, W)
    labels = torch.tensor([ds.targets[i] for i in idx])
    model = loaded.model.double()
    with torch.no_grad():
        ref = model(x)
        out = to_spike_driven(model, x[:1])(x)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    assert (ref.argmax(1) == labels).float().mean() >= 0.9


class _Keep:
    """A sink that keeps the records."""

    def __init__(self) -> None:
        self.records: list = []

    def write(self, record) -> None:
        self.records.append(record)


@needs_data
@pytest.mark.slow
def test_nmnist_live_clip_names_the_digit_of_real_recordings():
    from sdt3_event.stream.pipeline import build_pipeline
    from sdt3_event.stream.records import Prediction
    from sdt3_event.stream.sinks import drain

    files = [sorted((NMNIST_SMALL / "Train" / str(d)).glob("*.bin"))[0] for d in (0, 3, 7)]
    for digit, path in zip((0, 3, 7), files, strict=True):
        pipeline = build_pipeline(
            f"file:{path}",
            "nmnist",
            clip=True,
            spike_driven=True,
            source_options={"speed": 0},
            drop_policy="block",
            device="cpu",
        )
        # whole windows keep their events: binned from the first event, not on the window grid
        assert pipeline.predictor.make_windower(330_000, 330_000) is None
        sink = _Keep()
        pipeline.start()
        try:
            drain(pipeline, [sink])
        finally:
            pipeline.stop()
        preds = [r for r in sink.records if isinstance(r, Prediction)]
        assert len(preds) == 1 and preds[0].n_events > 1000
        assert preds[0].labels[0] == NMNIST_CLASSES[digit], (path, preds[0].labels)


def _fake_official_layout(root, digits=range(10), per_class=2):
    import numpy as np

    from sdt3_event.events._nmnist import encode_nmnist
    from sdt3_event.events.schema import EVENT_DTYPE

    rng = np.random.default_rng(0)
    for d in digits:
        (root / "Test" / str(d)).mkdir(parents=True)
        for i in range(per_class):
            ev = np.zeros(500, EVENT_DTYPE)
            ev["t"] = np.sort(rng.integers(0, 300_000, 500))
            ev["x"], ev["y"] = rng.integers(0, 34, (2, 500))
            (root / "Test" / str(d) / f"{i + 1:05d}.bin").write_bytes(encode_nmnist(ev))
    return root


def test_split_seed_holds_out_other_recordings_and_eval_rebuilds_them(tmp_path):
    import shutil

    from sdt3_event.engine.data import build_datasets, build_eval_dataset

    root = _fake_official_layout(tmp_path / "NMNIST", per_class=5)
    shutil.move(root / "Test", root / "Train")
    held_out = {}
    for split_seed in (0, 1):
        sets = [f"data.root={root}", "data.val_fraction=0.4", "data.eval_split=val"]
        sets.append(f"data.split_seed={split_seed}")
        train, val, contract = build_datasets(load_config(RECIPE, sets).data)
        assert (len(train), len(val)) == (30, 20) and not set(train.data) & set(val.data)
        held_out[split_seed] = val.data
        again = build_eval_dataset(
            contract, "nmnist", str(root), split="val", val_fraction=0.4, split_seed=split_seed
        )
        assert again.data == val.data
    assert set(held_out[0]) != set(held_out[1])


def test_recorded_split_reads_a_run_config_and_defaults_for_older_checkpoints():
    from sdt3_event.engine.data import recorded_split

    run = {"seed": 7, "data": {"val_fraction": 0.2, "split_seed": 3}}
    assert recorded_split(run) == {"seed": 7, "val_fraction": 0.2, "split_seed": 3}
    assert recorded_split({"data": {"val_fraction": 0.2}})["split_seed"] == 0  # before the field
    assert recorded_split({}) == {"seed": 42, "val_fraction": 0.0, "split_seed": 0}


def test_eval_nmnist_on_an_official_folder_reports_per_class_and_confusion(tmp_path, capsys):
    import json

    from sdt3_event.apps.cli import main

    root = _fake_official_layout(tmp_path / "NMNIST")
    out = tmp_path / "out"
    assert main(["eval", "nmnist", "--data", str(root), "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nmnist/test (20 samples" in text and "9 - nine" in text and "top-1" in text
    record = json.loads((out / "eval.json").read_text())
    assert len(record["per_class_acc"]) == 10 and sum(map(sum, record["confusion"])) == 20
    assert (out / "confusion.png").stat().st_size > 0


def test_eval_nmnist_bad_folders_name_the_path(tmp_path, capsys):
    from sdt3_event.apps.cli import main

    assert (
        main(["eval", "nmnist", "--data", str(tmp_path), "--device", "cpu"]) == 2
    )  # a user mistake: exit status 2
    assert "NMNIST/Test not found" in capsys.readouterr().err
    root = _fake_official_layout(tmp_path / "n", digits=range(9))
    (root / "Test" / "9").mkdir()
    assert main(["eval", "nmnist", "--data", str(root), "--device", "cpu"]) == 2
    assert "Test/9: no .bin recordings for digit 9" in capsys.readouterr().err


def test_recipe_trains_on_an_official_layout_with_a_validation_split(tmp_path, capsys):
    import json
    import shutil

    from sdt3_event.apps.cli import main

    root = _fake_official_layout(tmp_path / "NMNIST", per_class=3)
    shutil.move(root / "Test", root / "Train")  # a training folder only, as in nmnist_small
    args = ["train", "-c", str(RECIPE), "--output-dir", str(tmp_path), "--name", "r"]
    sets = {
        "data.root": root,
        "data.val_fraction": 0.34,
        "data.split_seed": 3,
        "data.eval_split": "val",
        "data.batch_size": 10,
        "data.num_workers": 0,
        "train.epochs": 1,
        "train.warmup_epochs": 0,
    }
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    assert main([*args, "--no-progress"]) == 0
    evals = [
        json.loads(line)
        for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
        if '"eval"' in line
    ]
    assert len(evals) == 1 and 0 <= evals[0]["acc1"] <= 100
    ckpt = tmp_path / "r" / "checkpoints" / "last.pt"
    stored = load_checkpoint(ckpt)["config"]["data"]
    assert (stored["val_fraction"], stored["split_seed"]) == (0.34, 3)
    capsys.readouterr()
    assert (
        main(["eval", str(ckpt), "--split", "val", "--device", "cpu", "--out", str(tmp_path)]) == 0
    )
    assert "nmnist/val (10 samples" in capsys.readouterr().out


def test_eval_and_report_of_a_bundled_model_write_under_runs_not_into_the_package():
    from apps.evaluate import default_out
    from sdt3_event.assets import DEMO_CHECKPOINT

    assert default_out(NMNIST_CHECKPOINT, "report").parts == ("runs", "report", "nmnist")
    assert default_out(DEMO_CHECKPOINT, "eval").parts == ("runs", "eval", "demo")
    run = REPO / "runs" / "x" / "checkpoints" / "last.pt"
    assert default_out(run, "eval") == REPO / "runs" / "x" / "eval" / "last"


def test_eval_and_report_elsewhere_name_the_flag_that_points_at_the_data(
    tmp_path, monkeypatch, capsys
):
    from sdt3_event.apps.cli import main

    monkeypatch.chdir(tmp_path)  # the recipe's relative data root is not here
    for command in ("eval", "report"):
        assert main([command, "nmnist", "--device", "cpu"]) != 0
        err = capsys.readouterr().err
        assert "does not exist" in err and "`--data PATH` for eval and report" in err
        assert "Traceback" not in err
