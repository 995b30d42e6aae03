"""Spike-Driven Transformer V3 (Efficient Spiking Transformer): Base, DVS, Large and MAE models.

Clean re-implementation of the official BICLab SDT-V3 architectures (spec
``../shared/reference/sdt_architecture.md``); the state_dict keys and shapes equal the official ones,
so the released checkpoints load with ``strict=True`` (see :mod:`sdt3_event.models.pretrained`).

Input convention (every model):

* event frames ``(B, T, P, H, W)``: transposed once to time-major ``(T, B, P, H, W)``; convs run on
  the merged ``T·B`` batch, neurons see ``(T, B, ...)``, logits are averaged over ``T``;
* static images ``(B, C, H, W)``: repeated ``model_config["T"]`` times along a new time axis (``T = 1``
  for the ImageNet models, as in the official Base/Large code). With the stateless quantiser the
  repeats give identical per-step logits; with ``neuron="temporal_if"`` they integrate.

Deviations from the official code (spec §7), all without effect on checkpoints: the attention is
computed as ``Q·(Kᵀ·V)`` (:class:`~sdt3_event.layers.attention.SpikeMatMulAttention`); the DVS
``Q_IFNode`` is the stateless quantiser it reduces to; the Large block takes its shape from the input
(the official 83M forward raises NameError); D and norm are constructor arguments recorded in
``model_config``; drop-path (built but never applied officially) is left out; the MAE decoder does
not scramble its tokens (spec §7.13). Kept for parity: the Large main ``head`` sees the non-spiked
pooled features while ``head_kd`` sees the spiked ones.

Registered names (official factory names are aliases):

==================  ======================================================  ============  ========
name                official                                                params        D / norm
==================  ======================================================  ============  ========
sdt3_2m             Efficient_Spiking_Transformer_t                         2,702,048     4 / 4
sdt3_5m             Efficient_Spiking_Transformer_s                         5,105,608     4 / 4
sdt3_10m            Efficient_Spiking_Transformer_m                         10,023,112    4 / 4
sdt3_19m            Efficient_Spiking_Transformer_l                         18,987,504    4 / 4
sdt3_19m_hardvs     Efficient_Spiking_Transformer_scaling_8_19M             18,740,004    4 / 1
sdt3_5m_gesture     Efficient_Spiking_Transformer_scaling_2_8M_gesture      5,604,315     4 / 8
sdt3_83m(_kd)       spikformer12_512 (kd=False / True)                      82.5M / 83.0M 4 / 4
sdt3_171m(_kd)      spikformer12_768 (kd=False / True)                      171.0M/171.7M 4 / 4
sdt3_mae_83m        spikmae_12_512                                          85,614,656    4 / 4
sdt3_mae_171m       spikmae_12_768                                          173,776,608   4 / 4
sdt3_micro          (demo/test size of the DVS layout, 11 classes)          574,803       4 / 1
==================  ======================================================  ============  ========

The Large ``1x8`` checkpoints need ``D=8`` (``create_model("sdt3_83m", D=8)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.layers.sdt3_blocks import (
    SepConvBlock,
    SepConvTransformerBlock,
    SpikeDownsample,
)
from sdt3_event.layers.sdt3_large_blocks import (
    LargeConvBlock,
    LargeTransformerBlock,
    PatchMask,
    ViTBlock,
    sparsify_convs,
)
from sdt3_event.models._builder import (
    CONV_STAGES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SpikingModelMixin,
    model_entry,
)

# The keyword settings of the V3 models (``**settings``), with the Base/DVS defaults: the data,
# the nominal image size and the neurons.
_SETTINGS = {
    **SpikingModelMixin.SETTINGS,
    "img_size": 224,
    "D": 4,
    "norm": None,
    "head_norm": 1.0,
    "rounding": "half_even",
    "inclusive": True,
    "neuron": "quant",
}


# The Large encoder (SpikFormerLarge and SpikMAE) as settings of both, with the 83M defaults.
_LARGE_ENCODER = {
    "embed_dim": (128, 256, 512),
    "depth": 12,
    "num_heads": 8,
    "mlp_ratio": 4,
    "rep_conv": True,
}


def _stage_depths(depths: int | Sequence[int]) -> tuple[int, int]:
    """``(n_block3, n_block4)``; an int uses the official DVS rule ``int(0.75·d), int(0.25·d)``."""
    if isinstance(depths, int):
        return int(depths * 0.75), int(depths * 0.25)
    d = tuple(int(v) for v in depths)
    if len(d) != 2:
        raise ValueError(f"depths must be an int or (n_block3, n_block4), got {depths!r}")
    return d  # type: ignore[return-value]


class EfficientSpikeFormer(SpikingModelMixin, nn.Module):
    """SDT-V3 Base / DVS model (official ``Spiking_vit_MetaFormer_Spike_SepConv`` and
    ``Efficient_SpikeFormer_scaling``).

    Layout: stem conv7 s2 -> ConvBlock -> ds s2 -> ConvBlock -> ds s2 -> 2 ConvBlocks -> ds s2 ->
    ``n_block3`` transformer blocks -> ds s1 -> ``n_block4`` transformer blocks -> GAP -> SN(norm 1)
    -> Linear, logits averaged over T.

    Args:
        embed_dim: stage widths C0..C3 (the stem outputs C0/2).
        depths: ``(n_block3, n_block4)`` or an int split 3:1 as in the official DVS code.
        num_heads: attention heads; mlp_ratio: MLP expansion.
        layer_scale: DVS per-branch layer scales (init ``layer_scale_init``).
        **settings: the keyword settings of every V3 model (:attr:`SETTINGS` holds the defaults):

            * ``in_chans``: input channels (3 for RGB, P=2 polarities for events);
            * ``num_classes``: classifier outputs (0 -> the head is an identity and features are
              returned);
            * ``T``: time steps a static image is repeated for (event input brings its own T);
            * ``img_size``: nominal input size (metadata only; any H, W works);
            * ``D``, ``norm``, ``rounding``, ``inclusive``: the neuron quantiser (``norm=None``
              -> D); ``head_norm``: the classifier neuron's divisor (1 in every official model);
            * ``neuron``: ``"quant"`` (stateless, official) or ``"temporal_if"`` (its backend is
              chosen with :func:`~sdt3_event.layers.snn.configure_snn` or
              ``create_model(..., backend=...)``).

    Shape:
        ``(B, T, in_chans, H, W)`` or ``(B, in_chans, H, W)`` -> ``(B, num_classes)``.
    """

    SETTINGS = _SETTINGS

    def __init__(
        self,
        embed_dim: Sequence[int] = (64, 128, 256, 360),
        depths: int | Sequence[int] = (6, 2),
        num_heads: int = 8,
        mlp_ratio: int = 4,
        layer_scale: bool = False,
        layer_scale_init: float = 1e-6,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.record_config(
            locals(), embed_dim=[int(c) for c in embed_dim], depths=list(_stage_depths(depths))
        )
        embed_dim = self.model_config["embed_dim"]
        if len(embed_dim) != 4:
            raise ValueError(f"embed_dim must have 4 stage widths, got {embed_dim}")
        n3, n4 = self.model_config["depths"]
        self.embed_dim = embed_dim
        sn = self.neuron_factory()
        c2, c3 = embed_dim[2:]

        def tblock(c: int) -> SepConvTransformerBlock:
            return SepConvTransformerBlock(
                c,
                num_heads,
                sn,
                mlp_ratio,
                layer_scale=layer_scale,
                layer_scale_init=layer_scale_init,
            )

        self.build_conv_stages(embed_dim, lambda c: SepConvBlock(c, sn, mlp_ratio), sn)
        self.block3 = nn.ModuleList([tblock(c2) for _ in range(n3)])
        self.downsample4 = SpikeDownsample(c2, c3, 3, 1, 1, sn)
        self.block4 = nn.ModuleList([tblock(c3) for _ in range(n4)])
        self.spike = sn(norm=self.model_config["head_norm"])
        self.head = nn.Linear(c3, self.num_classes) if self.num_classes > 0 else nn.Identity()
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features before pooling.

        Shape:
            input as :meth:`forward` -> ``(T, B, C3, H/16, W/16)``.
        """
        x = self.forward_conv_stages(self.to_time_major(x))  # (T, B, C2, H/16, W/16)
        for blk in self.block3:
            x = blk(x)
        x = self.downsample4(x)
        for blk in self.block4:
            x = blk(x)
        return x

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """GAP -> SN -> Linear -> mean over T.

        Shape:
            ``(T, B, C3, h, w)`` -> ``(B, num_classes)``.
        """
        x = feats.flatten(3).mean(3)  # (T, B, C3)
        x = self.head(self.spike(x))  # (T, B, classes)
        return x.mean(0)  # (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class SpikFormerLarge(SpikingModelMixin, nn.Module):
    """SDT-V3 Large classifier (official ``Spikformer`` in ``Model_Large/spikformer.py``).

    Three conv stages as in Base (ConvBlocks without SepConv) then ``depth`` transformer blocks at
    C2 on the ``H/16 × W/16`` grid, GAP, heads.

    The main ``head`` receives the **non-spiked** pooled features (as in the official code, needed for
    checkpoint parity); ``head_kd`` (``kd=True``) receives them through the norm-1 neuron ``lif``.
    :meth:`forward` returns ``(head + head_kd) / 2`` when ``kd`` (the official eval output) and
    :meth:`forward_heads` both logits for distillation training.

    Args:
        kd: build ``head_kd``. layer_scale: per-branch layer scales (finetuned models; MAE has none).
        **settings: the encoder settings this class shares with :class:`SpikMAE`
            (:data:`_LARGE_ENCODER`: ``embed_dim`` C0, C1, C2; ``depth`` transformer blocks;
            ``num_heads``; ``mlp_ratio``; ``rep_conv``, the extra ``rep_conv`` branch per block:
            official ``choice="base"``, 83M; ``"large"``, 171M, has none) and the others of
            :class:`EfficientSpikeFormer` (Large defaults: half-up rounding, exclusive window).

    Shape:
        ``(B, T, in_chans, H, W)`` or ``(B, in_chans, H, W)`` -> ``(B, num_classes)``.
    """

    SETTINGS = {**_LARGE_ENCODER, **_SETTINGS, "rounding": "half_up", "inclusive": False}

    def __init__(
        self,
        kd: bool = False,
        layer_scale: bool = True,
        layer_scale_init: float = 1e-6,
        **settings: Any,
    ) -> None:
        super().__init__()
        embed_dim = _record_large_config(self, locals(), kd=bool(kd))
        if len(embed_dim) != 3:
            raise ValueError(f"embed_dim must have 3 stage widths, got {embed_dim}")
        self.kd = self.model_config["kd"]
        self.embed_dim = embed_dim
        sn = self.neuron_factory()
        _build_large_encoder(self, layer_scale, layer_scale_init, sn)
        n = self.num_classes
        self.head = nn.Linear(embed_dim[2], n) if n > 0 else nn.Identity()
        self.lif = sn(norm=self.model_config["head_norm"])
        if self.kd:
            self.head_kd = nn.Linear(embed_dim[2], n) if n > 0 else nn.Identity()
        self.init_weights()

    @staticmethod
    def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the MAE-only keys (decoder, mask token, position tables, encoder ``norm``) so an MAE
        pre-training checkpoint initialises the classifier's encoder; other checkpoints pass
        unchanged. The layer scales and heads then stay initialised: load with ``strict=False``
        (the report lists them as missing)."""
        if "decoder_embed.weight" not in state_dict:
            return state_dict
        mae_only = ("decoder_", "mask_token", "pos_embed", "norm.")
        return {k: v for k, v in state_dict.items() if not k.startswith(mae_only)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: input as :meth:`forward` -> ``(T, B, C2, N)`` tokens (N = H/16 · W/16)."""
        return _large_encoder_forward(self, self.to_time_major(x))

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(head logits, head_kd logits or None)``, each ``(B, num_classes)``."""
        x = self.forward_features(x).mean(3)  # (T, B, C2)
        out = self.head(x).mean(0)  # (B, classes): non-spiked input, official behaviour
        out_kd = self.head_kd(self.lif(x)).mean(0) if self.kd else None
        return out, out_kd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, out_kd = self.forward_heads(x)
        return out if out_kd is None else (out + out_kd) / 2


def _record_large_config(
    m: SpikingModelMixin, args: dict[str, Any], **normalised: Any
) -> list[int]:
    """:meth:`~SpikingModelMixin.record_config` of a Large model, ``embed_dim`` (a setting,
    :data:`_LARGE_ENCODER`) stored as a list of ints; returns it."""
    embed_dim = args["settings"].get("embed_dim", _LARGE_ENCODER["embed_dim"])
    m.record_config(args, embed_dim=[int(c) for c in embed_dim], **normalised)
    return m.model_config["embed_dim"]


def _build_large_encoder(
    m: SpikingModelMixin, layer_scale: bool, layer_scale_init: float, sn: Callable[..., MultiSpike]
) -> None:
    """The conv stages and ``block3`` of a Large model, from its recorded encoder settings."""
    cfg = m.model_config
    mlp_ratio = cfg["mlp_ratio"]
    m.build_conv_stages(cfg["embed_dim"], lambda c: LargeConvBlock(c, sn, mlp_ratio), sn)
    m.block3 = nn.ModuleList(
        [
            LargeTransformerBlock(
                cfg["embed_dim"][2],
                cfg["num_heads"],
                sn,
                mlp_ratio,
                rep_conv=cfg["rep_conv"],
                layer_scale=layer_scale,
                layer_scale_init=layer_scale_init,
            )
            for _ in range(cfg["depth"])
        ]
    )


def _large_encoder_forward(m: SpikingModelMixin, x: torch.Tensor) -> torch.Tensor:
    """Large encoder on time-major input.

    Shape:
        ``(T, B, P, H, W)`` -> ``(T, B, C2, N)``.
    """
    x = m.forward_conv_stages(x).flatten(3)  # (T, B, C2, H/16, W/16) -> (T, B, C2, N)
    for blk in m.block3:
        x = blk(x)
    return x


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding in the MAE convention.

    The first half of the channels encodes the column index, the second half the row index; each
    half is ``[sin, cos]`` of ``pos · 10000^(-i/(dim/4))``, ``i = 0..dim/4-1``.

    Shape:
        output ``(grid·grid, dim)``.
    """
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4, got {dim}")
    coords = torch.arange(grid, dtype=torch.float64)
    gw, gh = torch.meshgrid(coords, coords, indexing="xy")  # each (grid, grid)

    def one_axis(pos: torch.Tensor, d: int) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))  # (d/2,)
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)  # (M, d/2)
        return torch.cat([out.sin(), out.cos()], dim=1)  # (M, d)

    emb = torch.cat([one_axis(gw, dim // 2), one_axis(gh, dim // 2)], dim=1)  # (M, dim)
    return emb.float()


class SpikMAE(SpikingModelMixin, nn.Module):
    """SDT-V3 Large MAE pre-training model (official ``MAE_SDT.Spikmae``): spiking encoder + ViT decoder.

    The encoder has the :class:`SpikFormerLarge` layout without layer scales and heads, followed by
    the mean over T and ``norm`` (BatchNorm1d). Pre-training hides random 16×16 patches (fraction
    ``mask_ratio``): the image is masked, every conv-stage conv output is re-masked and every
    conv-stage BatchNorm normalises the visible positions only (official sparse conv/BN, here with
    the mask held by the model instead of a module global). The transformer stage is dense. The
    decoder (``decoder_blocks``: pre-norm ViT blocks, dim 256, 4 heads) predicts the pixels of every
    patch; the loss is the MSE on per-patch-normalised pixels of the masked patches.

    Decoder input: like the official code, the encoder features of *all* positions (the official
    code drops no tokens, so its ``mask_token`` is never inserted). Unlike the official code the
    tokens are not randomly permuted before the position embedding (its ``ids_restore`` gather only
    scrambled them, spec §7.13). ``fill_mask_token=True`` gives the standard MAE variant that replaces
    masked positions by ``mask_token``.

    ``pos_embed`` (unused, frozen) and ``decoder_pos_embed`` (fixed sin-cos) are non-trainable
    parameters, as in the official checkpoint.

    ``**settings`` are the Large ones without ``num_classes`` and ``head_norm`` (the encoder's
    ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio`` (the decoder's too) and ``rep_conv``
    included); here ``img_size`` is the square image side the patch grid and the decoder positions
    are built for.

    Shape:
        :meth:`forward_encoder`: images ``(B, 3, 224, 224)`` -> ``(B, 196, C2)`` features.
        :meth:`forward`: images -> ``(loss, pred (B, 196, 768), mask (B, 196))``.
    """

    # the Large settings without the classifier's (num_classes, head_norm)
    SETTINGS = {
        k: v for k, v in SpikFormerLarge.SETTINGS.items() if k not in ("num_classes", "head_norm")
    }

    def __init__(
        self,
        patch_size: int = 16,
        mask_ratio: float = 0.5,
        fill_mask_token: bool = False,
        decoder_dim: int = 256,
        decoder_depth: int = 4,
        decoder_heads: int = 4,
        **settings: Any,
    ) -> None:
        super().__init__()
        embed_dim = _record_large_config(self, locals(), mask_ratio=float(mask_ratio))
        self.patch_size = patch_size
        self.img_size = img_size = self.model_config["img_size"]
        self.mask_ratio = self.model_config["mask_ratio"]
        self.fill_mask_token = bool(fill_mask_token)
        self.grid = img_size // patch_size
        sn = self.neuron_factory()
        c2 = embed_dim[2]
        self.pos_embed = nn.Parameter(  # unused by the official model too; kept for its key
            sincos_pos_embed_2d(c2, self.grid).T.unsqueeze(0), requires_grad=False
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(
            sincos_pos_embed_2d(decoder_dim, self.grid).unsqueeze(0), requires_grad=False
        )
        _build_large_encoder(self, False, 0.0, sn)
        self.patch_mask = PatchMask()
        for stage in CONV_STAGES:
            sparsify_convs(getattr(self, stage), self.patch_mask)
        self.norm = nn.BatchNorm1d(c2)
        self.decoder_embed = nn.Linear(c2, decoder_dim)
        self.decoder_blocks = nn.ModuleList(
            [
                ViTBlock(decoder_dim, decoder_heads, self.model_config["mlp_ratio"])
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size**2 * self.in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        self.init_weights()

    def random_mask(self, B: int, device: torch.device, generator: torch.Generator | None = None):
        """Random patch mask, 1 = masked. Shape: ``(B, N)`` with ``N = grid²``."""
        N = self.grid**2
        n_keep = int(N * (1 - self.mask_ratio))
        noise = torch.rand(B, N, device=device, generator=generator)
        ids = noise.argsort(dim=1)
        mask = torch.ones(B, N, device=device)
        mask.scatter_(1, ids[:, :n_keep], 0.0)
        return mask

    def forward_encoder(self, imgs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder features; ``mask`` ``(B, N)`` (1 = masked) hides those patches.

        Shape:
            ``(B, 3, H, W)`` (or ``(B, T, 3, H, W)``) -> ``(B, N, C2)``.
        """
        x = self.to_time_major(imgs)  # (T, B, 3, H, W)
        if mask is not None:
            active = 1.0 - mask.reshape(-1, 1, self.grid, self.grid).to(x.dtype)  # (B, 1, g, g)
            self.patch_mask.active = active
            x = x * self.patch_mask.expand(x.shape[1], *x.shape[-2:])  # (T, B, 3, H, W)
        try:
            x = _large_encoder_forward(self, x).mean(0)  # (B, C2, N)
        finally:
            self.patch_mask.active = None
        return self.norm(x).transpose(1, 2)  # (B, N, C2)

    def forward_decoder(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Shape: ``(B, N, C2)``, mask ``(B, N)`` -> pixel predictions ``(B, N, p²·3)``."""
        x = self.decoder_embed(latent)  # (B, N, Dd)
        if self.fill_mask_token:
            m = mask.unsqueeze(-1).to(x.dtype)
            x = x * (1 - m) + self.mask_token.to(x.dtype) * m
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """Shape: ``(B, C, H, W)`` -> ``(B, N, p²·C)`` (row-major patches, pixel-major inside)."""
        p, g = self.patch_size, self.grid
        B, C = imgs.shape[:2]
        x = imgs.reshape(B, C, g, p, g, p)  # (B, C, gh, p, gw, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(B, g * g, p * p * C)  # (B, N, p²·C)

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """MSE on per-patch-normalised pixels, averaged over masked patches."""
        target = self.patchify(imgs)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
        return (loss * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(self, imgs: torch.Tensor, mask: torch.Tensor | None = None):
        """Pre-training step: ``(loss, pred, mask)`` for images ``(B, 3, H, W)``.

        Raises:
            ValueError: the image is not ``img_size`` square (the decoder positions are fixed).
        """
        if imgs.dim() != 4 or tuple(imgs.shape[1:]) != (
            self.in_chans,
            self.img_size,
            self.img_size,
        ):
            raise ValueError(
                f"SpikMAE expects images (B, {self.in_chans}, {self.img_size}, {self.img_size}), "
                f"got {tuple(imgs.shape)}"
            )
        if mask is None:
            mask = self.random_mask(imgs.shape[0], imgs.device)
        latent = self.forward_encoder(imgs, mask)
        pred = self.forward_decoder(latent, mask)
        return self.forward_loss(imgs, pred, mask), pred, mask


# --------------------------------------------------------------------------------------------------
# registry


def _default_cfg(**kw: Any) -> dict[str, Any]:
    """V3 pretrained-config entries: ImageNet normalisation unless ``kw`` says otherwise."""
    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, **kw}


_BASE = dict(depths=(6, 2), num_heads=8, mlp_ratio=4, in_chans=3, num_classes=1000, T=1, D=4)
for _name, _official, _dims, _paper, _top1 in (
    ("sdt3_2m", "Efficient_Spiking_Transformer_t", (24, 48, 96, 128), "2.70M", None),
    ("sdt3_5m", "Efficient_Spiking_Transformer_s", (32, 64, 128, 192), "5.1M", None),
    ("sdt3_10m", "Efficient_Spiking_Transformer_m", (48, 96, 192, 240), "10M", 78.5),
    ("sdt3_19m", "Efficient_Spiking_Transformer_l", (64, 128, 256, 360), "19M", 79.8),
):
    model_entry(
        _name,
        EfficientSpikeFormer,
        {**_BASE, "embed_dim": _dims},
        _default_cfg(official_name=_official, paper_params=_paper, top1=_top1),
        aliases=(_official,),
    )

_DVS = dict(
    embed_dim=(64, 128, 256, 360),
    in_chans=2,
    D=4,
    norm=1.0,
    layer_scale=True,
    num_heads=8,
    mlp_ratio=4,
)
model_entry(
    "sdt3_19m_hardvs",
    EfficientSpikeFormer,
    {**_DVS, "depths": 8, "num_classes": 300, "T": 8},
    _default_cfg(
        official_name="Efficient_Spiking_Transformer_scaling_8_19M",
        input_size=(2, 224, 224),
        mean=None,
        std=None,
        checkpoint_files=("best.pth", "last.pth"),
        paper_params="19M",
        notes="HARDVS, 300 classes, T=8 frames of 2 binary polarity channels, D=4, norm=1",
    ),
    aliases=("Efficient_Spiking_Transformer_scaling_8_19M",),
)
model_entry(
    "sdt3_5m_gesture",
    EfficientSpikeFormer,
    {**_DVS, "depths": 2, "num_classes": 11, "T": 8, "norm": 8.0},
    _default_cfg(
        official_name="Efficient_Spiking_Transformer_scaling_2_8M_gesture",
        input_size=(2, 128, 128),
        mean=None,
        std=None,
        paper_params="8M (name); 5.6M actual",
        notes="DVS128 Gesture, 11 classes; block4 empty; official D_Norm=8 with clamp 4",
    ),
    aliases=("Efficient_Spiking_Transformer_scaling_2_8M_gesture",),
)
model_entry(
    "sdt3_micro",
    EfficientSpikeFormer,
    {
        **_DVS,
        "embed_dim": (16, 32, 64, 96),
        "depths": (1, 1),
        "num_heads": 4,
        "num_classes": 11,
        "T": 4,
    },
    _default_cfg(
        input_size=(2, 64, 64),
        mean=None,
        std=None,
        notes="small V3 DVS layout for demos and tests (no official weights)",
    ),
)

_LARGE = dict(depth=12, num_heads=8, mlp_ratio=4, in_chans=3, num_classes=1000, T=1, D=4)
for _size, _official, _dims, _rep, _files, _top1 in (
    ("83m", "spikformer12_512", (128, 256, 512), True, ("83M_1x4", "83M_1x8"), 84.0),
    (
        "171m",
        "spikformer12_768",
        (196, 384, 768),
        False,
        ("171M_1x4", "171M_1x8", "171M_1x8_384"),
        86.2,
    ),
):
    for _kd in (False, True):  # sdt3_<size> and sdt3_<size>_kd (no official name of its own)
        model_entry(
            f"sdt3_{_size}_kd" if _kd else f"sdt3_{_size}",
            SpikFormerLarge,
            {**_LARGE, "embed_dim": _dims, "rep_conv": _rep, "kd": _kd},
            _default_cfg(
                official_name=_official,
                checkpoint_files=_files,
                paper_params=_size.upper(),
                top1=_top1,
                notes="1x4 / 1x8 checkpoints: T=1 with D=4 / D=8 (D is not stored in the file)",
            ),
            aliases=() if _kd else (_official,),
        )

for _name, _official, _dims, _rep in (
    ("sdt3_mae_83m", "spikmae_12_512", (128, 256, 512), True),
    ("sdt3_mae_171m", "spikmae_12_768", (192, 384, 768), False),
):
    model_entry(
        _name,
        SpikMAE,
        {"embed_dim": _dims, "rep_conv": _rep},
        _default_cfg(official_name=_official, notes="MAE pre-training model (encoder + decoder)"),
        aliases=(_official,),
    )


__all__ = [
    "EfficientSpikeFormer",
    "SpikFormerLarge",
    "SpikMAE",
    "SpikingModelMixin",
    "sincos_pos_embed_2d",
]
