"""Typed config: YAML loading, dotted overrides, errors that name the key."""

from __future__ import annotations

import pytest

from sdt3_event.engine.config import (
    ConfigError,
    ExperimentConfig,
    load_config,
    save_config,
)


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides_coerce_types(tmp_path):
    p = _write(
        tmp_path,
        "name: x\nmodel: {name: sdt3_micro, kwargs: {D: 4}}\n"
        "data: {input_size: [32, 48], n_time_bins: 4}\noptim: {lr: 1e-3}\n",
    )
    cfg = load_config(
        p,
        [
            "train.epochs=3",
            "optim.betas=[0.9, 0.95]",
            "model.kwargs.T=2",
            "optim.clip_grad=null",
            "train.warmup_epochs=1",
        ],
    )
    assert cfg.data.input_size == (32, 48) and isinstance(cfg.data.input_size, tuple)
    assert cfg.optim.lr == pytest.approx(1e-3)  # "1e-3" is a YAML string; coerced to float
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.clip_grad is None
    assert cfg.train.epochs == 3 and cfg.train.warmup_epochs == 1.0
    assert cfg.model.kwargs == {"D": 4, "T": 2}


def test_amp_off_unquoted_is_off_not_a_type_error(tmp_path):
    """YAML 1.1 reads ``off`` as false; ``train.amp=off`` must still mean "off"."""
    p = _write(tmp_path, "train: {amp: off}\n")
    assert load_config(p).train.amp == "off"
    assert load_config(p, ["train.amp=bf16"]).train.amp == "bf16"
    assert load_config(p, ["train.amp=off"]).train.amp == "off"
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(p, ["train.amp=true"])


def test_unknown_key_names_key_and_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["optim.lrr=0.1"])
    msg = str(info.value)
    assert "'optim.lrr'" in msg and "did you mean 'optim.lr'" in msg and "optim.blr" in msg
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(_write(tmp_path, "trian: {epochs: 2}\n"))


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.epochs=two", "train.epochs must be an integer"),
        ("train.epochs=1.5", "train.epochs must be an integer"),
        ("data.input_size=[1, 2, 3]", "data.input_size must have 2 entries"),
        ("train.compile=yes please", "train.compile must be true or false"),
        ("optim.name=sgd", "optim.name must be one of"),
        ("train.ema_decay=1.5", "train.ema_decay must be in"),
        ("data.dataset=hardvs", "data.root is required"),
        ("epochs", "must look like key=value"),
        ("data.eval_split=val", "val_fraction > 0"),
        ("data.eval_split=holdout", "eval_split must be one of"),
        ("data.time_jitter_us=-1", "time_jitter_us"),
        ("data.scale_jitter=1.0", "scale_jitter in"),
        ("data.rotate_deg=-5", "rotate_deg must be"),
        ("data.elastic_alpha=-5", "elastic_alpha must be >= 0"),
        ("data.elastic_sigma=0", "elastic_sigma > 0"),
        ("data.split_seed=-1", "split_seed must be >= 0"),
    ],
)
def test_wrong_values_raise(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "a: [1, 2\n"))


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["data.sensor_size=[128, 128, 2]", "optim.lr=0.01"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(path)
    assert again == cfg and isinstance(again, ExperimentConfig)
