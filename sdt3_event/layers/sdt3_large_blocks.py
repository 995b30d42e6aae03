"""Building blocks of the SDT-V3 Large models and their MAE decoder (spec §3.2, §4.4).

Conv stages work on ``(T, B, C, H, W)``; transformer blocks on token tensors ``(T, B, C, N)`` with
1-D convs on the merged ``T·B`` batch. Attribute names are the official state_dict names.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.sdt3_blocks import (
    NeuronFactory,
    SpikeTransformerBlock,
    merge_heads,
    split_heads,
)
from sdt3_event.layers.timestep import flat_apply


def _conv1d_bn(cin: int, cout: int) -> nn.Sequential:
    """``Sequential(Conv1d 1×1 no bias, BatchNorm1d)``."""
    return nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))


class LargeConvBlock(nn.Module):
    """Large conv stage block (official ``MS_ConvBlock``): ``x + BN(conv3×3)(SN(BN(conv3×3)(SN(x))))``.

    Each conv+BN pair is nested as ``Sequential(Sequential(conv, bn))`` to reproduce the official
    keys ``conv1.0.0.*`` / ``conv1.0.1.*`` (spikingjelly's ``SeqToANNContainer`` inside a Sequential).

    Shape:
        ``(T, B, c, H, W)`` -> same.
    """

    def __init__(self, dim: int, neuron: NeuronFactory, mlp_ratio: int = 4) -> None:
        super().__init__()
        hidden = dim * mlp_ratio
        self.neuron1 = neuron()
        self.conv1 = nn.Sequential(
            nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1), nn.BatchNorm2d(hidden))
        )
        self.neuron2 = neuron()
        self.conv2 = nn.Sequential(
            nn.Sequential(nn.Conv2d(hidden, dim, 3, 1, 1), nn.BatchNorm2d(dim))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = flat_apply(self.conv1, self.neuron1(x))
        y = flat_apply(self.conv2, self.neuron2(y))
        return x + y


class RepConv1d(nn.Module):
    """Two linear 1×1 conv+BN pairs: ``cin -> hidden -> cout`` (official ``RepConv`` / ``RepConv2``).

    Shape:
        ``(B', cin, N)`` -> ``(B', cout, N)``.
    """

    def __init__(self, cin: int, cout: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = _conv1d_bn(cin, hidden)
        self.conv2 = _conv1d_bn(hidden, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def _rep_bn(dim: int) -> nn.Sequential:
    """``Sequential(RepConv1d(dim -> 1.5·dim -> dim), BatchNorm1d)`` (q/k/v/proj projections)."""
    return nn.Sequential(RepConv1d(dim, dim, int(dim * 1.5)), nn.BatchNorm1d(dim))


class LargeSpikeAttention(nn.Module):
    """Large spiking attention (official ``MS_Attention_Conv_qkv_id``), scale 0.125.

    ``s = SN(x)``; ``Q, K, V = SN(proj(s))``; ``Y = 0.125 · Q·(Kᵀ·V)``; ``out = proj_conv(SN(Y))``.

    Shape:
        ``(T, B, c, N)`` -> same.
    """

    def __init__(self, dim: int, num_heads: int, neuron: NeuronFactory, scale: float = 0.125):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_lif = neuron()
        self.q_conv = _rep_bn(dim)
        self.k_conv = _rep_bn(dim)
        self.v_conv = _rep_bn(dim)
        self.q_lif = neuron()
        self.k_lif = neuron()
        self.v_lif = neuron()
        self.attn = SpikeMatMulAttention(scale=scale)
        self.attn_lif = neuron()
        self.proj_conv = _rep_bn(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.head_lif(x)
        h = self.num_heads
        q = split_heads(self.q_lif(flat_apply(self.q_conv, s)), h)  # (T, B, h, N, d)
        k = split_heads(self.k_lif(flat_apply(self.k_conv, s)), h)  # (T, B, h, N, d)
        v = split_heads(self.v_lif(flat_apply(self.v_conv, s)), h)  # (T, B, h, N, d)
        y = merge_heads(self.attn(q, k, v))  # (T, B, c, N)
        return flat_apply(self.proj_conv, self.attn_lif(y))


class LargeTransformerBlock(SpikeTransformerBlock):
    """Large transformer block (official ``MS_Block``).

    ``x = x + rep_conv(SN(x))`` (only with ``rep_conv``, the 83M "base" choice);
    ``x = x + attn(x)·ls1``; ``x = x + mlp(x)·ls2`` (layer scales only when ``layer_scale``).
    Arguments as :class:`~sdt3_event.layers.sdt3_blocks.SpikeTransformerBlock`, with layer scales
    on by default, plus the keyword ``rep_conv``.

    Shape:
        ``(T, B, c, N)`` -> same.
    """

    def __init__(self, *args: Any, rep_conv: bool = True, layer_scale: bool = True, **kwargs: Any):
        super().__init__(*args, layer_scale=layer_scale, rep_conv=rep_conv, **kwargs)

    def build_mixers(
        self, dim: int, num_heads: int, neuron: NeuronFactory, rep_conv: bool = True
    ) -> None:
        if rep_conv:
            self.lif = neuron()
            self.rep_conv = RepConv1d(dim, dim, dim)
        self.has_rep_conv = rep_conv
        self.attn = LargeSpikeAttention(dim, num_heads, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_rep_conv:
            x = x + flat_apply(self.rep_conv, self.lif(x))
        return super().forward(x)


class _ViTAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)  # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, N, d)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))  # (B, N, C)


class _ViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm ViT block with timm ``Block`` keys (``norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
    mlp.fc2``); the MAE decoder block (``qkv_bias=False``, LayerNorm eps 1e-6).

    Shape:
        ``(B, N, dim)`` -> same.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4, qkv_bias: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _ViTAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _ViTMlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMask:
    """Shared holder of the active-patch map for sparse (masked) conv stages of the MAE encoder.

    ``active`` is ``None`` (dense: the sparse layers act as ordinary conv/BN) or a ``(B, 1, g, g)``
    tensor with 1 for visible patches. Layers whose batch is ``T·B`` (time-major flattening) see the
    map repeated ``T`` times. The holder is a plain object owned by one model: no global state.
    """

    def __init__(self) -> None:
        self.active: torch.Tensor | None = None

    def expand(self, batch: int, H: int, W: int) -> torch.Tensor:
        """Shape: -> ``(batch, 1, H, W)`` (nearest upsampling of the patch map)."""
        active = self.active
        assert active is not None
        B, _, g, _ = active.shape
        if batch % B or H % g or W % g:
            raise ValueError(
                f"mask of {B}x{g}x{g} patches does not tile a {batch}x{H}x{W} feature map; "
                "use an input size that is a multiple of 16·grid"
            )
        ex = active.repeat_interleave(H // g, dim=2).repeat_interleave(W // g, dim=3)
        return ex.repeat(batch // B, 1, 1, 1)  # (T·B, 1, H, W), time-major


class SparseConv2d(nn.Conv2d):
    """Conv2d whose output is re-masked to the visible patches (official MAE ``SparseConv2d``)."""

    def __init__(self, *args, patch_mask: PatchMask, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.patch_mask = patch_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.patch_mask.active is None:
            return y
        return y * self.patch_mask.expand(*y.shape[:1], *y.shape[2:]).to(y.dtype)


class SparseBatchNorm2d(nn.BatchNorm1d):
    """BatchNorm over the visible positions only; masked positions are set to 0.

    A BatchNorm1d subclass (same keys as the official ``SparseBatchNorm2d``). Without a mask it is an
    ordinary 2-D batch norm (statistics over batch and all positions).

    Shape:
        ``(B', C, H, W)`` -> same.
    """

    def __init__(self, num_features: int, *, patch_mask: PatchMask, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.patch_mask = patch_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch_mask.active is None:
            return super().forward(x.flatten(2)).reshape(x.shape)  # (B', C, H·W) -> (B', C, H, W)
        keep = self.patch_mask.expand(x.shape[0], *x.shape[2:])[:, 0].bool()  # (B', H, W)
        bhwc = x.permute(0, 2, 3, 1)  # (B', H, W, C)
        out = torch.zeros_like(bhwc)
        out[keep] = super().forward(bhwc[keep])  # (n_visible, C)
        return out.permute(0, 3, 1, 2)  # (B', C, H, W)


def sparsify_convs(module: nn.Module, patch_mask: PatchMask) -> None:
    """Replace every Conv2d / BatchNorm2d under ``module`` by its sparse version, keeping weights."""
    for name, child in list(module.named_children()):
        new: nn.Module | None = None
        if type(child) is nn.Conv2d:
            new = SparseConv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                child.padding,
                child.dilation,
                child.groups,
                child.bias is not None,
                patch_mask=patch_mask,
                device=child.weight.device,
                dtype=child.weight.dtype,
            )
        elif type(child) is nn.BatchNorm2d:
            new = SparseBatchNorm2d(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                patch_mask=patch_mask,
                device=child.weight.device,
                dtype=child.weight.dtype,
            )
        if new is not None:
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            sparsify_convs(child, patch_mask)
