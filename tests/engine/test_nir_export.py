"""NIR export of the conv part: the written graph, run by the reference interpreter, equals
PyTorch's conv stages; each neuron is D thresholds; attention, stateful neurons and other layers
are refused with the reason; a failed export leaves no file; the CLI's errors name its flags."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn as nn

nir = pytest.importorskip("nir", reason="the [deploy] extra (nir) is not installed")

from sdt3_event import create_model  # noqa: E402
from sdt3_event.models._builder import CONV_STAGES  # noqa: E402
from sdt3_event.nir_export import (  # noqa: E402
    NirExportError,
    export_nir,
    forward_stages,
    run_nir_graph,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _micro(**kwargs) -> nn.Module:
    """sdt3_micro with random BatchNorm statistics, so that folding them is exercised."""
    torch.manual_seed(0)
    model = create_model("sdt3_micro", T=2, num_classes=10, **kwargs).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model


def _frames(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, shape, generator=g).double()  # event counts


@pytest.mark.parametrize("upto", [None, "ConvBlock1_2"])
def test_nir_graph_equals_pytorch_conv_stages(tmp_path, upto):
    model = _micro().double()
    report = export_nir(model, tmp_path / "m.nir", (2, 32, 32), upto=upto, precision="float64")
    stages = CONV_STAGES if upto is None else CONV_STAGES[: CONV_STAGES.index(upto) + 1]
    assert report.stages == stages and report.path.is_file()
    graph = nir.read(str(report.path), type_check=False)
    x = _frames((2, 2, 2, 32, 32))  # (B, T, P, H, W)
    with torch.no_grad():
        expected = forward_stages(model, model.to_time_major(x), stages)  # (T, B, C, h, w)
        got = run_nir_graph(graph, model.to_time_major(x).flatten(0, 1))  # frame by frame
    assert got.shape == expected.flatten(0, 1).shape == (4, *report.output_shape)
    torch.testing.assert_close(got, expected.flatten(0, 1), rtol=1e-9, atol=1e-9)
    if upto is None:  # the whole conv part is what the model feeds its attention stages
        torch.testing.assert_close(expected, model.forward_conv_stages(model.to_time_major(x)))


def test_each_neuron_is_d_thresholds_summed(tmp_path):
    model = _micro(D=3, norm=2.0)
    neurons = sum(
        1
        for stage in CONV_STAGES
        for m in getattr(model, stage).modules()
        if type(m).__name__ == "MultiSpike"
    )
    report = export_nir(model, tmp_path / "m.nir", (2, 16, 16))
    assert report.ops["Threshold"] == 3 * neurons
    graph = nir.read(str(report.path), type_check=False)
    thresholds = sorted(
        float(graph.nodes[f"ConvBlock1_1.0.Conv.spike1.t{k}"].threshold.flat[0]) for k in (1, 2, 3)
    )
    assert thresholds == [0.5, 1.5, 2.5]
    assert float(graph.nodes["ConvBlock1_1.0.Conv.spike1"].scale.flat[0]) == 0.5  # 1 / norm
    # the quantiser round(clamp(u, 0, D)) / norm, off its ties
    u = torch.tensor([-1.0, 0.2, 0.7, 1.2, 2.2, 2.7, 9.0]).double()
    sub = {k: v for k, v in graph.nodes.items() if k.startswith("ConvBlock1_1.0.Conv.spike1")}
    counts = sum((u > float(n.threshold.flat[0])).double() for k, n in sub.items() if ".t" in k)
    assert counts.tolist() == torch.round(torch.clamp(u, 0, 3)).tolist()


def test_metadata_and_float32(tmp_path):
    report = export_nir(_micro(), tmp_path / "m.nir", (2, 16, 16), metadata={"model_name": "m"})
    graph = nir.read(str(report.path), type_check=False)
    conv = graph.nodes["downsample1_1"]
    assert conv.weight.dtype == "float32" and conv.groups == 1
    dw = graph.nodes["ConvBlock1_1.0.Conv.dwconv"]
    assert dw.groups == dw.weight.shape[0] and dw.weight.shape[1] == 1  # depthwise kept as such
    meta = graph.metadata["sdt3_event"]
    meta = meta.decode() if isinstance(meta, bytes) else meta
    assert '"model_name": "m"' in meta and "once per frame" in meta


def test_attention_stateful_neurons_and_other_layers_are_refused(tmp_path):
    out = tmp_path / "m.nir"
    with pytest.raises(NirExportError, match="NIR has no node for a product") as info:
        export_nir(_micro(), out, (2, 16, 16), upto="block3")
    assert info.value.argument == "upto"
    with pytest.raises(NirExportError, match="not a conv stage"):
        export_nir(_micro(), out, (2, 16, 16), upto="nope")
    with pytest.raises(NirExportError, match="TemporalIF"):
        export_nir(_micro(neuron="temporal_if"), out, (2, 16, 16))
    with pytest.raises(NirExportError, match="no MetaFormer conv stages"):
        export_nir(nn.Sequential(nn.Conv2d(2, 4, 3)), out, (2, 16, 16))
    model = _micro()
    model.ConvBlock1_1[0].Conv = nn.Identity()
    with pytest.raises(NirExportError, match=r"ConvBlock1_1\.0 .* has no NIR form"):
        export_nir(model, out, (2, 16, 16))
    with pytest.raises(ValueError, match="precision"):
        export_nir(_micro(), out, (2, 16, 16), precision="int8")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(path, graph):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        export_nir(_micro(), tmp_path / "m.nir", (2, 16, 16))
    assert list(tmp_path.iterdir()) == []


def test_export_nir_cli(tmp_path, capsys, monkeypatch):
    from sdt3_event.apps.cli import main

    out = tmp_path / "nmnist.nir"
    assert main(["export", "nmnist", "--nir", str(out), "--nir-upto", "ConvBlock1_2"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "downsample1_1 .. ConvBlock1_2" in text
    rel = float(text.rsplit("max relative difference ", 1)[1].split()[0])
    assert rel < 1e-5
    assert main(["export", "nmnist", "--nir", str(tmp_path / "x.nir"), "--nir-upto", "block4"]) == 2
    assert "--nir-upto: 'block4' lies after the conv part" in capsys.readouterr().err
    # the demo model has multi-step TemporalIF neurons
    assert main(["export", "demo", "--nir", str(tmp_path / "d.nir")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdt3-event export: error: --nir: ") and "TemporalIF" in err
    assert "Traceback" not in err
    assert main(["export", "demo"]) == 2
    assert "--onnx OUT.onnx and/or --nir OUT.nir" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "nir", None)
    assert main(["export", "nmnist", "--nir", str(tmp_path / "y.nir")]) == 2
    assert r"sdt3-event[deploy]" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nmnist.nir"]
