"""SDT-V1 and Meta-SpikeFormer (V2): LIF neuron, exact parameter counts and keys, forward, gradients."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_support import outputs_around_reset

from sdt3_event.layers import lif as lif_mod
from sdt3_event.layers.attention import set_attention_order
from sdt3_event.layers.lif import MultiStepLIF, check_lif_backend, set_lif_backend
from sdt3_event.models.sdt_v2 import BNAndPad, MetaSpikeFormer
from sdt3_event.registry import create_model, list_models

# --- reference numbers (spec §6.1 / §6.2 tables) --------------------------------------------------

V1_PARAMS = {
    "sdt1_8_384": 16_816_536,
    "sdt1_6_512": 23_373_736,
    "sdt1_8_512": 29_689_896,
    "sdt1_10_512": 36_006_056,
    "sdt1_8_768": 66_339_144,
    "sdt1_2_256_cifar10": 2_567_082,
    "sdt1_2_512_cifar10": 10_233_546,
    "sdt1_2_256_gesture": 2_567_051,
    "sdt1_2_256_cifar10dvs": 2_566_794,  # the CIFAR-10 2-256 model with a 2-channel stem
}
V2_PARAMS = {  # (kd=False, kd=True)
    "sdt2_31m": (31_333_864, 31_814_864),
    "sdt2_55m": (55_350_248, 55_991_248),
    "sdt2_124m": (123_741_160, 124_702_160),
}
LISTINGS = {
    "v1_sdt_2_256_gesture.txt": "sdt_2_256_gesture",
    "v1_sdt_8_384_imagenet.txt": "sdt_8_384_imagenet",
    "v1_sdt_8_512_imagenet.txt": "sdt_8_512_imagenet",
    "v1_sdt_8_768_imagenet.txt": "sdt_8_768_imagenet",
    "v2_metaspikformer_8_384.txt": "metaspikformer_8_384",
    "v2_metaspikformer_8_512.txt": "metaspikformer_8_512",
    "v2_metaspikformer_8_768.txt": "metaspikformer_8_768",
}
TINY_V2 = {"embed_dim": (16, 32, 64, 80), "num_heads": 2, "num_classes": 5, "in_chans": 2, "T": 2}


def _read_listing(path: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- LIF neuron ----------------------------------------------------------------------------------

# Hand-computed: h = v + (x - v) / 2, spike when h >= threshold, then v = 0; otherwise v = h.
# threshold 1.0: h = .25, .875, .9375, 1.96875 (fire), 1.0 (fire: exactly at threshold), .25
# threshold 0.5: h = .25, .875 (fire), .5 (fire), 1.5 (fire), 1.0 (fire), .25
LIF_X = [0.5, 1.5, 1.0, 3.0, 2.0, 0.5]
LIF_EXPECTED = {1.0: [0, 0, 0, 1, 1, 0], 0.5: [0, 1, 1, 1, 1, 0]}


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_lif_hand_computed_sequence(backend, threshold):
    x = torch.tensor(LIF_X).view(-1, 1, 1)  # (T, B, C)
    s = MultiStepLIF(threshold, backend=backend)(x)
    assert s.shape == x.shape and s.dtype == x.dtype
    assert s.flatten().tolist() == LIF_EXPECTED[threshold]


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_lif_surrogate_gradient_is_sigmoid_alpha_4(backend):
    # One step from v = 0: h = x / tau, ds/dx = 4 sig(4 (h - th)) (1 - sig(4 (h - th))) / tau.
    x = torch.tensor([[0.3, 1.0, 2.2, -1.0]], requires_grad=True)  # (T=1, 4)
    MultiStepLIF(1.0, backend=backend)(x).sum().backward()
    u = x.detach() / 2.0 - 1.0
    sig = torch.sigmoid(4.0 * u)
    torch.testing.assert_close(x.grad, 4.0 * sig * (1 - sig) / 2.0)


def test_lif_reset_is_detached_and_backends_agree():
    # Gradient flowing through time with a detached hard reset: both implementations must agree.
    g = torch.Generator().manual_seed(0)
    # Inputs on a 1/64 grid keep every membrane value exact in float32, so the two implementations
    # cannot disagree on a spike through rounding order alone.
    x = (torch.round(torch.randn(6, 3, 8, generator=g) * 96) / 64).requires_grad_()
    w = torch.randn(6, 3, 8, generator=g)
    outs = {}
    for backend in ("auto", "torch"):
        s = MultiStepLIF(0.5, backend=backend)(x)
        (grad,) = torch.autograd.grad((s * w).sum(), x)
        outs[backend] = (s, grad)
    assert torch.equal(outs["auto"][0], outs["torch"][0])
    assert outs["auto"][0].sum() > 0  # some spikes, so the reset path is exercised
    torch.testing.assert_close(outs["auto"][1], outs["torch"][1], rtol=1e-5, atol=1e-5)


def test_lif_starts_from_rest_on_every_call():
    lif = MultiStepLIF()
    a = torch.full((3, 2), 0.9)
    first = lif(a)
    second = lif(a)
    assert torch.equal(first, second)
    # A sequence with a large input leaves no residual membrane for the next call.
    lif(torch.full((2, 2), 0.99))
    assert torch.equal(lif(a), first)


def test_lif_backend_validation(monkeypatch):
    assert check_lif_backend("torch") == "torch"
    with pytest.raises(ValueError, match="choose one of"):
        MultiStepLIF(backend="fast")
    with pytest.raises(ValueError, match="cupy"):
        MultiStepLIF(backend="cupy")
    with pytest.raises(ValueError, match="time-major"):
        MultiStepLIF()(torch.ones(3))
    # Pin the process-wide SpikingJelly selection so constructing a CUDA-backend neuron changes nothing.
    monkeypatch.setenv(lif_mod._SJ_ENV, "triton")
    neuron = MultiStepLIF(backend="triton")
    with pytest.raises(RuntimeError, match="CUDA tensors only"):
        neuron(torch.ones(2, 3))
    with pytest.raises(ValueError, match="conflicts with"):
        MultiStepLIF(backend="cuda")


def test_set_lif_backend_switches_every_neuron():
    model = create_model("sdt1_2_256_cifar10")
    set_lif_backend(model, "torch")
    neurons = [m for m in model.modules() if isinstance(m, MultiStepLIF)]
    assert len(neurons) == 4 + 2 * 7 + 1  # stem 4, per block 5 attention + 2 MLP, head 1
    assert all(n.backend == "torch" for n in neurons)
    assert model.model_config["backend"] == "torch"


# --- registry, parameter counts, keys --------------------------------------------------------------


def test_registry_names_and_aliases():
    assert set(V1_PARAMS) <= set(list_models("sdt1_*"))
    assert set(V2_PARAMS) <= set(list_models("sdt2_*"))
    aliases = set(list_models(include_aliases=True))
    assert set(LISTINGS.values()) <= aliases
    assert {"sdt_6_512_imagenet", "sdt_10_512_imagenet", "sdt_2_256_cifar10"} <= aliases


@pytest.mark.parametrize("name", sorted(V1_PARAMS))
def test_v1_exact_parameter_count(name):
    with torch.device("meta"):
        model = create_model(name)
    assert _n_params(model) == V1_PARAMS[name]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.endswith("attn.talking_heads.weight") for n in frozen)


@pytest.mark.parametrize("name", sorted(V2_PARAMS))
@pytest.mark.parametrize("kd", [False, True])
def test_v2_exact_parameter_count(name, kd):
    with torch.device("meta"):
        model = create_model(name, kd=kd)
    assert _n_params(model) == V2_PARAMS[name][int(kd)]
    assert model.model_config["kd"] is kd


@pytest.mark.parametrize("listing", sorted(LISTINGS))
def test_state_dict_matches_official_listing(sdt_keys_dir, listing):
    expected = _read_listing(sdt_keys_dir / listing)
    with torch.device("meta"):
        model = create_model(LISTINGS[listing])
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(got) - set(expected)) == []
    assert sorted(set(expected) - set(got)) == []
    assert {k: s for k, s in got.items() if expected[k] != s} == {}


def _synthetic_checkpoint(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A checkpoint with the listing's keys and shapes; each tensor holds a value unique to its key."""
    state = {}
    for i, (key, shape) in enumerate(shapes.items()):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(i)
        else:
            state[key] = torch.full(shape, 0.5 + i / len(shapes))
    return state


@pytest.mark.parametrize(
    "listing, name",
    [
        ("v1_sdt_2_256_gesture.txt", "sdt1_2_256_gesture"),
        ("v2_metaspikformer_8_384.txt", "sdt2_31m"),
    ],
)
def test_strict_load_of_synthetic_official_checkpoint(sdt_keys_dir, listing, name):
    state = _synthetic_checkpoint(_read_listing(sdt_keys_dir / listing))
    if name.startswith("sdt1"):
        model = create_model(name)
        model.load_state_dict(state, strict=True)
    else:  # 31M parameters: keys and shapes are checked on the meta device, the tensors taken over
        with torch.device("meta"):
            model = create_model(name)
        model.load_state_dict(state, strict=True, assign=True)
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # A checkpoint with another class count is refused and the message names the key.
    with torch.device("meta"):
        other = create_model(name, num_classes=7)
    with pytest.raises(RuntimeError, match="head.weight"):
        other.load_state_dict(state, strict=True, assign=True)


def test_load_pretrained_official_container_and_event_adaptation(tmp_path):
    import argparse

    from sdt3_event.models.pretrained import load_pretrained

    torch.manual_seed(0)
    # An ImageNet-style (3-channel) V1 checkpoint in the official container, saved through DDP.
    source = create_model("sdt1_2_256_cifar10")
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "sdt_2_256_cifar10.pth"
    torch.save({"model": state, "epoch": 3, "args": argparse.Namespace(model="sdt")}, path)

    same = create_model("sdt1_2_256_cifar10")
    report = load_pretrained(same, path)
    assert report.exact and report.container == "model"
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(same.eval()(x), source.eval()(x))

    events = create_model("sdt1_2_256_cifar10", in_chans=2, num_classes=4)
    report = load_pretrained(events, path)
    assert list(report.adapted) == ["patch_embed.proj_conv.weight"]
    assert sorted(report.reinitialized) == ["head.bias", "head.weight"]
    stem = source.patch_embed.proj_conv.weight
    expected = stem.mean(1, keepdim=True).expand(-1, 2, -1, -1) * 1.5
    torch.testing.assert_close(events.patch_embed.proj_conv.weight, expected)
    torch.testing.assert_close(
        events.block[0].mlp.fc1_conv.weight, source.block[0].mlp.fc1_conv.weight
    )


def test_load_pretrained_refuses_another_v2_variant():
    from sdt3_event.models.pretrained import CheckpointMismatchError, load_pretrained

    small = create_model("sdt2_31m", **TINY_V2).state_dict()
    other = create_model("sdt2_31m", **{**TINY_V2, "embed_dim": (16, 32, 64, 96)})
    with pytest.raises(CheckpointMismatchError, match="downsample4.encode_conv.weight"):
        load_pretrained(other, small)


# --- forward, shapes, gradients, state -----------------------------------------------------------


TINY = {  # label: (name, overrides, input shape)
    "v1_gesture": ("sdt1_2_256_gesture", {"T": 2}, (2, 2, 2, 64, 64)),
    "v1_cifar": ("sdt1_2_256_cifar10", {"T": 2}, (2, 3, 32, 32)),
    "v2_tiny": ("sdt2_31m", TINY_V2, (2, 2, 2, 32, 32)),
}


def _tiny(label: str):
    name, overrides, shape = TINY[label]
    return create_model(name, **overrides), shape


@pytest.mark.parametrize("label", sorted(TINY))
def test_forward_shapes_and_finite(label):
    torch.manual_seed(0)
    model, shape = _tiny(label)
    model.eval()
    x = (torch.rand(shape) < 0.3).float()
    with torch.no_grad():
        y = model(x)
        per_step = model(x, return_per_step=True)
    n_cls = model.num_classes
    assert y.shape == (shape[0], n_cls)
    assert torch.isfinite(y).all()
    T = shape[1] if len(shape) == 5 else model.T
    assert per_step.shape == (shape[0], T, n_cls)
    torch.testing.assert_close(per_step.mean(1), y)


@pytest.mark.parametrize("label", ["v1_gesture", "v2_tiny"])
def test_non_square_odd_sensor_sizes(label):
    # Event sensors are rarely square or powers of two (DAVIS346: 346x260).
    model, _ = _tiny(label)
    with torch.no_grad():
        y = model.eval()(torch.rand(1, 2, 2, 45, 61))
    assert y.shape == (1, model.num_classes) and torch.isfinite(y).all()


def test_event_and_image_input_agree_when_frames_repeat():
    torch.manual_seed(0)
    model = create_model("sdt1_2_256_cifar10", T=2).eval()
    img = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        from_image = model(img)
        from_frames = model(img.unsqueeze(1).repeat(1, 2, 1, 1, 1))  # (B, T, C, H, W)
    torch.testing.assert_close(from_image, from_frames)


def test_no_state_leak_between_calls():
    torch.manual_seed(0)
    model = create_model("sdt1_2_256_gesture", T=2).eval()
    a = (torch.rand(2, 2, 2, 32, 32) < 0.5).float()
    b = (torch.rand(2, 2, 2, 32, 32) < 0.5).float() * 3
    first, again, after_reset = outputs_around_reset(model, a, b)
    assert torch.equal(first, again)
    assert torch.equal(first, after_reset)


@pytest.mark.parametrize("label", ["v1_gesture", "v2_tiny"])
def test_gradients_reach_every_trainable_parameter(label):
    torch.manual_seed(0)
    model, shape = _tiny(label)
    model.train()
    # Freshly initialised BNs give ~3% firing, so the tiny V2's attention neuron (threshold 0.5 on
    # 4 tokens) never fires and its output projection gets an exact-zero gradient. Larger BN gains
    # make every neuron fire, so that a zero gradient below means broken wiring.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.fill_(3.0)
    x = torch.rand(shape) * 2
    loss = F.cross_entropy(model(x), torch.arange(shape[0]) % model.num_classes)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert bad == []
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.any()]
    assert zero == []


@pytest.mark.parametrize(
    "name, bad_shape, expected",
    [
        ("sdt1_2_256_gesture", (1, 4, 3, 32, 32), r"\(B, T, 2, H, W\)"),
        ("sdt1_2_256_gesture", (1, 3, 32, 32), r"\(B, 2, H, W\)"),
        ("sdt1_2_256_cifar10", (3, 32, 32), r"\(B, 3, H, W\)"),
    ],
)
def test_wrong_input_shape_names_expected_shape(name, bad_shape, expected):
    model = create_model(name, T=1)
    with pytest.raises(ValueError, match=expected):
        model(torch.zeros(bad_shape))


def test_v2_wrong_input_shape_names_expected_shape():
    model = create_model("sdt2_31m", **TINY_V2)
    with pytest.raises(ValueError, match=r"\(B, T, 2, H, W\)"):
        model(torch.zeros(1, 2, 3, 32, 32))


def test_create_model_overrides_and_config_round_trip():
    model = create_model("sdt_2_256_gesture", num_classes=4, in_chans=3, T=3)
    assert model.head.out_features == 4
    assert model.patch_embed.proj_conv.in_channels == 3
    assert model.T == 3
    cfg = model.model_config
    assert (cfg["num_classes"], cfg["in_chans"], cfg["T"]) == (4, 3, 3)
    rebuilt = type(model)(**cfg)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    with pytest.raises(ValueError, match="choose one of"):
        create_model("sdt1_2_256_cifar10", backend="gpu")
    v2 = create_model("metaspikformer_8_384", **TINY_V2)
    assert isinstance(v2, MetaSpikeFormer) and v2.model_config["T"] == 2


@pytest.mark.parametrize("name", sorted(V1_PARAMS) + sorted(V2_PARAMS))
def test_pretrained_cfg_points_at_stem_and_classifier(name):
    with torch.device("meta"):
        model = create_model(name, in_chans=2)
    cfg = model.pretrained_cfg
    modules = dict(model.named_modules())
    assert isinstance(modules[cfg["first_conv"]], torch.nn.Conv2d)
    assert modules[cfg["first_conv"]].in_channels == 2 == cfg["input_size"][0]
    assert isinstance(modules[cfg["classifier"][0]], torch.nn.Linear)
    assert cfg["architecture"] == name and cfg["num_classes"] == model.num_classes
    with pytest.raises(TypeError, match="valid arguments"):
        create_model(name, no_such_argument=1)


def test_v2_kd_forward_is_mean_of_heads():
    torch.manual_seed(0)
    model = create_model("sdt2_31m", kd=True, **TINY_V2).eval()
    with torch.no_grad():
        model.head_kd.bias.fill_(1.0)  # the heads differ even if no feature neuron fires
    x = torch.rand(2, 2, 2, 32, 32)
    with torch.no_grad():
        head, head_kd = model.forward_heads(x)  # (T, B, classes) each
        y = model(x)
    assert head.shape == head_kd.shape == (2, 2, 5)
    torch.testing.assert_close(y, ((head + head_kd) / 2).mean(0))
    assert not torch.allclose(head, head_kd)


# --- V2 building blocks --------------------------------------------------------------------------


def test_bn_and_pad_equals_bn_of_zero_padded_input_in_eval():
    # The border holds BN(0), so in eval mode BNAndPad(x) == BN(pad(x, 0)): the re-parameterisable form.
    torch.manual_seed(0)
    layer = BNAndPad(4, pad=1)
    with torch.no_grad():
        layer.bn.weight.uniform_(0.5, 2)
        layer.bn.bias.normal_()
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(0.5, 2)
    layer.eval()
    x = torch.randn(2, 4, 5, 6)
    out = layer(x)
    assert out.shape == (2, 4, 7, 8)
    torch.testing.assert_close(out, layer.bn(F.pad(x, [1, 1, 1, 1])))


def test_v2_attention_linear_order_equals_official_order():
    torch.manual_seed(0)
    model = create_model("sdt2_31m", **TINY_V2).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.fill_(3.0)  # make the attention neurons fire
    x = torch.rand(2, 2, 2, 32, 32)
    with torch.no_grad():
        linear = model(x)
        assert set_attention_order(model, "quadratic") == 8
        quadratic = model(x)
    torch.testing.assert_close(linear, quadratic)


def test_v1_attention_is_the_mask_form():
    # Y = Q ⊙ LIF_0.5(Σ_N K ⊙ V): with T=1 the LIF fires where the head-wise sum / 2 >= 0.5.
    from sdt3_event.models.sdt_v1 import SpikeDrivenSelfAttention

    torch.manual_seed(0)
    attn = SpikeDrivenSelfAttention(dim=8, num_heads=2, backend="torch").eval()
    x = torch.randn(1, 1, 8, 3, 3) * 3  # (T, B, C, H, W)
    captured = {}
    hooks = [
        getattr(attn, f"{n}_lif").register_forward_hook(
            lambda m, i, o, n=n: captured.__setitem__(n, o)
        )
        for n in ("q", "k", "v")
    ]
    with torch.no_grad():
        out = attn(x)
    for h in hooks:
        h.remove()
    q, k, v = (captured[n].reshape(8, 9) for n in ("q", "k", "v"))  # (C, N) with T = B = 1
    kv = ((k * v).reshape(2, 4, 9).sum(-1) / 2.0 >= 0.5).float()  # (h, d)
    y = (q.reshape(2, 4, 9) * kv[..., None]).reshape(1, 8, 3, 3)
    expected = x + attn.proj_bn(attn.proj_conv(y)).reshape(1, 1, 8, 3, 3)
    torch.testing.assert_close(out, expected)


# --- parity with the official implementations ---------------------------------------------------

# Logits of the official classes (V1 ``model/spikeformer.py`` @3faa822, V2 ``classification/models.py``
# @35f245f) run with SpikingJelly 0.0.0.0.12 (torch backend), timm stubbed, on the weights and inputs
# made by ``_golden_fill`` / ``_golden_inputs`` below. ``v1dvs`` is V1 with the official
# ``dvs_mode=True``; in V2 train mode the main head is compared, which the official training forward
# returns first. Rounded to 5 decimals.
OFFICIAL_LOGITS = {
    ("v1dvs", "eval"): [
        1.00644,
        -0.49818,
        0.87025,
        -3.63874,
        -0.84831,
        0.84529,
        -0.54875,
        0.7459,
        -3.76307,
        -0.69646,
    ],
    ("v1dvs", "train"): [
        0.64777,
        1.27855,
        2.2448,
        -4.50816,
        0.12796,
        1.52951,
        0.76365,
        2.18933,
        -5.23997,
        -0.33803,
    ],
    ("v1", "eval"): [
        1.25162,
        -1.13847,
        1.20629,
        -3.09816,
        -1.61801,
        1.05104,
        -0.75979,
        1.30597,
        -2.90373,
        -1.76751,
    ],
    ("v1", "train"): [
        1.7025,
        -0.16393,
        2.59597,
        -4.81904,
        -0.82918,
        0.81913,
        1.22327,
        1.64853,
        -4.48043,
        0.0543,
    ],
    ("v2", "eval"): [
        -0.01988,
        1.04546,
        -0.98601,
        -0.39503,
        -0.26195,
        0.24789,
        1.02451,
        -1.11095,
        0.16713,
        -0.01107,
    ],
    ("v2", "train"): [
        -0.56857,
        -0.62222,
        -0.09406,
        0.47059,
        -0.13168,
        0.15002,
        -0.48692,
        -0.3341,
        -0.53482,
        -1.25884,
    ],
}


def _golden_fill(model: torch.nn.Module) -> None:
    """Deterministic weights from one seeded generator, in sorted key order (same keys as official)."""
    g = torch.Generator().manual_seed(0)
    state = model.state_dict()
    with torch.no_grad():
        for key in sorted(state):
            t = state[key]
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif key.endswith("running_mean") or key.endswith("bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
            elif t.ndim == 1:  # BN weight
                t.copy_(torch.rand(t.shape, generator=g) * 2 + 1)
            else:  # conv / linear weight
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / math.sqrt(t[0].numel())))


def _golden_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    events = (torch.rand(2, 3, 2, 32, 32, generator=g) < 0.3).float()  # (B, T, P, H, W)
    images = torch.randn(2, 3, 32, 32, generator=g)  # (B, C, H, W)
    return events, images


@pytest.mark.parametrize("family", ["v1", "v1dvs", "v2"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_logits_equal_official_implementation(family, mode):
    from sdt3_event.models.sdt_v1 import SpikeDrivenTransformer

    events, images = _golden_inputs()
    v1 = dict(in_chans=2, num_classes=5, embed_dim=64, depth=1, num_heads=8, T=3)
    if family == "v1":
        model = SpikeDrivenTransformer(**v1, pooling_stat="0111")
        x = events
    elif family == "v1dvs":  # official dvs_mode=True (CIFAR10-DVS): attention erosion
        model = SpikeDrivenTransformer(**v1, pooling_stat="0011", dvs_pool=True)
        x = events
    else:
        model = MetaSpikeFormer(
            embed_dim=(16, 32, 64, 80), in_chans=3, num_classes=5, num_heads=2, kd=True, T=2
        )
        x = images
    _golden_fill(model)
    model.train(mode == "train")
    with torch.no_grad():
        if family == "v2" and mode == "train":
            logits = model.forward_heads(x)[0].mean(0)
        else:
            logits = model(x)
    expected = torch.tensor(OFFICIAL_LOGITS[(family, mode)]).view(2, 5)
    torch.testing.assert_close(logits, expected, atol=2e-5, rtol=0)


# --- GPU -----------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_lif_backends_agree_with_torch_reference():
    from spikingjelly.activation_based.functional import neuron_implementation

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(8, 4, 64, 7, 7, device="cuda", generator=g)
    x = (torch.round(x * 96) / 64).requires_grad_()  # 1/64 grid: exact membranes, see the CPU test
    w = torch.randn(x.shape, device="cuda", generator=g)
    bound = neuron_implementation("lif", x.device)["implementation"]
    results = {}
    for backend in ("torch", "auto"):
        s = MultiStepLIF(0.5, backend=backend)(x)
        (grad,) = torch.autograd.grad((s * w).sum(), x)
        results[backend] = (s, grad)
    assert torch.equal(results["auto"][0], results["torch"][0]), f"bound implementation {bound}"
    torch.testing.assert_close(results["auto"][1], results["torch"][1], rtol=1e-4, atol=1e-5)
    if bound in ("cuda", "triton"):
        s = MultiStepLIF(0.5, backend=bound)(x)
        assert torch.equal(s, results["torch"][0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["sdt1_2_256_gesture", "sdt2_31m"])
def test_gpu_forward_backward(name):
    torch.manual_seed(0)
    kwargs = {"T": 2} if name.startswith("sdt1") else TINY_V2
    model = create_model(name, **kwargs).eval()
    shape = (2, 2, 2, 64, 64) if name.startswith("sdt1") else (2, 2, 2, 32, 32)
    x = torch.rand(shape, device="cuda")
    model = model.cuda()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, model.num_classes) and torch.isfinite(y).all()
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # Mixed precision (the official recipes train with AMP): fp16 inputs reach the fused LIF kernel.
    with torch.autocast("cuda", dtype=torch.float16):
        loss = model(x).float().logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss)
