"""ONNX export: onnxruntime logits equal PyTorch's (1e-4 relative) on the demo model and on a
random-weight V3 Base model; dynamic batch (and T for stateless neurons); clear errors."""

from __future__ import annotations

import copy
import dataclasses
import sys

import pytest
import torch
import torch.nn as nn

pytest.importorskip("onnxruntime", reason="the [deploy] extra (onnxruntime) is not installed")

from sdt3_event.deploy import OnnxModel, export_onnx, load_onnx_model  # noqa: E402
from sdt3_event.events.contract import DataContract  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frames(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, shape, generator=g).float()  # event counts


def _rel(got, expected):
    return float((got - expected).abs().max()) / max(float(expected.abs().max()), 1e-12)


def _dyadic(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights on a coarse power-of-two grid, so that every sum in the network is exact in
    float32 whatever the summation order.

    Different conv kernels (oneDNN in PyTorch, MLAS in onnxruntime) sum in different orders; with
    arbitrary float weights that moves a few pre-activations across a rounding boundary of the
    quantiser, and one flipped spike count shifts the logits by ~1e-2 (PyTorch float32 against
    PyTorch float64 differs as much). On this grid both runtimes compute the same numbers, so
    the comparison checks the exported graph (Clip / Round / Div included), not float noise.
    Batch norms get power-of-two scales and ``var + eps == 1``; layer scales are 1.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() <= 1 and "scale" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.round(p * 64) / 64)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
                k = torch.randint(-1, 2, mod.weight.shape, generator=g).float()
                mod.weight.copy_(2.0**k)
                mod.bias.copy_(torch.randint(-2, 10, mod.bias.shape, generator=g) / 8)
                mod.running_mean.copy_(torch.randint(-4, 5, mod.bias.shape, generator=g) / 8)
                mod.running_var.fill_(1.0 - mod.eps)
                assert bool(((mod.running_var + mod.eps) == 1.0).all())
    return model.eval()


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory):
    from sdt3_event.assets import DEMO_CHECKPOINT
    from sdt3_event.checkpoint import load_model_from_checkpoint

    loaded = load_model_from_checkpoint(DEMO_CHECKPOINT, device="cpu")
    path = tmp_path_factory.mktemp("onnx") / "demo.onnx"
    report = export_onnx(loaded.model, loaded.contract, path, model_name=loaded.model_name)
    return loaded, report


def test_demo_model_onnx_equals_torch(demo_onnx, tmp_path):
    loaded, report = demo_onnx
    assert not report.dynamic_time  # TemporalIF neurons: the time loop is unrolled
    assert report.ops["Clip"] == report.ops["Round"] > 0 and "Div" in report.ops
    runtime = OnnxModel(report.path)
    assert runtime.contract == loaded.contract and runtime.model_name == "sdt3_micro"
    frames = _frames((4, *loaded.contract.frame_shape), 0)
    with torch.no_grad():
        expected = loaded.model(frames)
    got = runtime(frames)
    # the trained float weights: float noise may flip a spike count (see _dyadic); same classes
    assert torch.equal(got.argmax(1), expected.argmax(1)) and _rel(got, expected) < 0.05
    # the demo architecture on the exact grid: 1e-4, with a dynamic batch
    model = _dyadic(loaded.model)
    exact = export_onnx(model, loaded.contract, tmp_path / "demo_dyadic.onnx")
    runtime = OnnxModel(exact.path)
    for batch, seed in ((1, 0), (3, 1)):
        frames = _frames((batch, *loaded.contract.frame_shape), seed)
        with torch.no_grad():
            expected = model(frames)
        got = runtime(frames)
        assert got.shape == expected.shape and expected.abs().max() > 0.1
        assert _rel(got, expected) < 1e-4


def test_random_v3_base_onnx_equals_torch_with_dynamic_t(tmp_path):
    from sdt3_event import create_model

    torch.manual_seed(0)
    model = _dyadic(create_model("sdt3_10m", num_classes=5, in_chans=2, T=2))
    contract = DataContract((32, 32, 2), (32, 32), 2, window_us=10_000)
    report = export_onnx(model, contract, tmp_path / "base.onnx", model_name="sdt3_10m")
    assert report.dynamic_time
    runtime = OnnxModel(report.path)
    for shape, seed in (((2, 2, 2, 32, 32), 0), ((1, 3, 2, 32, 32), 1)):  # B and T differ
        frames = _frames(shape, seed)
        with torch.no_grad():
            expected = model(frames)
        assert expected.abs().max() > 0.1  # a model that fires, not zero logits
        assert _rel(runtime(frames), expected) < 1e-4


@pytest.mark.slow
def test_float64_export_equals_torch_on_real_weights(tmp_path):
    # no grid: the trained demo weights and random V3 Base weights, at T = 1 and 32x32 (the
    # float64 graph traces 5x slower than float32's); against PyTorch in float64
    from sdt3_event import create_model
    from sdt3_event.assets import DEMO_CHECKPOINT
    from sdt3_event.checkpoint import load_model_from_checkpoint

    demo = load_model_from_checkpoint(DEMO_CHECKPOINT, device="cpu")
    torch.manual_seed(0)
    base = _dyadic(create_model("sdt3_10m", num_classes=5, in_chans=2, T=2))
    with torch.no_grad():  # off the grid: every weight moved by a random float
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    small = DataContract((32, 32, 2), (32, 32), 1, window_us=10_000)
    small_demo = dataclasses.replace(demo.contract, input_size=(32, 32), n_time_bins=1)
    for name, model, contract in (("demo", demo.model, small_demo), ("base", base, small)):
        report = export_onnx(model, contract, tmp_path / f"{name}.onnx", precision="float64")
        assert "Conv" not in report.ops and report.ops["Einsum"] > 0
        runtime = OnnxModel(report.path)
        assert runtime.precision == "float64"
        frames = _frames((2, *contract.frame_shape), 0)
        with torch.no_grad():
            expected = copy.deepcopy(model).double()(frames.double())
        got = runtime(frames)
        assert got.dtype == torch.float64 and expected.abs().max() > 0.1
        assert _rel(got, expected) < 1e-4, name
    assert next(demo.model.parameters()).dtype == torch.float32  # the model is not changed
    with pytest.raises(ValueError, match="precision must be one of"):
        export_onnx(base, small, tmp_path / "x.onnx", precision="float16")


def test_half_up_neurons_export_as_floor(tmp_path):
    from sdt3_event.layers.neurons import MultiSpike

    model = nn.Sequential(nn.Flatten(2), MultiSpike(D=4, norm=2, rounding="half_up"))
    contract = DataContract((3, 2, 1), (2, 3), 1, window_us=10)
    report = export_onnx(model, contract, tmp_path / "q.onnx")
    assert report.ops.get("Floor") == 1 and report.ops.get("Clip") == 1 and "Div" in report.ops
    x = torch.tensor([-1.0, 0.5, 1.5, 2.5, 3.49, 9.0]).reshape(1, 1, 1, 2, 3)
    torch.testing.assert_close(OnnxModel(report.path)(x), model(x))


def test_onnx_errors_are_clear(tmp_path, monkeypatch, demo_onnx):
    import onnx

    bare = tmp_path / "bare.onnx"
    graph = onnx.load(str(demo_onnx[1].path))
    del graph.metadata_props[:]
    onnx.save(graph, str(bare))
    with pytest.raises(ValueError, match="not exported by sdt3-event"):
        OnnxModel(bare)
    with pytest.raises(FileNotFoundError):
        load_onnx_model(tmp_path / "none.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"sdt3-event\[deploy\]"):
        OnnxModel(demo_onnx[1].path)


def test_export_and_live_cli(demo_onnx, tmp_path, capsys):
    import json

    from sdt3_event.apps.cli import main

    assert main(["export", str(tmp_path / "none.pt"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    path = str(demo_onnx[1].path)
    code = main(
        ["live", "--runtime", "onnx", "--model", path, "--predictions-only", "--max-windows", "2"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2 and records[0]["labels"][0] in demo_onnx[0].contract.class_names
    assert main(["live", "--runtime", "onnx"]) == 2
    assert "--model FILE.onnx" in capsys.readouterr().err
    assert main(["live", "--model", path]) == 2
    assert "--runtime onnx" in capsys.readouterr().err
