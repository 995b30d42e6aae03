"""Building blocks of the SDT-V3 Base and DVS models (spec §3, §3.1).

Every block works on time-major tensors ``(T, B, C, H, W)``; convolutions and BatchNorms run on the
merged ``T·B`` batch (:func:`~sdt3_event.layers.timestep.flat_apply`). Every branch starts with a
neuron whose output goes straight into a conv (or the attention product); the residual stream stays
real-valued ("membrane shortcut"). Attribute names are the official state_dict names.

``neuron`` arguments are zero-argument factories returning a fresh
:class:`~sdt3_event.layers.neurons.MultiSpike` (or subclass), so the neuron kind, D, norm, rounding
and backend are chosen once by the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from sdt3_event.layers.attention import SpikeMatMulAttention
from sdt3_event.layers.neurons import MultiSpike
from sdt3_event.layers.timestep import flat_apply

NeuronFactory = Callable[[], MultiSpike]


def _conv_bn(cin: int, cout: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    """``Sequential(Conv2d(k×k, pad k//2, no bias), BatchNorm2d)`` (keys ``0.weight``, ``1.*``)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class SpikeDownsample(nn.Module):
    """``[SN ->] conv(k, stride, bias) -> BN`` (official ``MS_DownSampling``).

    The first layer (stem) has no neuron: it encodes the raw image or event frame.

    Shape:
        ``(T, B, cin, H, W)`` -> ``(T, B, cout, H', W')``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int,
        padding: int,
        neuron: NeuronFactory | None,
    ) -> None:
        super().__init__()
        self.encode_conv = nn.Conv2d(cin, cout, kernel_size, stride, padding)
        self.encode_bn = nn.BatchNorm2d(cout)
        self.encode_spike = neuron() if neuron is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encode_spike is not None:
            x = self.encode_spike(x)
        return flat_apply(lambda t: self.encode_bn(self.encode_conv(t)), x)


class SepConvSpike(nn.Module):
    """SN -> pw 1×1 c→2c -> BN -> SN -> dw k×k -> BN -> SN -> pw 1×1 2c→c -> BN (``SepConv_Spike``).

    Shape:
        ``(T, B, c, H, W)`` -> same.
    """

    def __init__(self, dim: int, kernel_size: int, neuron: NeuronFactory) -> None:
        super().__init__()
        hidden = 2 * dim
        self.spike1 = neuron()
        self.pwconv1 = _conv_bn(dim, hidden, 1)
        self.spike2 = neuron()
        self.dwconv = _conv_bn(hidden, hidden, kernel_size, groups=hidden)
        self.spike3 = neuron()
        self.pwconv2 = _conv_bn(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = flat_apply(self.pwconv1, self.spike1(x))
        x = flat_apply(self.dwconv, self.spike2(x))
        return flat_apply(self.pwconv2, self.spike3(x))


class MetaFormerConvBlock(nn.Module):
    """The MetaFormer conv stage block of SDT-V2 and V3: a separable-conv branch, then a conv MLP.

    ``x = x + Conv(x)``; ``x = x + BN(conv3×3 hidden→c)(SN(BN(conv3×3 c→hidden)(SN(x))))``. The
    families differ only in the separable conv and the neurons, which the subclass passes in, and in
    the official names of the two MLP neurons (:attr:`NEURON_NAMES`, kept for the state_dict and
    the firing records).

    Shape:
        ``(T, B, c, H, W)`` -> same.
    """

    NEURON_NAMES = ("spike1", "spike2")

    def __init__(
        self, dim: int, hidden: int, sep_conv: nn.Module, neuron: Callable[[], nn.Module]
    ) -> None:
        super().__init__()
        first, second = self.NEURON_NAMES
        self.Conv = sep_conv
        setattr(self, first, neuron())
        self.conv1 = nn.Conv2d(dim, hidden, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        setattr(self, second, neuron())
        self.conv2 = nn.Conv2d(hidden, dim, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = (getattr(self, name) for name in self.NEURON_NAMES)
        x = x + self.Conv(x)
        y = flat_apply(lambda t: self.bn1(self.conv1(t)), first(x))
        y = flat_apply(lambda t: self.bn2(self.conv2(t)), second(y))
        return x + y


class SepConvBlock(MetaFormerConvBlock):
    """Conv stage block (official ``MS_ConvBlock_spike_SepConv``): :class:`MetaFormerConvBlock`
    with ``SepConvSpike(x, 7)`` and ``mlp_ratio`` expansion.

    Shape:
        ``(T, B, c, H, W)`` -> same.
    """

    def __init__(self, dim: int, neuron: NeuronFactory, mlp_ratio: int = 4) -> None:
        super().__init__(dim, dim * mlp_ratio, SepConvSpike(dim, 7, neuron), neuron)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Head-major split of channels (channel index = head·(ch/heads) + j).

    Shape:
        ``(T, B, ch, N)`` -> ``(T, B, heads, N, ch/heads)``.
    """
    T, B, ch, N = x.shape
    x = x.transpose(-1, -2)  # (T, B, N, ch)
    return x.reshape(T, B, N, heads, ch // heads).permute(0, 1, 3, 2, 4)  # (T, B, h, N, ch/h)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_heads`.

    Shape:
        ``(T, B, h, N, d)`` -> ``(T, B, h·d, N)``.
    """
    T, B, h, N, d = y.shape
    return y.transpose(-1, -2).reshape(T, B, h * d, N)  # (T, B, h·d, N)


class LinearSpikeAttention(nn.Module):
    """Spiking linear attention of SDT-V3 (official ``MS_Attention_linear``, λ = 4).

    ``s = SN(x)``; ``Q, K = SN(BN(W s))`` with ``c`` channels, ``V = SN(BN(W_v s))`` with ``λc``
    channels; ``Y = scale · Q·(Kᵀ·V)`` per head with ``scale = 2·(c/h)^-½`` (the official ×2 kept);
    ``out = BN(W_proj SN(Y))``.

    Shape:
        ``(T, B, c, H, W)`` -> same.
    """

    def __init__(self, dim: int, num_heads: int, neuron: NeuronFactory, lamda_ratio: int = 4):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.lamda_ratio = lamda_ratio
        dim_v = dim * lamda_ratio
        self.head_spike = neuron()
        self.q_conv = _conv_bn(dim, dim)
        self.q_spike = neuron()
        self.k_conv = _conv_bn(dim, dim)
        self.k_spike = neuron()
        self.v_conv = _conv_bn(dim, dim_v)
        self.v_spike = neuron()
        self.attn = SpikeMatMulAttention(scale=2.0 * (dim // num_heads) ** -0.5)
        self.attn_spike = neuron()
        self.proj_conv = _conv_bn(dim_v, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.head_spike(x)
        q = self.q_spike(flat_apply(self.q_conv, s)).flatten(3)  # (T, B, C, N)
        k = self.k_spike(flat_apply(self.k_conv, s)).flatten(3)  # (T, B, C, N)
        v = self.v_spike(flat_apply(self.v_conv, s)).flatten(3)  # (T, B, λC, N)
        h = self.num_heads
        y = self.attn(split_heads(q, h), split_heads(k, h), split_heads(v, h))  # (T, B, h, N, λC/h)
        y = merge_heads(y).reshape(T, B, -1, H, W)  # (T, B, λC, H, W)
        return flat_apply(self.proj_conv, self.attn_spike(y))


class SpikeMLP(nn.Module):
    """Token MLP on 1-D convs (official ``MS_MLP``): SN -> Conv1d(bias) -> BN1d -> SN -> Conv1d -> BN1d.

    Shape:
        ``(T, B, c, H, W)`` or ``(T, B, c, N)`` -> same.
    """

    def __init__(self, dim: int, hidden: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.fc1_spike = neuron()
        self.fc1_conv = nn.Conv1d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2_spike = neuron()
        self.fc2_conv = nn.Conv1d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.flatten(3)  # (T, B, c, N)
        x = flat_apply(lambda t: self.fc1_bn(self.fc1_conv(t)), self.fc1_spike(x))
        x = flat_apply(lambda t: self.fc2_bn(self.fc2_conv(t)), self.fc2_spike(x))
        return x.reshape(shape)  # (T, B, c, *spatial)


def add_layer_scales(block: nn.Module, count: int, dim: int, enabled: bool, init: float) -> None:
    """Give ``block`` the per-channel branch scales ``layer_scale1..count`` (official names, each
    ``(dim,)`` filled with ``init``) when ``enabled``; :func:`layer_scaled` applies them."""
    block.has_layer_scale = bool(enabled)
    if enabled:
        for i in range(1, count + 1):
            setattr(block, f"layer_scale{i}", nn.Parameter(torch.full((dim,), init)))


def layer_scaled(block: nn.Module, i: int, y: torch.Tensor) -> torch.Tensor:
    """Branch output ``y`` times ``block.layer_scale{i}`` along its channel axis (``y`` unchanged
    when the block has no layer scales).

    Shape:
        ``y``: ``(T, B, c, *spatial)`` -> same.
    """
    if not block.has_layer_scale:
        return y
    scale = getattr(block, f"layer_scale{i}")
    return y * scale.view(-1, *([1] * (y.dim() - 3)))  # (c, 1, ...) broadcast over the spatial axes


class SpikeTransformerBlock(nn.Module):
    """The residual transformer block of SDT-V3: token mixers, then the :class:`SpikeMLP`.

    ``x = x + branch(x)·ls`` for every branch in :attr:`BRANCHES` (official attribute names, in
    order; the ``ls`` factors ``layer_scale1..`` exist only when ``layer_scale`` is set). A subclass
    names its branches and builds its mixers in :meth:`build_mixers`, which receives the
    ``**mixer_options``.

    Args:
        dim: channels ``c``; num_heads: attention heads; neuron: the neuron factory.
        mlp_ratio: MLP expansion; layer_scale / layer_scale_init: per-branch layer scales.

    Shape:
        ``(T, B, c, H, W)`` or ``(T, B, c, N)`` -> same.
    """

    BRANCHES: tuple[str, ...] = ("attn", "mlp")

    def __init__(
        self,
        dim: int,
        num_heads: int,
        neuron: NeuronFactory,
        mlp_ratio: int = 4,
        layer_scale: bool = False,
        layer_scale_init: float = 1e-6,
        **mixer_options: bool,
    ) -> None:
        super().__init__()
        add_layer_scales(self, len(self.BRANCHES), dim, layer_scale, layer_scale_init)
        self.build_mixers(dim, num_heads, neuron, **mixer_options)
        self.mlp = SpikeMLP(dim, dim * mlp_ratio, neuron)

    def build_mixers(self, dim: int, num_heads: int, neuron: NeuronFactory) -> None:
        """Build the branches before the MLP (every name of :attr:`BRANCHES` but ``mlp``)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, name in enumerate(self.BRANCHES, 1):
            x = x + layer_scaled(self, i, getattr(self, name)(x))
        return x


class SepConvTransformerBlock(SpikeTransformerBlock):
    """Transformer block (official ``MS_Block_Spike_SepConv``), optional DVS layer scales.

    ``x = x + SepConvSpike(x, 3)·ls1``; ``x = x + Attn(x)·ls2``; ``x = x + MLP(x)·ls3`` (the ``ls``
    factors exist only when ``layer_scale`` is set; init 1e-6). Drop-path is not built (the official
    one is never applied, spec §7.3). Arguments as :class:`SpikeTransformerBlock`.

    Shape:
        ``(T, B, c, H, W)`` -> same.
    """

    BRANCHES = ("conv", "attn", "mlp")

    def build_mixers(self, dim: int, num_heads: int, neuron: NeuronFactory) -> None:
        self.conv = SepConvSpike(dim, 3, neuron)
        self.attn = LinearSpikeAttention(dim, num_heads, neuron)
