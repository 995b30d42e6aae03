"""Checkpoint loading: official container layouts, safety, stem/head adaptation, refusal of mismatches."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from sdt3_event.models.pretrained import (
    CheckpointMismatchError,
    adapt_stem_weight,
    extract_state_dict,
    load_pretrained,
    read_checkpoint,
)
from sdt3_event.registry import create_model

LISTING = {
    "sdt3_2m": "v3_base_Efficient_Spiking_Transformer_t.txt",
    "sdt3_19m_hardvs": "v3_dvs_Efficient_Spiking_Transformer_scaling_8_19M.txt",
    "sdt3_5m_gesture": "v3_dvs_Efficient_Spiking_Transformer_scaling_2_8M_gesture.txt",
}
STEM = "downsample1_1.encode_conv.weight"


def synthetic_state_dict(listing: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the keys and shapes of an official listing."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for line in listing.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        if shape == "scalar":
            sd[key] = torch.tensor(100, dtype=torch.int64)
            continue
        dims = tuple(int(s) for s in shape.split("x"))
        value = torch.rand(dims, generator=g)
        sd[key] = value + 0.5 if key.endswith("running_var") else value - 0.5
    return sd


def official_args() -> argparse.Namespace:
    return argparse.Namespace(model="Efficient_Spiking_Transformer_scaling_8_19M", lr=1e-5, T=8)


def assert_loaded(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    for key, value in sd.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("sdt3_2m", "raw"),
        ("sdt3_2m", "model"),  # Base / Large util.misc.save_model
        ("sdt3_19m_hardvs", "model_ema_ddp"),  # DVS best.pth
        ("sdt3_5m_gesture", "state_dict_compiled"),
    ],
)
def test_official_layouts_load_strict(name, layout, sdt_keys_dir, tmp_path):
    sd = synthetic_state_dict(sdt_keys_dir / LISTING[name])
    if layout == "raw":
        obj, want = sd, sd
    elif layout == "model":  # Base/Large util.misc.save_model
        obj = {"model": sd, "optimizer": {}, "epoch": 3, "scaler": {}, "args": official_args()}
        want = sd
    elif layout == "model_ema_ddp":  # DVS best.pth: EMA deep-copies the DDP wrapper
        ema = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
        obj = {
            "model": sd,
            "model_ema": {f"module.{k}": v for k, v in ema.items()},
            "epoch": 7,
            "args": official_args(),
        }
        want = ema
    else:
        obj = {"state_dict": {f"_orig_mod.module.{k}": v for k, v in sd.items()}}
        want = sd
    path = tmp_path / "best.pth"
    torch.save(obj, path)
    model = create_model(name)
    report = load_pretrained(model, path, strict=True, use_ema=layout == "model_ema_ddp")
    assert report.exact and report.loaded == len(sd)
    assert_loaded(model, want)


def test_missing_num_batches_tracked_is_tolerated(sdt_keys_dir):
    sd = synthetic_state_dict(sdt_keys_dir / LISTING["sdt3_5m_gesture"])
    dropped = [k for k in sd if k.endswith("num_batches_tracked")]
    for k in dropped:
        del sd[k]
    model = create_model("sdt3_5m_gesture")
    report = load_pretrained(model, sd)
    assert sorted(report.filled) == sorted(dropped) and report.missing == []
    assert_loaded(model, sd)


def test_pretrained_argument_of_create_model(sdt_keys_dir, tmp_path):
    sd = synthetic_state_dict(sdt_keys_dir / LISTING["sdt3_5m_gesture"])
    path = tmp_path / "gesture.pth"
    torch.save({"model": sd, "args": official_args()}, path)
    model = create_model("Efficient_Spiking_Transformer_scaling_2_8M_gesture", pretrained=str(path))
    assert_loaded(model, sd)


class Payload:
    """A pickled class that is not allow-listed."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": Payload()}, path)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        read_checkpoint(path)


def test_missing_file_and_empty_container():
    with pytest.raises(FileNotFoundError):
        read_checkpoint("/nonexistent/ck.pth")
    with pytest.raises(CheckpointMismatchError, match="top-level keys"):
        extract_state_dict({"epoch": 1, "optimizer": {}})


def test_imagenet_to_events_adapts_stem_and_head():
    torch.manual_seed(0)
    small = dict(embed_dim=(8, 16, 32, 48), num_heads=4)
    rgb = create_model("sdt3_2m", **small)
    events = create_model("sdt3_2m", in_chans=2, num_classes=11, **small)
    head_before = events.head.weight.clone()
    report = load_pretrained(events, rgb.state_dict())
    assert list(report.adapted) == [STEM]
    assert report.reinitialized == ["head.weight", "head.bias"]
    assert report.missing == [] and report.unexpected == [] and not report.exact
    assert torch.equal(events.head.weight, head_before)
    # every other tensor is copied unchanged
    ours = events.state_dict()
    for k, v in rgb.state_dict().items():
        if k not in (STEM, "head.weight", "head.bias"):
            assert torch.equal(ours[k], v), k
    # the stem's response to a uniform input is preserved (BN statistics stay valid)
    conv_rgb, conv_ev = rgb.downsample1_1.encode_conv, events.downsample1_1.encode_conv
    u = 0.7
    with torch.no_grad():
        a = conv_rgb(torch.full((1, 3, 16, 16), u))
        b = conv_ev(torch.full((1, 2, 16, 16), u))
    torch.testing.assert_close(a, b)
    assert "mean over 3 input channels" in str(report)


def test_adapt_stem_weight_method():
    w = torch.arange(2 * 3, dtype=torch.float32).reshape(2, 3, 1, 1)  # means 1 and 4
    out = adapt_stem_weight(w, 2)
    assert out.shape == (2, 2, 1, 1)
    assert torch.equal(out[:, :, 0, 0], torch.tensor([[1.5, 1.5], [6.0, 6.0]]))
    assert torch.equal(out.sum(1), w.sum(1))


def test_adaptation_can_be_refused():
    rgb = create_model("sdt3_micro", in_chans=3)
    with pytest.raises(CheckpointMismatchError, match=STEM):
        load_pretrained(create_model("sdt3_micro"), rgb.state_dict(), adapt_stem=False)
    with pytest.raises(CheckpointMismatchError, match="head.weight"):
        load_pretrained(
            create_model("sdt3_micro", num_classes=4),
            create_model("sdt3_micro").state_dict(),
            reinit_head=False,
        )


def test_other_variant_is_refused_with_keys_and_shapes():
    src = create_model("sdt3_micro", embed_dim=(8, 16, 32, 48), num_heads=4)
    with pytest.raises(CheckpointMismatchError, match=r"checkpoint \(4, 2, 7, 7\) vs model \(8, 2"):
        load_pretrained(create_model("sdt3_micro"), src.state_dict())


def test_missing_and_unexpected_keys():
    model = create_model("sdt3_micro")
    sd = dict(model.state_dict())
    sd["extra.weight"] = torch.zeros(3)
    del sd["block3.0.layer_scale1"]
    with pytest.raises(CheckpointMismatchError, match="block3.0.layer_scale1") as err:
        load_pretrained(model, sd)
    assert "extra.weight" in str(err.value)
    report = load_pretrained(model, sd, strict=False)
    assert report.missing == ["block3.0.layer_scale1"] and report.unexpected == ["extra.weight"]


def test_kd_checkpoint_needs_kd_model():
    kd = create_model("sdt3_83m_kd", embed_dim=(16, 32, 64), depth=1, num_heads=4)
    plain = create_model("sdt3_83m", embed_dim=(16, 32, 64), depth=1, num_heads=4)
    with pytest.raises(CheckpointMismatchError, match="head_kd"):
        load_pretrained(plain, kd.state_dict())


def test_D_mismatch_is_refused(tmp_path):
    src = create_model("sdt3_micro")
    path = tmp_path / "micro_1x8.pth"
    torch.save({"model": src.state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match="D=8"):
        load_pretrained(create_model("sdt3_micro"), path)
    assert load_pretrained(create_model("sdt3_micro", D=8), path).exact
    own = {"model": src.state_dict(), "model_config": {**src.model_config, "D": 2}}
    with pytest.raises(CheckpointMismatchError, match="D=2"):
        load_pretrained(create_model("sdt3_micro"), own)


def test_loaded_model_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    src = create_model("sdt3_micro").eval()
    path = tmp_path / "ck.pth"
    torch.save({"model": src.state_dict(), "args": official_args()}, path)
    dst = create_model("sdt3_micro").eval()
    load_pretrained(dst, path)
    x = torch.rand(1, 2, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


@pytest.mark.slow
def test_mae_pretrained_listing_loads_strict(sdt_keys_dir):
    sd = synthetic_state_dict(sdt_keys_dir / "v3_large_spikmae_12_512.txt")
    model = create_model("spikmae_12_512")
    report = load_pretrained(model, {"model": sd, "args": official_args()})
    assert report.exact and report.loaded == len(sd)


def test_mae_checkpoint_initialises_classifier_encoder():
    small = dict(embed_dim=(16, 32, 64), depth=1, num_heads=4)
    mae = create_model("sdt3_mae_83m", **small, decoder_dim=32, decoder_depth=1, img_size=32)
    clf = create_model("sdt3_83m", **small, num_classes=5)
    with pytest.raises(CheckpointMismatchError, match="layer_scale1"):
        load_pretrained(clf, {"model": mae.state_dict()})
    report = load_pretrained(clf, {"model": mae.state_dict()}, strict=False)
    assert "decoder_embed.weight" in report.dropped and "norm.weight" in report.dropped
    assert sorted(report.missing) == sorted(
        ["block3.0.layer_scale1", "block3.0.layer_scale2", "head.weight", "head.bias"]
    )
    assert report.unexpected == []
    assert torch.equal(clf.block3[0].attn.q_conv[1].weight, mae.block3[0].attn.q_conv[1].weight)
