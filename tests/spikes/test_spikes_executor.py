"""The spike-driven executor equals the integer model on every V3 classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from spikes.spikes_models import FAST_V3, SLOW_V3, excite

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.registry import create_model
from sdt3_event.spikes import (
    FiringRecorder,
    SpikeDrivenAttention,
    SpikeDrivenLinear,
    spike_planes,
    to_spike_driven,
)


def _check_equivalence(name: str, **kw):
    torch.manual_seed(0)
    model = excite(create_model(name, num_classes=10, **kw)).double()
    x = (torch.rand(1, 2, model.in_chans, 32, 32, dtype=torch.float64) * 3).round()
    executor = to_spike_driven(model, x)
    with torch.no_grad(), FiringRecorder(model) as rec:
        ref = model(x)
        out = executor(x)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    # the comparison means something: neurons fire above level 1 and logits vary
    assert rec.level_histogram()[2:] and sum(rec.level_histogram()[2:]) > 0.01
    assert float(ref.std()) > 1e-3
    linear = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    wrapped = [m for m in executor.modules() if isinstance(m, SpikeDrivenLinear)]
    assert len(wrapped) == len(executor.spike_graph.spike_fed) > 0
    n_attn = sum(isinstance(m, SpikeMatMulAttention) for m in model.modules())
    assert sum(isinstance(m, SpikeDrivenAttention) for m in executor.modules()) == n_attn
    assert "downsample1_1.encode_conv" in executor.mac_layers
    assert len(executor.mac_layers) <= 2 < len(linear)


@pytest.mark.parametrize("name", FAST_V3)
def test_executor_equals_integer_model(name):
    _check_equivalence(name)


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", SLOW_V3, ids=[n for n, _ in SLOW_V3])
def test_executor_equals_integer_model_large_variants(name, overrides):
    _check_equivalence(name, **overrides)


def test_executor_temporal_if_and_quadratic_attention():
    model = excite(create_model("sdt3_micro", neuron="temporal_if")).double()
    for m in model.modules():
        if isinstance(m, SpikeMatMulAttention):
            m.order = "quadratic"
    x = (torch.rand(2, 3, 2, 32, 32, dtype=torch.float64) * 3).round()
    torch.testing.assert_close(to_spike_driven(model, x)(x), model(x), rtol=1e-9, atol=1e-9)


def test_spike_planes_binary_and_sum_to_counts():
    a = torch.tensor([[0, 1, 2], [3, 4, 2]], dtype=torch.float32)
    planes = spike_planes(a / 4, D=4, norm=4)
    assert planes.shape == (4, 2, 3) and set(planes.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(planes.sum(0), a)
    with pytest.raises(ValueError, match="not a spike tensor"):
        spike_planes(torch.tensor([0.3]), D=4, norm=4)
    assert spike_planes(torch.tensor([4.0]), D=4, norm=1).sum() == 4
    with pytest.raises(ValueError, match="not a spike tensor"):
        spike_planes(torch.tensor([5.0]), D=4, norm=1)


def test_neuron_output_not_feeding_a_linear_op_is_rejected():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.in_chans = 2
            self.stem = nn.Conv2d(2, 2, 1)
            self.sn = MultiSpike(D=4)
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            s = self.sn(self.stem(x.flatten(0, 1))) * 2.0  # a multiply between spike and linear op
            return self.fc(s.mean((2, 3)))

    with pytest.raises(ValueError, match="do not feed a conv/linear/attention directly"):
        to_spike_driven(Bad(), torch.rand(2, 1, 2, 4, 4))
