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

import inspect
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdt3_event.layers.lif import MultiStepLIF, check_lif_backend
from sdt3_event.registry import register_model

__all__ = [
    "SpikeDrivenTransformer",
    "SpikingPatchSplitting",
    "SpikeDrivenSelfAttention",
    "SpikingConvMLP",
    "SpikeDrivenBlock",
    "to_time_major",
    "per_frame",
    "reset_stateful_modules",
    "build_variant",
]


def to_time_major(x: torch.Tensor, T: int, in_chans: int, model_name: str) -> torch.Tensor:
    """Bring model input to the time-major layout ``(T, B, P, H, W)``.

    Event frames ``(B, T, P, H, W)`` are transposed (their own T is used); static images
    ``(B, C, H, W)`` are repeated over the model's ``T`` time steps, as the official code does.

    Raises:
        ValueError: for any other rank or a channel count different from ``in_chans``; the message
            names the expected shapes.
    """
    expected = (
        f"{model_name} expects event frames (B, T, {in_chans}, H, W) or images "
        f"(B, {in_chans}, H, W)"
    )
    if not x.is_floating_point():
        x = x.float()  # e.g. integer or boolean event counts
    if x.ndim == 5:
        if x.shape[2] != in_chans:
            raise ValueError(f"{expected}; got {tuple(x.shape)} (P={x.shape[2]} != {in_chans})")
        return x.transpose(0, 1)  # (B, T, P, H, W) -> (T, B, P, H, W)
    if x.ndim == 4:
        if x.shape[1] != in_chans:
            raise ValueError(f"{expected}; got {tuple(x.shape)} (C={x.shape[1]} != {in_chans})")
        return x.unsqueeze(0).expand(T, *x.shape)  # (B, C, H, W) -> (T, B, C, H, W)
    raise ValueError(f"{expected}; got a {x.ndim}-D tensor of shape {tuple(x.shape)}")


def reset_stateful_modules(model: nn.Module) -> None:
    """Reset every submodule that carries neuron state (anything with a ``reset()`` method).

    The LIF neurons of V1/V2 start from ``v = 0`` on every call and hold nothing between calls; this
    also covers SpikingJelly memory modules or stateful neurons swapped into a model.
    """
    for module in model.modules():
        if module is model:
            continue
        reset = getattr(module, "reset", None)
        if callable(reset):
            reset()


def per_frame(x: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """Apply per-frame modules (conv, BN, pooling) to ``(T, B, ...)`` with T and B merged.

    BatchNorm statistics are therefore shared over T and B, as in the official code.
    """
    T, B = x.shape[:2]
    y = x.flatten(0, 1)  # (T, B, ...) -> (T*B, ...)
    for module in modules:
        y = module(y)
    return y.reshape(T, B, *y.shape[1:])  # (T*B, ...) -> (T, B, ...)


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
        return per_frame(x, conv, bn)

    def _maybe_pool(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return per_frame(x, self.pool) if self.pooling_stat[i] == "1" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, sfx in enumerate(["", "1", "2"]):
            x = self._stage(i, x)
            x = getattr(self, f"proj_lif{sfx}")(x)
            x = self._maybe_pool(i, x)
        x = self._maybe_pool(3, self._stage(3, x))  # real-valued features (T, B, D, h, w)
        feat = x
        x = per_frame(self.proj_lif3(x), self.rpe_conv, self.rpe_bn)
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
        z = getattr(self, f"{name}_lif")(per_frame(s, conv, bn))  # (T, B, C, H, W)
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
        return x + per_frame(y, self.proj_conv, self.proj_bn)


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
        y = per_frame(self.fc1_lif(x), self.fc1_conv, self.fc1_bn)
        if self.inner_residual:
            y = y + identity
            identity = y
        y = per_frame(self.fc2_lif(y), self.fc2_conv, self.fc2_bn)
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


class SpikeDrivenTransformer(nn.Module):
    """Spike-Driven Transformer V1 (official ``SpikeDrivenTransformer`` / timm ``sdt``).

    Args:
        in_chans: input channels (3 for images, 2 for event polarities).
        num_classes: classifier outputs.
        embed_dim: token width D.
        depth: number of encoder blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        T: time steps a static image is repeated over (event input brings its own T).
        pooling_stat: which of the four stem stages max-pool (``"1111"`` ImageNet 224 -> 14,
            ``"0011"`` CIFAR 32 -> 8, ``"0111"`` Gesture 128 -> 16).
        backend: LIF backend (:data:`~sdt3_event.layers.lif.LIF_BACKENDS`).
        dvs_pool: the 3x3 erosion inside the attention used by the official CIFAR10-DVS model.

    Shape:
        - Input: ``(B, T, P, H, W)`` event frames or ``(B, C, H, W)`` images.
        - Output: ``(B, num_classes)`` logits averaged over T; ``(B, T, num_classes)`` with
          ``return_per_step=True`` (for the TET loss).

    Raises:
        ValueError: input of another rank or channel count.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 384,
        depth: int = 8,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        T: int = 4,
        pooling_stat: str = "1111",
        backend: str = "auto",
        dvs_pool: bool = False,
    ) -> None:
        super().__init__()
        check_lif_backend(backend)
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.model_config: dict[str, Any] = {
            "in_chans": in_chans,
            "num_classes": num_classes,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "T": T,
            "pooling_stat": pooling_stat,
            "backend": backend,
            "dvs_pool": dvs_pool,
        }
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.T = T
        self.patch_embed = SpikingPatchSplitting(in_chans, embed_dim, pooling_stat, backend)
        self.block = nn.ModuleList(
            [
                SpikeDrivenBlock(embed_dim, num_heads, mlp_ratio, backend, dvs_pool)
                for _ in range(depth)
            ]
        )
        self.head_lif = MultiStepLIF(backend=backend)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def reset_state(self) -> None:
        """Reset all neuron state (the LIF neurons also start from 0 on every call)."""
        reset_stateful_modules(self)

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
        x = to_time_major(x, self.T, self.in_chans, type(self).__name__)
        logits = self.head(self.head_lif(self.forward_features(x)))  # (T, B, classes)
        if return_per_step:
            return logits.transpose(0, 1)  # (T, B, classes) -> (B, T, classes)
        return logits.mean(0)


# --- registered variants (spec §6.1 table) -------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def build_variant(
    cls: type[nn.Module],
    name: str,
    defaults: dict[str, Any],
    overrides: dict[str, Any],
    cfg: dict[str, Any],
) -> nn.Module:
    """Build ``cls(**defaults | overrides)`` and attach a timm-style ``pretrained_cfg``.

    Raises:
        TypeError: an override that is not a constructor argument (the valid ones are listed).
    """
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {unknown}; valid arguments: {valid}")
    model = cls(**{**defaults, **overrides})
    conf = model.model_config
    model.pretrained_cfg = {
        "architecture": name,
        "num_classes": conf["num_classes"],
        "mean": None,
        "std": None,
        "checkpoint_files": (),
        "top1": None,
        "notes": "",
        **cfg,
        "input_size": (conf["in_chans"], *cfg["input_size"][1:]),
    }
    return model


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


def _v1(name: str, official: str, depth: int, dim: int, data: dict, cfg: dict, overrides: dict):
    defaults = {"depth": depth, "embed_dim": dim, "num_heads": 8, "mlp_ratio": 4.0, **data}
    cfg = {**_V1_CFG, "official_name": official, **cfg}
    return build_variant(SpikeDrivenTransformer, name, defaults, overrides, cfg)


@register_model(aliases=("sdt_8_384_imagenet",))
def sdt1_8_384(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 8-384, ImageNet 224, T=4 (16.8M params, 72.28% top-1 in the official README)."""
    cfg = {**_CFG_IMAGENET, "top1": 72.28}
    return _v1("sdt1_8_384", "sdt_8_384_imagenet", 8, 384, _IMAGENET, cfg, overrides)


@register_model(aliases=("sdt_6_512_imagenet",))
def sdt1_6_512(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 6-512, ImageNet 224, T=4 (23.4M params, 74.11%)."""
    cfg = {**_CFG_IMAGENET, "top1": 74.11}
    return _v1("sdt1_6_512", "sdt_6_512_imagenet", 6, 512, _IMAGENET, cfg, overrides)


@register_model(aliases=("sdt_8_512_imagenet",))
def sdt1_8_512(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 8-512, ImageNet 224, T=4 (29.7M params, 74.57%)."""
    cfg = {**_CFG_IMAGENET, "top1": 74.57}
    return _v1("sdt1_8_512", "sdt_8_512_imagenet", 8, 512, _IMAGENET, cfg, overrides)


@register_model(aliases=("sdt_10_512_imagenet",))
def sdt1_10_512(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 10-512, ImageNet 224, T=4 (36.0M params, 74.66%; the official config file is named
    ``10_384_300E_t4.yml``)."""
    cfg = {**_CFG_IMAGENET, "top1": 74.66}
    return _v1("sdt1_10_512", "sdt_10_512_imagenet", 10, 512, _IMAGENET, cfg, overrides)


@register_model(aliases=("sdt_8_768_imagenet",))
def sdt1_8_768(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 8-768, ImageNet 224, T=4 (66.3M params, 77.07%)."""
    cfg = {**_CFG_IMAGENET, "top1": 77.07}
    return _v1("sdt1_8_768", "sdt_8_768_imagenet", 8, 768, _IMAGENET, cfg, overrides)


@register_model(aliases=("sdt_2_256_cifar10",))
def sdt1_2_256_cifar10(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 2-256, CIFAR-10 32x32, T=4 (2.57M params)."""
    return _v1("sdt1_2_256_cifar10", "sdt_2_256_cifar10", 2, 256, _CIFAR10, _CFG_CIFAR10, overrides)


@register_model(aliases=("sdt_2_512_cifar10",))
def sdt1_2_512_cifar10(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 2-512, CIFAR-10 32x32, T=4 (10.2M params)."""
    return _v1("sdt1_2_512_cifar10", "sdt_2_512_cifar10", 2, 512, _CIFAR10, _CFG_CIFAR10, overrides)


@register_model(aliases=("sdt_2_256_gesture",))
def sdt1_2_256_gesture(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 2-256, DVS128 Gesture 128x128, 2 polarities, 11 classes, T=16 (2.57M params)."""
    return _v1("sdt1_2_256_gesture", "sdt_2_256_gesture", 2, 256, _GESTURE, _CFG_GESTURE, overrides)


@register_model(aliases=("sdt_2_256_cifar10dvs",))
def sdt1_2_256_cifar10dvs(**overrides: Any) -> SpikeDrivenTransformer:
    """V1 2-256, CIFAR10-DVS 64x64, 2 polarities, T=10, attention erosion on (2.57M params)."""
    return _v1(
        "sdt1_2_256_cifar10dvs",
        "sdt_2_256_cifar10dvs",
        2,
        256,
        _CIFAR10DVS,
        _CFG_CIFAR10DVS,
        overrides,
    )
