"""Spike-Driven Transformer V1 (Yao et al., NeurIPS 2023), re-implemented to load the official weights.

Layout (spec §6.1; attribute names keep the official ones so state_dict keys match):

* ``patch_embed`` (spiking patch splitting): four conv3x3 + BN stages (in -> D/8 -> D/4 -> D/2 -> D)
  with LIF after the first three, max-pools chosen by ``pooling_stat`` (one digit per stage), then a
  relative position embedding ``rpe_conv``/``rpe_bn`` on the spiked features added to the last stage.
* ``block.{j}``: spike-driven self-attention (SDSA, the mask form ``Q ⊙ LIF_0.5(Σ_N K ⊙ V)``, no matmul,
  no scale) followed by a spiking MLP, each with its own residual on the real-valued stream.
* head: spatial mean -> LIF -> Linear, per time step; logits averaged over T.

Neurons are :class:`~sdt3_event.layers.lif.MultiStepLIF` (stateful across the T steps of one call).
Differences from the official code, on purpose (spec §7 #21): the unused ``talking_heads`` Conv1d is kept
only so that official checkpoints load strictly; it is frozen (``requires_grad=False``) because nothing
reads it. Unused modules (``attn_lif``, ``rpe_lif``, drop-path) are left out. Shapes after pooling are taken
from the tensors, not recomputed as ``H // ratio`` (which breaks on odd sizes).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event.layers.lif import MultiStepLIF
from sdt3_event.layers.timestep import flat_apply
from sdt3_event.models._builder import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SpikingModelMixin,
    model_entry,
)

__all__ = [
    "SpikeDrivenTransformer",
    "SpikingPatchSplitting",
    "SpikeDrivenSelfAttention",
    "SpikingConvMLP",
    "SpikeDrivenBlock",
]


class SpikingPatchSplitting(nn.Module):
    """The V1 stem (official ``MS_SPS``).

    Shape:
        - Input: ``(T, B, P, H, W)``.
        - Output: ``(T, B, D, H / 2^k, W / 2^k)`` with ``k`` the number of ``1`` in ``pooling_stat``.
    """

    def __init__(
        self, in_chans: int, embed_dim: int, pooling_stat: str = "1111", backend: str = "auto"
    ) -> None:
        super().__init__()
        if len(pooling_stat) != 4 or set(pooling_stat) - {"0", "1"}:
            raise ValueError(
                f"pooling_stat must be 4 digits of 0/1 like '0111', got {pooling_stat!r}"
            )
        self.pooling_stat = pooling_stat
        widths = [in_chans, embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
        suffixes = ["", "1", "2", "3"]
        for i, sfx in enumerate(suffixes):
            conv = nn.Conv2d(widths[i], widths[i + 1], 3, stride=1, padding=1, bias=False)
            setattr(self, f"proj_conv{sfx}", conv)
            setattr(self, f"proj_bn{sfx}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{sfx}", MultiStepLIF(backend=backend))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe_conv = nn.Conv2d(embed_dim, embed_dim, 3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dim)

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        sfx = ["", "1", "2", "3"][i]
        conv, bn = getattr(self, f"proj_conv{sfx}"), getattr(self, f"proj_bn{sfx}")
        return flat_apply(lambda t: bn(conv(t)), x)

    def _maybe_pool(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return flat_apply(self.pool, x) if self.pooling_stat[i] == "1" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, sfx in enumerate(["", "1", "2"]):
            x = self._stage(i, x)
            x = getattr(self, f"proj_lif{sfx}")(x)
            x = self._maybe_pool(i, x)
        x = self._maybe_pool(3, self._stage(3, x))  # real-valued features (T, B, D, h, w)
        feat = x
        x = flat_apply(lambda t: self.rpe_bn(self.rpe_conv(t)), self.proj_lif3(x))
        return x + feat


def _erode(x: torch.Tensor) -> torch.Tensor:
    """3x3 max-pool, stride 1, same size, over the last two axes of a 5-D tensor."""
    return F.max_pool3d(x, kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))


class SpikeDrivenSelfAttention(nn.Module):
    """Spike-driven self-attention, mask form (official ``MS_SSA_Conv``), with its residual.

    ``s = LIF(x)``; ``Q, K, V = LIF(BN(W s))``; per head ``KV = LIF_0.5(Σ_N K ⊙ V)`` and ``Y = Q ⊙ KV``;
    ``out = x + BN(W_proj Y + b)``. Heads split channels head-major (channel = head·d + j).

    With ``dvs_pool`` (the official CIFAR10-DVS setting ``dvs_mode``) a 3x3 max-pool "erosion" of
    stride 1 is applied to the K and V spike maps over (H, W), and to ``K ⊙ V`` and ``Q ⊙ KV`` over
    their last two axes (tokens N, head channels d), exactly as the official code applies its
    ``MaxPool3d((1, 3, 3))`` to those 5-D tensors.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(
        self, dim: int, num_heads: int = 8, backend: str = "auto", dvs_pool: bool = False
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dvs_pool = dvs_pool
        self.shortcut_lif = MultiStepLIF(backend=backend)
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv2d(dim, dim, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(dim))
            setattr(self, f"{name}_lif", MultiStepLIF(backend=backend))
        # Unused by the official forward pass too (spec §7 #21); present so checkpoints load strictly.
        self.talking_heads = nn.Conv1d(num_heads, num_heads, kernel_size=1, bias=False)
        self.talking_heads.weight.requires_grad_(False)
        self.talking_heads_lif = MultiStepLIF(v_threshold=0.5, backend=backend)
        self.proj_conv = nn.Conv2d(dim, dim, 1, bias=True)
        self.proj_bn = nn.BatchNorm2d(dim)

    def _heads(self, name: str, s: torch.Tensor) -> torch.Tensor:
        conv, bn = getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn")
        z = getattr(self, f"{name}_lif")(flat_apply(lambda t: bn(conv(t)), s))  # (T, B, C, H, W)
        if self.dvs_pool and name != "q":
            z = _erode(z)
        T, B, C, H, W = z.shape
        z = z.reshape(T, B, self.num_heads, C // self.num_heads, H * W)  # (T, B, h, d, N)
        return z.transpose(-1, -2)  # (T, B, h, N, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.shortcut_lif(x)
        q, k, v = self._heads("q", s), self._heads("k", s), self._heads("v", s)
        kv = k * v  # (T, B, h, N, d)
        if self.dvs_pool:
            kv = _erode(kv)
        kv = self.talking_heads_lif(kv.sum(dim=-2, keepdim=True))  # (T, B, h, 1, d)
        y = q * kv  # (T, B, h, N, d)
        if self.dvs_pool:
            y = _erode(y)
        y = y.transpose(-1, -2).reshape(T, B, C, H, W)  # (T, B, h, d, N) -> (T, B, C, H, W)
        return x + flat_apply(lambda t: self.proj_bn(self.proj_conv(t)), y)


class SpikingConvMLP(nn.Module):
    """Spiking MLP with 1x1 convs (official ``MS_MLP_Conv``), with its residual.

    ``out = x + BN(W2 LIF(BN(W1 LIF(x) + b1)) + b2)``; when ``hidden == dim`` the official code adds an
    inner residual after the first layer, reproduced here.

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(self, dim: int, hidden: int, backend: str = "auto") -> None:
        super().__init__()
        self.inner_residual = hidden == dim
        self.fc1_lif = MultiStepLIF(backend=backend)
        self.fc1_conv = nn.Conv2d(dim, hidden, 1, bias=True)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc2_lif = MultiStepLIF(backend=backend)
        self.fc2_conv = nn.Conv2d(hidden, dim, 1, bias=True)
        self.fc2_bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        y = flat_apply(lambda t: self.fc1_bn(self.fc1_conv(t)), self.fc1_lif(x))
        if self.inner_residual:
            y = y + identity
            identity = y
        y = flat_apply(lambda t: self.fc2_bn(self.fc2_conv(t)), self.fc2_lif(y))
        return y + identity


class SpikeDrivenBlock(nn.Module):
    """One V1 encoder block: SDSA then MLP (each with its own residual).

    Shape:
        - Input / output: ``(T, B, C, H, W)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        backend: str = "auto",
        dvs_pool: bool = False,
    ) -> None:
        super().__init__()
        self.attn = SpikeDrivenSelfAttention(dim, num_heads, backend=backend, dvs_pool=dvs_pool)
        self.mlp = SpikingConvMLP(dim, int(dim * mlp_ratio), backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class SpikeDrivenTransformer(SpikingModelMixin, nn.Module):
    """Spike-Driven Transformer V1 (official ``SpikeDrivenTransformer`` / timm ``sdt``).

    Args:
        embed_dim: token width D.
        depth: number of encoder blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        pooling_stat: which of the four stem stages max-pool (``"1111"`` ImageNet 224 -> 14,
            ``"0011"`` CIFAR 32 -> 8, ``"0111"`` Gesture 128 -> 16).
        dvs_pool: the 3x3 erosion inside the attention used by the official CIFAR10-DVS model.
        **settings: the data settings of every model (:attr:`SETTINGS` holds the defaults):
            ``in_chans`` (3 for images, 2 for event polarities), ``num_classes`` (classifier
            outputs), ``T`` (time steps a static image is repeated over; event input brings its
            own T).

    Shape:
        - Input: ``(B, T, P, H, W)`` event frames or ``(B, C, H, W)`` images.
        - Output: ``(B, num_classes)`` logits averaged over T; ``(B, T, num_classes)`` with
          ``return_per_step=True`` (for the TET loss).

    Raises:
        ValueError: input of another rank or channel count.
    """

    SETTINGS = {**SpikingModelMixin.SETTINGS, "T": 4}

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 8,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        pooling_stat: str = "1111",
        dvs_pool: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.record_config(locals())
        self.patch_embed = SpikingPatchSplitting(self.in_chans, embed_dim, pooling_stat)
        self.block = nn.ModuleList(
            [
                SpikeDrivenBlock(embed_dim, num_heads, mlp_ratio, dvs_pool=dvs_pool)
                for _ in range(depth)
            ]
        )
        self.head_lif = MultiStepLIF()
        n = self.num_classes
        self.head = nn.Linear(embed_dim, n) if n > 0 else nn.Identity()
        self.init_weights((nn.Conv2d,))  # BatchNorms keep their identity init

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Time-major features after the blocks and the spatial mean.

        Shape:
            - Input: ``(T, B, P, H, W)``.
            - Output: ``(T, B, D)``.
        """
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)  # (T, B, D, h, w) -> (T, B, D)

    def forward(self, x: torch.Tensor, return_per_step: bool = False) -> torch.Tensor:
        x = self.to_time_major(x)  # (T, B, P, H, W)
        logits = self.head(self.head_lif(self.forward_features(x)))  # (T, B, classes)
        if return_per_step:
            return logits.transpose(0, 1)  # (T, B, classes) -> (B, T, classes)
        return logits.mean(0)


# --- registered variants (spec §6.1 table) -------------------------------------------------------

_IMAGENET = {"in_chans": 3, "num_classes": 1000, "T": 4, "pooling_stat": "1111"}
_CIFAR10 = {"in_chans": 3, "num_classes": 10, "T": 4, "pooling_stat": "0011"}
_GESTURE = {"in_chans": 2, "num_classes": 11, "T": 16, "pooling_stat": "0111"}
_CIFAR10DVS = {"in_chans": 2, "num_classes": 10, "T": 10, "pooling_stat": "0011", "dvs_pool": True}
_CFG_IMAGENET = {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
_CFG_CIFAR10 = {"input_size": (3, 32, 32), "mean": CIFAR10_MEAN, "std": CIFAR10_STD}
_CFG_GESTURE = {"input_size": (2, 128, 128), "notes": "DVS128 Gesture frames, T=16 (or 10)"}
_CFG_CIFAR10DVS = {
    "input_size": (2, 64, 64),
    "notes": "CIFAR10-DVS resized to 64x64, T=10, trained with the TET loss (return_per_step=True)",
}
_V1_CFG = {"first_conv": "patch_embed.proj_conv", "classifier": ("head",)}


_V1 = (
    # name, official alias, depth, width, data, cfg, docstring
    ("sdt1_8_384", "sdt_8_384_imagenet", 8, 384, _IMAGENET, {**_CFG_IMAGENET, "top1": 72.28},
     "V1 8-384, ImageNet 224, T=4 (16.8M params, 72.28% top-1 in the official README)."),
    ("sdt1_6_512", "sdt_6_512_imagenet", 6, 512, _IMAGENET, {**_CFG_IMAGENET, "top1": 74.11},
     "V1 6-512, ImageNet 224, T=4 (23.4M params, 74.11%)."),
    ("sdt1_8_512", "sdt_8_512_imagenet", 8, 512, _IMAGENET, {**_CFG_IMAGENET, "top1": 74.57},
     "V1 8-512, ImageNet 224, T=4 (29.7M params, 74.57%)."),
    ("sdt1_10_512", "sdt_10_512_imagenet", 10, 512, _IMAGENET, {**_CFG_IMAGENET, "top1": 74.66},
     "V1 10-512, ImageNet 224, T=4 (36.0M params, 74.66%; the official config file is named "
     "``10_384_300E_t4.yml``)."),
    ("sdt1_8_768", "sdt_8_768_imagenet", 8, 768, _IMAGENET, {**_CFG_IMAGENET, "top1": 77.07},
     "V1 8-768, ImageNet 224, T=4 (66.3M params, 77.07%)."),
    ("sdt1_2_256_cifar10", "sdt_2_256_cifar10", 2, 256, _CIFAR10, _CFG_CIFAR10,
     "V1 2-256, CIFAR-10 32x32, T=4 (2.57M params)."),
    ("sdt1_2_512_cifar10", "sdt_2_512_cifar10", 2, 512, _CIFAR10, _CFG_CIFAR10,
     "V1 2-512, CIFAR-10 32x32, T=4 (10.2M params)."),
    ("sdt1_2_256_gesture", "sdt_2_256_gesture", 2, 256, _GESTURE, _CFG_GESTURE,
     "V1 2-256, DVS128 Gesture 128x128, 2 polarities, 11 classes, T=16 (2.57M params)."),
    ("sdt1_2_256_cifar10dvs", "sdt_2_256_cifar10dvs", 2, 256, _CIFAR10DVS, _CFG_CIFAR10DVS,
     "V1 2-256, CIFAR10-DVS 64x64, 2 polarities, T=10, attention erosion on (2.57M params)."),
)  # fmt: skip
for _name, _official, _depth, _dim, _data, _cfg, _doc in _V1:
    model_entry(
        _name,
        SpikeDrivenTransformer,
        {"depth": _depth, "embed_dim": _dim, "num_heads": 8, "mlp_ratio": 4.0, **_data},
        {**_V1_CFG, "official_name": _official, **_cfg},
        aliases=(_official,),
        doc=_doc,
    )
