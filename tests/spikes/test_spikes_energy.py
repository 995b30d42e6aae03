"""Firing statistics and SOP / energy arithmetic against a hand count on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from spikes.spikes_models import excite

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.registry import create_model
from sdt3_event.spikes import (
    CONVENTION,
    E_AC_PJ,
    E_MAC_PJ,
    FiringRecorder,
    estimate_energy,
    to_spike_driven,
)


class Tiny(nn.Module):
    """stem conv3x3 (1->2, MAC) -> SN(D=4, norm 4) -> conv3x3 pad 1 (2->3) -> GAP -> SN(norm 1)
    -> Linear(3->5). Weights chosen so the spike counts are known by hand."""

    def __init__(self):
        super().__init__()
        self.in_chans = 1
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.sn1 = MultiSpike(D=4, norm=4)
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.sn2 = MultiSpike(D=4, norm=1)
        self.fc = nn.Linear(3, 5)
        with torch.no_grad():
            self.stem.weight.zero_()
            self.stem.bias.copy_(torch.tensor([2.0, 3.0]))  # counts 2 and 3 everywhere
            self.conv.weight.fill_(0.01)  # small: sn2 rounds the pooled value to 0 ...
            self.conv.weight[0] = 1.0  # ... except output channel 0: 125/16 -> clamps at 4
            self.fc.weight.fill_(0.1)

    def forward(self, x):  # (B, T, 1, H, W)
        T, B = x.shape[1], x.shape[0]
        y = self.conv(self.sn1(self.stem(x.flatten(0, 1))))  # (B·T, 3, H, W)
        s = self.sn2(y.mean((2, 3)))  # (B·T, 3)
        return self.fc(s).view(B, T, -1).mean(1)  # (B, 5)


def test_sops_and_energy_match_hand_count():
    x = torch.zeros(1, 1, 1, 4, 4)  # B = T = 1, 4x4
    report = estimate_energy(Tiny(), [x])
    rows = {r["name"]: r for r in report.layers}
    # stem: 2 out channels x 16 positions x 9 synapses, dense
    assert rows["stem"]["kind"] == "mac" and rows["stem"]["macs"] == 2 * 16 * 9
    # conv 3x3 pad 1 on a 4x4 map: valid taps per channel = (2+3+3+2)^2 = 100;
    # input counts 2 (channel 0) and 3 (channel 1); 3 output channels
    assert rows["conv"]["sops"] == 3 * 100 * (2 + 3)
    assert rows["conv"]["input_rate"] == pytest.approx(2.5)
    # fc: sn2 fires only on output channel 0, with count 4 -> GAP 4; 5 outputs x 4 spikes
    assert rows["fc"]["sops"] == 5 * 4
    sops = 1500 + 20
    assert report.sops == sops and report.mac_ops == 288
    assert report.energy_pj == pytest.approx(E_MAC_PJ * 288 + E_AC_PJ * sops)
    assert report.ann_macs == 288 + 3 * 16 * 18 + 15
    rates = report.firing["layers"]
    assert rates["sn1"]["rate"] == pytest.approx(2.5) and rates["sn1"]["levels"][2] == 0.5
    assert rates["sn2"]["rate"] == pytest.approx(4 / 3)
    assert "4.6 pJ" in CONVENTION and "0.9 pJ" in CONVENTION
    json.dumps(report.to_dict())  # JSON-ready


def test_batch_and_time_are_per_sample():
    one = estimate_energy(Tiny(), [torch.zeros(1, 1, 1, 4, 4)])
    many = estimate_energy(Tiny(), [torch.zeros(3, 2, 1, 4, 4)] * 2)
    assert many.samples == 6
    assert many.sops == pytest.approx(2 * one.sops)  # T = 2 steps per sample
    assert many.mac_ops == pytest.approx(2 * one.mac_ops)


def test_attention_sops_hand_count_both_orders():
    class Attn(nn.Module):
        def __init__(self, order):
            super().__init__()
            self.in_chans = 1
            self.stem = nn.Linear(4, 4)
            self.sq, self.sk, self.sv = MultiSpike(4, 1), MultiSpike(4, 1), MultiSpike(4, 1)
            self.attn = SpikeMatMulAttention(1.0, order)

        def forward(self, x):  # x (B, N=3, 4) real
            h = self.stem(x)
            return self.attn(self.sq(h), self.sk(h), self.sv(h)).sum(-1).sum(-1, keepdim=True)

    x = torch.zeros(1, 3, 4)
    for order in ("linear", "quadratic"):
        m = Attn(order)
        with torch.no_grad():
            m.stem.weight.zero_()
            m.stem.bias.copy_(torch.tensor([1.0, 0.0, 2.0, 1.0]))  # counts per token: 1,0,2,1
        rep = estimate_energy(m, [x])
        row = next(r for r in rep.layers if r["name"] == "attn")
        # per token: sum over channels = 4; N = 3 tokens, d = d_v = 4
        if order == "linear":  # KᵀV: Σ_n 4·4 = 48; Q(KV): d_v · Σq = 4 · 12
            assert row["sops"] == 48 + 48
        else:  # QKᵀ: Σ_i (Σ_n q)(Σ_m k) = 3²·(1+0+4+1) = 54; (QKᵀ)V: N · Σv = 3 · 12
            assert row["sops"] == 54 + 36
        out_exec = to_spike_driven(m, x)(x)
        torch.testing.assert_close(out_exec, m(x))


def test_firing_recorder_stage_rates_and_detach():
    model = excite(create_model("sdt3_micro"))
    x = (torch.rand(2, 2, 2, 32, 32) * 2).round()
    with torch.no_grad(), FiringRecorder(model) as rec:
        model(x)
    stages = rec.stage_rates()
    assert {"ConvBlock1_1", "block3", "block4", "spike"} <= set(stages)
    assert all(0.0 <= v <= 4.0 for v in stages.values()) and rec.overall_rate() > 0
    assert sum(rec.level_histogram()) == pytest.approx(1.0)
    n = next(iter(rec.stats.values())).numel
    model(x)  # hooks removed on exit: no more counting
    assert next(iter(rec.stats.values())).numel == n


def test_energy_on_v3_model_is_consistent():
    model = excite(create_model("sdt3_micro"))
    x = (torch.rand(2, 2, 2, 32, 32) * 2).round()
    rep = estimate_energy(model, [x])
    assert rep.layers[0]["kind"] == "mac" and rep.layers[0]["name"] == "downsample1_1.encode_conv"
    ac = [r for r in rep.layers if r["kind"] != "mac"]
    assert rep.sops == pytest.approx(sum(r["sops"] for r in ac))
    assert 0 < rep.energy_pj < rep.ann_energy_pj * 4  # sanity: same order as the dense network
