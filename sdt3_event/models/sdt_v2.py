"""Meta-SpikeFormer, Spike-Driven Transformer V2 (Yao et al., ICLR 2024), loading the official weights.

Layout (spec §6.2; attribute names keep the official ones so state_dict keys match): the four-stage
MetaFormer of SDT-V3 Base with LIF neurons. Stem conv7x7 s2 (no neuron), ConvBlock, downsample,
ConvBlock, downsample, 2 ConvBlocks, downsample, 6 transformer blocks, downsample (stride 1),
2 transformer blocks, spatial mean, LIF, ``head`` (and ``head_kd`` for the distilled models), mean
over T.

* ConvBlock: ``x + SepConv(x)`` (LIF, pw 1x1, BN, LIF, dw 7x7, pw 1x1, BN; no BN/LIF between dw and the
  second pw), then ``x + BN(conv3x3(LIF(BN(conv3x3(LIF(x))))))`` with a ``mlp_ratio`` expansion.
* Transformer block: ``x + Attn(x)``, ``x + MLP(x)``. The attention projects q, k, v and the output
  with a RepConv (1x1 conv, BN with border padding by the BN's zero-input value, depthwise 3x3 without
  padding, 1x1 conv, BN) followed by BN; ``Y = Q·(Kᵀ·V)·0.125`` per head (the linear-complexity order,
  as the official code computes it), spiked by the attention LIF with threshold 0.5.

Differences from the official code, on purpose: the ConvBlock expansion uses ``mlp_ratio`` instead of a
hard-coded 4 (spec §7 #22); the event input ``(B, T, P, H, W)`` is accepted (the official forward only
repeats images); ``forward`` always returns one logits tensor (for ``kd`` models the mean of the two
heads, which is what the official model returns in eval mode) and :meth:`MetaSpikeFormer.forward_heads`
gives both heads for hard distillation. The official default ``T`` is 1 (training from scratch); the
released KD fine-tunes run at ``T=4`` (``create_model(..., T=4)``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.lif import MultiStepLIF
from sdt3_event.layers.sdt3_blocks import MetaFormerConvBlock, SpikeDownsample
from sdt3_event.layers.timestep import flat_apply
from sdt3_event.models._builder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SpikingModelMixin,
    model_entry,
)

__all__ = [
    "MetaSpikeFormer",
    "BNAndPad",
    "RepConv",
    "SepConvLIF",
    "MetaConvBlock",
    "RepConvAttention",
    "MetaMLP",
    "MetaBlock",
]

ATTN_SCALE = 0.125


class BNAndPad(nn.Module):
    """BatchNorm2d, then a ``pad``-pixel border filled with the BN's response to a zero input.

    The border value ``bias - running_mean * weight / sqrt(running_var + eps)`` (detached) makes the
    following unpadded 3x3 conv equal to a zero-padded conv applied before the BN, so the RepConv can be
    re-parameterised into one conv. It uses the running statistics in train mode too, like the official
    ``BNAndPadLayer``.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, H + 2 pad, W + 2 pad)``.
    """

    def __init__(self, num_features: int, pad: int = 1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(x)
        if self.pad == 0:
            return y
        bn = self.bn
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        border = (bn.bias.detach() - bn.running_mean * scale).to(y.dtype)  # (C,)
        p = self.pad
        y = F.pad(y, [p, p, p, p])  # (N, C, H + 2p, W + 2p), border zero
        inside = torch.zeros_like(y[:1, :1], dtype=torch.bool)  # (1, 1, H + 2p, W + 2p)
        inside[..., p:-p, p:-p] = True
        return torch.where(inside, y, border.view(1, -1, 1, 1))


class RepConv(nn.Module):
    """V2 RepConv: ``body`` = 1x1 conv, :class:`BNAndPad`, [depthwise 3x3 (no pad), 1x1 conv, BN].

    Shape:
        - Input: ``(N, C_in, H, W)``.
        - Output: ``(N, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        c = in_channels
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 1, bias=False),
            BNAndPad(c, pad=1),
            nn.Sequential(
                nn.Conv2d(c, c, 3, padding=0, groups=c, bias=False),
                nn.Conv2d(c, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SepConvLIF(nn.Module):
    """Inverted separable conv with LIF neurons (official V2 ``SepConv``), no residual.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(self, dim: int, expansion: int = 2, kernel_size: int = 7) -> None:
        super().__init__()
        mid = expansion * dim
        self.lif1 = MultiStepLIF()
        self.pwconv1 = nn.Conv2d(dim, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.lif2 = MultiStepLIF()
        self.dwconv = nn.Conv2d(
            mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, bias=False
        )
        self.pwconv2 = nn.Conv2d(mid, dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = flat_apply(lambda t: self.bn1(self.pwconv1(t)), self.lif1(x))
        return flat_apply(lambda t: self.bn2(self.pwconv2(self.dwconv(t))), self.lif2(x))


class MetaConvBlock(MetaFormerConvBlock):
    """V2 conv stage block (official ``MS_ConvBlock``): the V3 block's layout with LIF neurons,
    :class:`SepConvLIF` and the official neuron names ``lif1``, ``lif2``.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    NEURON_NAMES = ("lif1", "lif2")

    def __init__(self, dim: int, mlp_ratio: int = 4) -> None:
        super().__init__(dim, int(dim * mlp_ratio), SepConvLIF(dim), MultiStepLIF)


class MetaMLP(nn.Module):
    """Spiking MLP over tokens with Conv1d (official V2 ``MS_MLP``), no residual.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1_lif = MultiStepLIF()
        self.fc1_conv = nn.Conv1d(dim, hidden, 1, bias=True)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2_lif = MultiStepLIF()
        self.fc2_conv = nn.Conv1d(hidden, dim, 1, bias=True)
        self.fc2_bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        y = x.flatten(3)  # (T, B, C, H, W) -> (T, B, C, N)
        y = flat_apply(
            lambda t: self.fc1_bn(self.fc1_conv(t)), self.fc1_lif(y)
        )  # (T, B, hidden, N)
        y = flat_apply(lambda t: self.fc2_bn(self.fc2_conv(t)), self.fc2_lif(y))  # (T, B, C, N)
        return y.reshape(T, B, C, H, W)  # (T, B, C, N) -> (T, B, C, H, W)


class RepConvAttention(nn.Module):
    """V2 spiking self-attention with RepConv projections (official ``MS_Attention_RepConv_qkv_id``).

    Shape:
        - Input / output: ``(T, B, C, H, W)`` (no residual; the block adds it).
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.matmul = SpikeMatMulAttention(ATTN_SCALE)  # Q·(Kᵀ·V)·0.125, parameter-free
        self.head_lif = MultiStepLIF()
        self.q_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.k_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.v_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.q_lif = MultiStepLIF()
        self.k_lif = MultiStepLIF()
        self.v_lif = MultiStepLIF()
        self.attn_lif = MultiStepLIF(v_threshold=0.5)
        self.proj_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = z.shape
        z = z.reshape(T, B, self.num_heads, C // self.num_heads, H * W)  # (T, B, h, d, N)
        return z.transpose(-1, -2)  # (T, B, h, N, d); channel = head·d + j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.head_lif(x)
        q = self._heads(self.q_lif(flat_apply(self.q_conv, s)))
        k = self._heads(self.k_lif(flat_apply(self.k_conv, s)))
        v = self._heads(self.v_lif(flat_apply(self.v_conv, s)))
        y = self.matmul(q, k, v)  # (T, B, h, N, d)
        y = y.transpose(-1, -2).reshape(T, B, C, H * W)  # (T, B, h, d, N) -> (T, B, C, N)
        y = self.attn_lif(y).reshape(T, B, C, H, W)  # (T, B, C, N) -> (T, B, C, H, W)
        return flat_apply(self.proj_conv, y)


class MetaBlock(nn.Module):
    """V2 transformer block: ``x + Attn(x)``, then ``x + MLP(x)``.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.attn = RepConvAttention(dim, num_heads)
        self.mlp = MetaMLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class MetaSpikeFormer(SpikingModelMixin, nn.Module):
    """Meta-SpikeFormer (official ``Spiking_vit_MetaFormer``).

    Args:
        embed_dim: the four stage widths ``(C0, C1, C2, C3)``; the stem outputs ``C0 // 2``.
        depths: transformer blocks in stage 3 and stage 4 (official: 6 and 2).
        num_heads: attention heads in stages 3 and 4.
        mlp_ratio: expansion of the ConvBlock convs and of the transformer MLP.
        kd: add the distillation head ``head_kd``.
        **settings: the data settings ``in_chans``, ``num_classes``, ``T`` as
            :class:`~sdt3_event.models.sdt_v1.SpikeDrivenTransformer` (:attr:`SETTINGS` holds
            the defaults).

    Shape:
        - Input: ``(B, T, P, H, W)`` event frames or ``(B, C, H, W)`` images (H, W divisible by 16).
        - Output: ``(B, num_classes)`` logits averaged over T (and over the two heads when ``kd``);
          ``(B, T, num_classes)`` with ``return_per_step=True``.

    Raises:
        ValueError: input of another rank or channel count.
    """

    def __init__(
        self,
        embed_dim: tuple[int, int, int, int] = (128, 256, 512, 640),
        depths: tuple[int, int] = (6, 2),
        num_heads: int = 8,
        mlp_ratio: int = 4,
        kd: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__()
        if len(embed_dim) != 4 or len(depths) != 2:
            raise ValueError(
                f"embed_dim needs 4 stage widths and depths 2 block counts; got {embed_dim}, {depths}"
            )
        self.record_config(locals(), embed_dim=tuple(embed_dim), depths=tuple(depths))
        self.kd = kd
        c2, c3 = embed_dim[2:]
        lif = MultiStepLIF  # the neuron factory of the downsampling layers
        self.build_conv_stages(embed_dim, lambda c: MetaConvBlock(c, mlp_ratio), lif)
        self.block3 = nn.ModuleList([MetaBlock(c2, num_heads, mlp_ratio) for _ in range(depths[0])])
        self.downsample4 = SpikeDownsample(c2, c3, 3, 1, 1, lif)
        self.block4 = nn.ModuleList([MetaBlock(c3, num_heads, mlp_ratio) for _ in range(depths[1])])
        self.lif = MultiStepLIF()
        n = self.num_classes
        self.head = nn.Linear(c3, n) if n > 0 else nn.Identity()
        if kd:
            self.head_kd = nn.Linear(c3, n) if n > 0 else nn.Identity()
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spiked, spatially averaged features.

        Shape:
            - Input: ``(T, B, P, H, W)``.
            - Output: ``(T, B, C3)`` spikes.
        """
        x = self.forward_conv_stages(x)  # (T, B, C2, H/16, W/16)
        for blk in self.block3:
            x = blk(x)
        x = self.downsample4(x)
        for blk in self.block4:
            x = blk(x)
        return self.lif(x.flatten(3).mean(3))  # (T, B, C3, H, W) -> (T, B, C3)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-step logits of ``head`` and ``head_kd`` (None without kd), for distillation.

        Shape:
            - Input: as :meth:`forward`.
            - Output: two ``(T, B, num_classes)`` tensors (time-major).
        """
        feats = self.forward_features(self.to_time_major(x))  # (T, B, C3)
        return self.head(feats), (self.head_kd(feats) if self.kd else None)

    def forward(self, x: torch.Tensor, return_per_step: bool = False) -> torch.Tensor:
        logits, logits_kd = self.forward_heads(x)  # (T, B, classes)
        if logits_kd is not None:
            logits = (logits + logits_kd) / 2
        if return_per_step:
            return logits.transpose(0, 1)  # (T, B, classes) -> (B, T, classes)
        return logits.mean(0)


# --- registered variants (spec §6.2 table) -------------------------------------------------------


_V2_CFG = {
    "input_size": (3, 224, 224),
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "first_conv": "downsample1_1.encode_conv",
    "classifier": ("head", "head_kd"),
}
_V2 = (
    # name, official alias, stage widths, extra cfg, docstring
    ("sdt2_31m", "metaspikformer_8_384", (96, 192, 384, 480), {},
     "Meta-SpikeFormer 8-384 (31.3M params; 31.8M with ``kd=True``)."),
    ("sdt2_55m", "metaspikformer_8_512", (128, 256, 512, 640),
     {"top1": 80.0,
      "notes": "80.0% top-1: kd=True, fine-tuned at T=4 from the T=1 model (official README)"},
     "Meta-SpikeFormer 8-512 (55.4M params; 56.0M with ``kd=True``; 80.0% at T=4 with KD)."),
    ("sdt2_124m", "metaspikformer_8_768", (192, 384, 768, 960), {},
     "Meta-SpikeFormer 8-768 (123.7M params; 124.7M with ``kd=True``)."),
)  # fmt: skip
for _name, _official, _dims, _cfg, _doc in _V2:
    model_entry(
        _name,
        MetaSpikeFormer,
        {"embed_dim": _dims, "in_chans": 3, "num_classes": 1000},
        {**_V2_CFG, "official_name": _official, **_cfg},
        aliases=(_official,),
        doc=_doc,
    )
