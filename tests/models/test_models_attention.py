"""Linear-order spike attention equals the official (Q·Kᵀ)·V order."""

from __future__ import annotations

import pytest
import torch

from sdt3_event.layers.attention import SpikeMatMulAttention, set_attention_order
from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.layers.sdt3_blocks import LinearSpikeAttention, merge_heads, split_heads
from sdt3_event.registry import create_model


def test_linear_order_equals_quadratic_on_real_values():
    torch.manual_seed(0)
    q, k = torch.randn(3, 4, 49, 8), torch.randn(3, 4, 49, 8)
    v = torch.randn(3, 4, 49, 32)
    lin = SpikeMatMulAttention(scale=0.5)(q, k, v)
    quad = SpikeMatMulAttention(scale=0.5, order="quadratic")(q, k, v)
    assert lin.shape == (3, 4, 49, 32)
    torch.testing.assert_close(lin, quad, rtol=1e-5, atol=1e-4)


def test_linear_order_equals_quadratic_exactly_on_spikes():
    torch.manual_seed(1)
    q, k = (torch.randint(0, 5, (2, 8, 196, 16)) / 4 for _ in range(2))
    v = torch.randint(0, 5, (2, 8, 196, 64)) / 4
    scale = 2 * 16**-0.5
    lin = SpikeMatMulAttention(scale)(q, k, v)
    quad = SpikeMatMulAttention(scale, order="quadratic")(q, k, v)
    torch.testing.assert_close(lin, quad, rtol=1e-6, atol=1e-5)


def test_attention_order_validation_and_switch():
    with pytest.raises(ValueError, match="order"):
        SpikeMatMulAttention(1.0, order="softmax")
    model = create_model("sdt3_micro")
    n_blocks = len(model.block3) + len(model.block4)
    assert set_attention_order(model, "quadratic") == n_blocks
    assert all(
        m.order == "quadratic" for m in model.modules() if isinstance(m, SpikeMatMulAttention)
    )
    with pytest.raises(ValueError):
        set_attention_order(model, "nope")


def test_model_output_same_in_both_orders():
    torch.manual_seed(0)
    model = create_model("sdt3_micro").eval()
    x = torch.rand(2, 3, 2, 32, 32)
    with torch.no_grad():
        a = model(x)
        set_attention_order(model, "quadratic")
        b = model(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_head_split_is_head_major_and_invertible():
    x = torch.arange(2 * 1 * 8 * 3, dtype=torch.float32).reshape(2, 1, 8, 3)  # (T, B, ch, N)
    heads = split_heads(x, 4)  # (T, B, 4, N, 2)
    assert heads.shape == (2, 1, 4, 3, 2)
    # channel index = head * (ch / heads) + j
    assert torch.equal(heads[0, 0, 1, :, 0], x[0, 0, 2, :])
    assert torch.equal(merge_heads(heads), x)


def test_attention_block_shapes_and_scale():
    block = LinearSpikeAttention(32, 4, lambda: MultiSpike(D=4))
    assert block.attn.scale == pytest.approx(2 * 8**-0.5)
    x = torch.randn(2, 3, 32, 5, 6)
    assert block(x).shape == x.shape
