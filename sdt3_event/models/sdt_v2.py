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
from sdt3_event.layers.lif import MultiStepLIF, check_lif_backend
from sdt3_event.models.sdt_v1 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_variant,
    per_frame,
    reset_stateful_modules,
    to_time_major,
)
from sdt3_event.registry import register_model

__all__ = [
    "MetaSpikeFormer",
    "BNAndPad",
    "RepConv",
    "SepConvLIF",
    "MetaConvBlock",
    "RepConvAttention",
    "MetaMLP",
    "MetaBlock",
    "SpikeDownsample",
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

    def __init__(
        self, dim: int, expansion: int = 2, kernel_size: int = 7, backend: str = "auto"
    ) -> None:
        super().__init__()
        mid = expansion * dim
        self.lif1 = MultiStepLIF(backend=backend)
        self.pwconv1 = nn.Conv2d(dim, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.lif2 = MultiStepLIF(backend=backend)
        self.dwconv = nn.Conv2d(
            mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, bias=False
        )
        self.pwconv2 = nn.Conv2d(mid, dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = per_frame(self.lif1(x), self.pwconv1, self.bn1)
        return per_frame(self.lif2(x), self.dwconv, self.pwconv2, self.bn2)


class MetaConvBlock(nn.Module):
    """V2 conv stage block (official ``MS_ConvBlock``).

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(self, dim: int, mlp_ratio: int = 4, backend: str = "auto") -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.Conv = SepConvLIF(dim, backend=backend)
        self.lif1 = MultiStepLIF(backend=backend)
        self.conv1 = nn.Conv2d(dim, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.lif2 = MultiStepLIF(backend=backend)
        self.conv2 = nn.Conv2d(hidden, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.Conv(x)
        y = per_frame(self.lif1(x), self.conv1, self.bn1)
        y = per_frame(self.lif2(y), self.conv2, self.bn2)
        return x + y


class MetaMLP(nn.Module):
    """Spiking MLP over tokens with Conv1d (official V2 ``MS_MLP``), no residual.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(self, dim: int, hidden: int, backend: str = "auto") -> None:
        super().__init__()
        self.fc1_lif = MultiStepLIF(backend=backend)
        self.fc1_conv = nn.Conv1d(dim, hidden, 1, bias=True)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2_lif = MultiStepLIF(backend=backend)
        self.fc2_conv = nn.Conv1d(hidden, dim, 1, bias=True)
        self.fc2_bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        y = x.flatten(3)  # (T, B, C, H, W) -> (T, B, C, N)
        y = per_frame(self.fc1_lif(y), self.fc1_conv, self.fc1_bn)  # (T, B, hidden, N)
        y = per_frame(self.fc2_lif(y), self.fc2_conv, self.fc2_bn)  # (T, B, C, N)
        return y.reshape(T, B, C, H, W)  # (T, B, C, N) -> (T, B, C, H, W)


class RepConvAttention(nn.Module):
    """V2 spiking self-attention with RepConv projections (official ``MS_Attention_RepConv_qkv_id``).

    Shape:
        - Input / output: ``(T, B, C, H, W)`` (no residual; the block adds it).
    """

    def __init__(self, dim: int, num_heads: int = 8, backend: str = "auto") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.matmul = SpikeMatMulAttention(ATTN_SCALE)  # Q·(Kᵀ·V)·0.125, parameter-free
        self.head_lif = MultiStepLIF(backend=backend)
        self.q_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.k_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.v_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.q_lif = MultiStepLIF(backend=backend)
        self.k_lif = MultiStepLIF(backend=backend)
        self.v_lif = MultiStepLIF(backend=backend)
        self.attn_lif = MultiStepLIF(v_threshold=0.5, backend=backend)
        self.proj_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = z.shape
        z = z.reshape(T, B, self.num_heads, C // self.num_heads, H * W)  # (T, B, h, d, N)
        return z.transpose(-1, -2)  # (T, B, h, N, d); channel = head·d + j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.head_lif(x)
        q = self._heads(self.q_lif(per_frame(s, self.q_conv)))
        k = self._heads(self.k_lif(per_frame(s, self.k_conv)))
        v = self._heads(self.v_lif(per_frame(s, self.v_conv)))
        y = self.matmul(q, k, v)  # (T, B, h, N, d)
        y = y.transpose(-1, -2).reshape(T, B, C, H * W)  # (T, B, h, d, N) -> (T, B, C, N)
        y = self.attn_lif(y).reshape(T, B, C, H, W)  # (T, B, C, N) -> (T, B, C, H, W)
        return per_frame(y, self.proj_conv)


class MetaBlock(nn.Module):
    """V2 transformer block: ``x + Attn(x)``, then ``x + MLP(x)``.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, backend: str = "auto") -> None:
        super().__init__()
        self.attn = RepConvAttention(dim, num_heads, backend=backend)
        self.mlp = MetaMLP(dim, int(dim * mlp_ratio), backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class SpikeDownsample(nn.Module):
    """[LIF] -> conv (with bias) -> BN; the first layer (stem) has no neuron.

    Shape:
        - Input: ``(T, B, C_in, H, W)``.
        - Output: ``(T, B, C_out, H', W')`` with the conv's stride.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
        first_layer: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.encode_bn = nn.BatchNorm2d(out_channels)
        self.encode_lif = None if first_layer else MultiStepLIF(backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encode_lif is not None:
            x = self.encode_lif(x)
        return per_frame(x, self.encode_conv, self.encode_bn)


class MetaSpikeFormer(nn.Module):
    """Meta-SpikeFormer (official ``Spiking_vit_MetaFormer``).

    Args:
        embed_dim: the four stage widths ``(C0, C1, C2, C3)``; the stem outputs ``C0 // 2``.
        in_chans: input channels (3 for images, 2 for event polarities).
        num_classes: classifier outputs.
        num_heads: attention heads in stages 3 and 4.
        mlp_ratio: expansion of the ConvBlock convs and of the transformer MLP.
        depths: transformer blocks in stage 3 and stage 4 (official: 6 and 2).
        kd: add the distillation head ``head_kd``.
        T: time steps a static image is repeated over (event input brings its own T).
        backend: LIF backend (:data:`~sdt3_event.layers.lif.LIF_BACKENDS`).

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
        in_chans: int = 3,
        num_classes: int = 1000,
        num_heads: int = 8,
        mlp_ratio: int = 4,
        depths: tuple[int, int] = (6, 2),
        kd: bool = False,
        T: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        check_lif_backend(backend)
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        if len(embed_dim) != 4 or len(depths) != 2:
            raise ValueError(
                f"embed_dim needs 4 stage widths and depths 2 block counts; got {embed_dim}, {depths}"
            )
        self.model_config: dict[str, Any] = {
            "embed_dim": tuple(embed_dim),
            "in_chans": in_chans,
            "num_classes": num_classes,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "depths": tuple(depths),
            "kd": kd,
            "T": T,
            "backend": backend,
        }
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.T = T
        self.kd = kd
        c0, c1, c2, c3 = embed_dim
        b = backend
        self.downsample1_1 = SpikeDownsample(in_chans, c0 // 2, 7, 2, 3, first_layer=True)
        self.ConvBlock1_1 = nn.ModuleList([MetaConvBlock(c0 // 2, mlp_ratio, b)])
        self.downsample1_2 = SpikeDownsample(c0 // 2, c0, backend=b)
        self.ConvBlock1_2 = nn.ModuleList([MetaConvBlock(c0, mlp_ratio, b)])
        self.downsample2 = SpikeDownsample(c0, c1, backend=b)
        self.ConvBlock2_1 = nn.ModuleList([MetaConvBlock(c1, mlp_ratio, b)])
        self.ConvBlock2_2 = nn.ModuleList([MetaConvBlock(c1, mlp_ratio, b)])
        self.downsample3 = SpikeDownsample(c1, c2, backend=b)
        self.block3 = nn.ModuleList(
            [MetaBlock(c2, num_heads, mlp_ratio, b) for _ in range(depths[0])]
        )
        self.downsample4 = SpikeDownsample(c2, c3, stride=1, backend=b)
        self.block4 = nn.ModuleList(
            [MetaBlock(c3, num_heads, mlp_ratio, b) for _ in range(depths[1])]
        )
        self.lif = MultiStepLIF(backend=b)
        self.head = nn.Linear(c3, num_classes) if num_classes > 0 else nn.Identity()
        if kd:
            self.head_kd = nn.Linear(c3, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def reset_state(self) -> None:
        """Reset all neuron state (the LIF neurons also start from 0 on every call)."""
        reset_stateful_modules(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spiked, spatially averaged features.

        Shape:
            - Input: ``(T, B, P, H, W)``.
            - Output: ``(T, B, C3)`` spikes.
        """
        x = self.downsample1_1(x)
        x = self.ConvBlock1_1[0](x)
        x = self.downsample1_2(x)
        x = self.ConvBlock1_2[0](x)
        x = self.downsample2(x)
        x = self.ConvBlock2_2[0](self.ConvBlock2_1[0](x))
        x = self.downsample3(x)
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
        feats = self.forward_features(to_time_major(x, self.T, self.in_chans, "MetaSpikeFormer"))
        return self.head(feats), (self.head_kd(feats) if self.kd else None)

    def forward(self, x: torch.Tensor, return_per_step: bool = False) -> torch.Tensor:
        logits, logits_kd = self.forward_heads(x)  # (T, B, classes)
        if logits_kd is not None:
            logits = (logits + logits_kd) / 2
        if return_per_step:
            return logits.transpose(0, 1)  # (T, B, classes) -> (B, T, classes)
        return logits.mean(0)


# --- registered variants (spec §6.2 table) -------------------------------------------------------


def _v2(name: str, official: str, embed_dim: tuple, overrides: dict[str, Any], **cfg: Any):
    defaults = {"embed_dim": embed_dim, "in_chans": 3, "num_classes": 1000}
    cfg = {
        "official_name": official,
        "input_size": (3, 224, 224),
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "first_conv": "downsample1_1.encode_conv",
        "classifier": ("head", "head_kd"),
        **cfg,
    }
    return build_variant(MetaSpikeFormer, name, defaults, overrides, cfg)


@register_model(aliases=("metaspikformer_8_384",))
def sdt2_31m(**overrides: Any) -> MetaSpikeFormer:
    """Meta-SpikeFormer 8-384 (31.3M params; 31.8M with ``kd=True``)."""
    return _v2("sdt2_31m", "metaspikformer_8_384", (96, 192, 384, 480), overrides)


@register_model(aliases=("metaspikformer_8_512",))
def sdt2_55m(**overrides: Any) -> MetaSpikeFormer:
    """Meta-SpikeFormer 8-512 (55.4M params; 56.0M with ``kd=True``; 80.0% at T=4 with KD)."""
    return _v2(
        "sdt2_55m",
        "metaspikformer_8_512",
        (128, 256, 512, 640),
        overrides,
        top1=80.0,
        notes="80.0% top-1: kd=True, fine-tuned at T=4 from the T=1 model (official README)",
    )


@register_model(aliases=("metaspikformer_8_768",))
def sdt2_124m(**overrides: Any) -> MetaSpikeFormer:
    """Meta-SpikeFormer 8-768 (123.7M params; 124.7M with ``kd=True``)."""
    return _v2("sdt2_124m", "metaspikformer_8_768", (192, 384, 768, 960), overrides)
