"""SDT-V3 models: exact parameter counts and keys, input conventions, gradients, registry."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from model_support import outputs_around_reset

from sdt3_event.layers.neurons import MultiSpike, TemporalIF
from sdt3_event.models.sdt_v3 import EfficientSpikeFormer, SpikMAE, sincos_pos_embed_2d
from sdt3_event.registry import create_model, list_models, resolve_name

# spec §1.1-§1.3 tables / sdt_keys/INDEX.md
V3_PARAMS = {
    "sdt3_2m": 2_702_048,
    "sdt3_5m": 5_105_608,
    "sdt3_10m": 10_023_112,
    "sdt3_19m": 18_987_504,
    "sdt3_19m_hardvs": 18_740_004,
    "sdt3_5m_gesture": 5_604_315,
    "sdt3_83m": 82_502_952,
    "sdt3_83m_kd": 83_015_952,
    "sdt3_171m": 170_971_714,
    "sdt3_171m_kd": 171_740_714,
    "sdt3_mae_83m": 85_614_656,
    "sdt3_mae_171m": 173_776_608,
}
ALIASES = {
    "Efficient_Spiking_Transformer_t": "sdt3_2m",
    "Efficient_Spiking_Transformer_s": "sdt3_5m",
    "Efficient_Spiking_Transformer_m": "sdt3_10m",
    "Efficient_Spiking_Transformer_l": "sdt3_19m",
    "Efficient_Spiking_Transformer_scaling_8_19M": "sdt3_19m_hardvs",
    "Efficient_Spiking_Transformer_scaling_2_8M_gesture": "sdt3_5m_gesture",
    "spikformer12_512": "sdt3_83m",
    "spikformer12_768": "sdt3_171m",
    "spikmae_12_512": "sdt3_mae_83m",
    "spikmae_12_768": "sdt3_mae_171m",
}
LISTINGS = {
    "sdt3_2m": "v3_base_Efficient_Spiking_Transformer_t.txt",
    "sdt3_5m": "v3_base_Efficient_Spiking_Transformer_s.txt",
    "sdt3_10m": "v3_base_Efficient_Spiking_Transformer_m.txt",
    "sdt3_19m": "v3_base_Efficient_Spiking_Transformer_l.txt",
    "sdt3_19m_hardvs": "v3_dvs_Efficient_Spiking_Transformer_scaling_8_19M.txt",
    "sdt3_5m_gesture": "v3_dvs_Efficient_Spiking_Transformer_scaling_2_8M_gesture.txt",
    "sdt3_83m_kd": "v3_large_spikformer12_512_kd.txt",
    "sdt3_171m_kd": "v3_large_spikformer12_768_kd.txt",
    "sdt3_mae_83m": "v3_large_spikmae_12_512.txt",
    "sdt3_mae_171m": "v3_large_spikmae_12_768.txt",
}
BIG = {n for n, p in V3_PARAMS.items() if p > 50_000_000}
CLASSIFIERS = [n for n in list_models("sdt3_*") if "mae" not in n]
# each family's layout at toy width (Base: no layer scale, norm 4; DVS: layer scales, norm 1; Large)
SMALL = {
    "sdt3_micro": {},
    "sdt3_2m": dict(embed_dim=(8, 16, 32, 48), num_heads=4),
    "sdt3_83m_kd": dict(embed_dim=(16, 32, 64), depth=2, num_heads=4),
}


def read_listing(path: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split("\t")
            shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small_input(model: torch.nn.Module, B: int = 2, T: int = 2, hw: int = 16) -> torch.Tensor:
    return torch.rand(B, T, model.in_chans, hw, hw)


def test_registry_lists_every_v3_model():
    assert set(V3_PARAMS) | {"sdt3_micro"} <= set(list_models("sdt3_*"))


def meta_model(name: str, **overrides) -> torch.nn.Module:
    """Build on the meta device: exact shapes and counts, no memory, no init cost."""
    with torch.device("meta"):
        return create_model(name, **overrides)


@pytest.mark.parametrize("name", sorted(V3_PARAMS))
def test_exact_parameter_count(name):
    assert n_params(meta_model(name)) == V3_PARAMS[name]


def test_micro_layout_is_stable():
    # not an official model: the bundled demo checkpoint relies on this exact layout
    assert n_params(meta_model("sdt3_micro")) == 574_803


def test_parameter_counts_match_index(sdt_keys_dir):
    index = (sdt_keys_dir / "INDEX.md").read_text()
    for name, listing in LISTINGS.items():
        row = next(line for line in index.splitlines() if line.startswith(f"| {listing} "))
        assert int(row.split("|")[3].strip().replace(",", "")) == V3_PARAMS[name], name


@pytest.mark.parametrize("name", sorted(LISTINGS))
def test_state_dict_matches_official_listing(name, sdt_keys_dir):
    ref = read_listing(sdt_keys_dir / LISTINGS[name])
    ours = {k: tuple(v.shape) for k, v in meta_model(name).state_dict().items()}
    assert ours == ref


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_official_names_are_aliases(alias):
    assert resolve_name(alias) == ALIASES[alias]


def test_kd_variant_alias_takes_kd_flag():
    assert not meta_model("spikformer12_512").kd
    assert meta_model("spikformer12_512", kd=True).kd


@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if n not in BIG])
def test_forward_shape_and_finite(name):
    model = create_model(name).eval()
    with torch.no_grad():
        y = model(small_input(model, B=2, T=1))
    assert y.shape == (2, model.num_classes)
    assert torch.isfinite(y).all()


@pytest.mark.slow
def test_large_forward_tiny():
    model = create_model("sdt3_83m_kd").eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
        out, out_kd = model.forward_heads(x)
    assert y.shape == (1, 1000) and torch.isfinite(y).all()
    torch.testing.assert_close(y, (out + out_kd) / 2)
    model.kd = False
    with torch.no_grad():
        assert torch.equal(model(x), out)  # the main head alone


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).train()
    # layer scales start at 1e-6: raise them so every branch carries a visible gradient
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "layer_scale" in n:
                p.fill_(0.5)
    model(small_input(model) * 4).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    nonzero = [n for n, p in model.named_parameters() if p.grad.any()]
    assert len(nonzero) > 0.8 * len(list(model.parameters()))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_no_state_leaks_between_calls(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    a, b, c = outputs_around_reset(model, small_input(model), small_input(model))
    assert torch.equal(a, b) and torch.equal(a, c)


def test_temporal_if_model_has_no_state_leak_and_uses_time():
    torch.manual_seed(0)
    # train mode: BatchNorm normalises with batch statistics, so the neurons actually fire
    model = create_model("sdt3_micro", neuron="temporal_if").train()
    assert all(isinstance(m, TemporalIF) for m in model.modules() if isinstance(m, MultiSpike))
    stateless = create_model("sdt3_micro").train()
    stateless.load_state_dict(model.state_dict())
    x = torch.rand(2, 4, 2, 16, 16)
    with torch.no_grad():
        a = model.forward_features(x)
        b = model.forward_features(x)
        d = stateless.forward_features(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, d)  # membrane carry-over over T changes the result


def test_static_image_equals_single_frame():
    torch.manual_seed(0)
    model = create_model("sdt3_2m", num_classes=7, **SMALL["sdt3_2m"]).eval()
    img = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(img), model(img.unsqueeze(1)))


def test_static_image_is_repeated_T_times():
    torch.manual_seed(0)
    model = create_model("sdt3_micro", T=3, in_chans=3, neuron="temporal_if").train()
    img = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(img), model(img.unsqueeze(1).expand(2, 3, 3, 16, 16)))


def test_time_is_not_folded_into_channels():
    torch.manual_seed(0)
    model = create_model("sdt3_micro").eval()
    x = torch.rand(2, 3, 2, 16, 16)
    with torch.no_grad():
        per_frame = torch.stack([model(x[:, t]) for t in range(3)]).mean(0)
        # BN in eval mode + stateless neurons: logits are the mean of the per-frame logits
        torch.testing.assert_close(model(x), per_frame, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape", [(2, 3, 32, 32), (2, 4, 3, 32, 32), (2, 32, 32), (1, 2, 2, 2, 32, 32)]
)
def test_wrong_input_shape_names_the_expected_one(shape):
    model = create_model("sdt3_micro")
    with pytest.raises(ValueError, match=r"\(B, T, 2, H, W\)"):
        model(torch.rand(*shape))


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="sdt3_19m"):
        create_model("sdt3_19n")


def test_unknown_override_names_valid_arguments():
    with pytest.raises(TypeError, match="num_classes"):
        create_model("sdt3_micro", n_classes=3)


def test_overrides_and_model_config():
    model = create_model("sdt3_19m_hardvs", num_classes=10, in_chans=4, T=3, D=8)
    conf = model.model_config
    assert (conf["num_classes"], conf["in_chans"], conf["T"], conf["D"]) == (10, 4, 3, 8)
    assert conf["norm"] == 1.0 and conf["rounding"] == "half_even" and conf["layer_scale"]
    assert model.head.out_features == 10
    assert model.downsample1_1.encode_conv.in_channels == 4
    neurons = [m for m in model.modules() if isinstance(m, MultiSpike)]
    assert neurons and all(m.D == 8 for m in neurons)
    assert model.pretrained_cfg["official_name"] == "Efficient_Spiking_Transformer_scaling_8_19M"
    assert model.pretrained_cfg["D"] == 8
    # the config rebuilds the same architecture
    rebuilt = EfficientSpikeFormer(**conf)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_family_neuron_conventions():
    base = create_model("sdt3_5m")
    large = create_model("sdt3_83m")
    assert (base.model_config["rounding"], base.model_config["inclusive"]) == ("half_even", True)
    assert (large.model_config["rounding"], large.model_config["inclusive"]) == ("half_up", False)
    assert base.spike.norm == 1.0 and base.block3[0].attn.q_spike.norm == 4.0
    assert large.lif.norm == 1.0


def test_embed_dim_and_depth_overrides():
    model = create_model("sdt3_micro", embed_dim=(8, 16, 32, 48), depths=(2, 0))
    assert len(model.block3) == 2 and len(model.block4) == 0
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 2, 2, 32, 32)).shape == (1, 11)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    clone = create_model(name, **SMALL[name]).eval()
    clone.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    x = small_input(model)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


def test_sincos_pos_embed_layout():
    emb = sincos_pos_embed_2d(16, 4)  # (16 positions, 16 dims)
    assert emb.shape == (16, 16)
    # first half depends on the column only, second half on the row only
    grid = emb.reshape(4, 4, 16)
    assert torch.equal(grid[0, :, :8], grid[3, :, :8])
    assert torch.equal(grid[:, 0, 8:], grid[:, 2, 8:])
    assert torch.equal(emb[0], torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1] * 2))


def tiny_mae() -> SpikMAE:
    """A one-block SpikMAE on 32x32 images (4 patches of 16x16), seeded."""
    torch.manual_seed(0)
    return SpikMAE(
        embed_dim=(16, 32, 64),
        depth=1,
        num_heads=4,
        decoder_dim=32,
        decoder_depth=1,
        img_size=32,
        patch_size=16,
    )


def test_mae_tiny_forward_and_backward():
    mae = tiny_mae()
    imgs = torch.rand(2, 3, 32, 32)
    loss, pred, mask = mae(imgs)
    assert pred.shape == (2, 4, 16 * 16 * 3) and mask.shape == (2, 4)
    assert mask.sum() == 2 * 2  # mask ratio 0.5 of 4 patches
    assert torch.isfinite(loss)
    loss.backward()
    assert mae.decoder_pred.weight.grad is not None
    assert mae.downsample1_1.encode_conv.weight.grad is not None
    feats = mae.forward_encoder(imgs)
    assert feats.shape == (2, 4, 64)
    with pytest.raises(ValueError, match="SpikMAE expects"):
        mae(torch.rand(2, 3, 64, 64))


def test_mae_patchify_round_trip():
    mae = meta_model("sdt3_mae_83m")
    imgs = torch.arange(2 * 3 * 224 * 224, dtype=torch.float32).reshape(2, 3, 224, 224)
    patches = mae.patchify(imgs)
    assert patches.shape == (2, 196, 768)
    # patch (0, 1) of image 0, pixel (0, 0), channel 2
    assert patches[0, 1, 2] == imgs[0, 2, 0, 16]


def test_sparse_batchnorm_dense_and_masked():
    from sdt3_event.layers.sdt3_large_blocks import PatchMask, SparseBatchNorm2d, SparseConv2d

    torch.manual_seed(0)
    holder = PatchMask()
    sbn = SparseBatchNorm2d(3, patch_mask=holder).train()
    ref = torch.nn.BatchNorm2d(3).train()
    x = torch.randn(4, 3, 4, 4)
    torch.testing.assert_close(sbn(x), ref(x))  # no mask: an ordinary 2-D batch norm
    holder.active = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 2, 2).repeat(2, 1, 1, 1)
    y = sbn(x)  # batch 4 = T 2 x B 2: the map repeats over time
    keep = holder.expand(4, 4, 4)[:, 0].bool()
    assert (y.permute(0, 2, 3, 1)[~keep] == 0).all()
    visible = x.permute(0, 2, 3, 1)[keep]  # (n, C)
    expected = (visible - visible.mean(0)) / torch.sqrt(visible.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(y.permute(0, 2, 3, 1)[keep], expected, rtol=1e-4, atol=1e-4)
    conv = SparseConv2d(3, 2, 3, padding=1, patch_mask=holder)
    assert (conv(x).permute(0, 2, 3, 1)[~keep] == 0).all()
    with pytest.raises(ValueError, match="does not tile"):
        holder.expand(4, 5, 5)


def test_mae_full_visibility_equals_dense_encoder():
    mae = tiny_mae().train()
    imgs = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        dense = mae.forward_encoder(imgs)
        visible = mae.forward_encoder(imgs, torch.zeros(2, 4))
        masked = mae.forward_encoder(imgs, torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0]]))
    torch.testing.assert_close(dense, visible)
    assert not torch.allclose(dense, masked)
    assert mae.patch_mask.active is None  # the mask never outlives the call


@pytest.mark.gpu
@pytest.mark.parametrize("neuron", ["quant", "temporal_if"])
def test_cuda_amp_forward_backward(neuron):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    backend = "auto" if neuron == "temporal_if" else "torch"
    model = create_model("sdt3_micro", neuron=neuron, backend=backend).cuda().train()
    ref = create_model("sdt3_micro", neuron=neuron).cuda().train()
    ref.load_state_dict(model.state_dict())
    x = torch.rand(4, 4, 2, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (4, 11) and torch.isfinite(y).all()
    y.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # fp32: the accelerated neuron backend gives the torch backend's logits
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref.eval()(x), rtol=1e-4, atol=1e-4)
