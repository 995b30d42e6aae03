"""How every model family is built and registered (timm's ``build_model_with_cfg``, in one place).

* :class:`SpikingModelMixin`: what every SDT model shares: the one transpose of its input to
  time-major ``(T, B, P, H, W)`` and ``reset_state``.
* :func:`build_model`: ``cls(**defaults | overrides)`` with the overrides checked against the
  constructor, the SNN settings (``backend``) applied through
  :func:`~sdt3_event.layers.snn.configure_snn`, and the timm-style ``pretrained_cfg`` attached.
* :func:`model_entry`: declares a registered name; :mod:`sdt3_event.registry` collects
  :data:`MODEL_ENTRIES` when it first needs them, so no family module imports the registry.
* The input normalisation constants of the pretrained configs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from sdt3_event.layers.neurons import MultiSpike, neuron_factory
from sdt3_event.layers.sdt3_blocks import SpikeDownsample
from sdt3_event.layers.snn import configure_snn, reset_modules
from sdt3_event.layers.timestep import to_time_major

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# Build-time settings that are not constructor arguments: applied by configure_snn after building.
SNN_SETTINGS = ("backend",)

# The MetaFormer conv stages of V2 and V3 (official attribute names), in forward order.
CONV_STAGES = (
    "downsample1_1",
    "ConvBlock1_1",
    "downsample1_2",
    "ConvBlock1_2",
    "downsample2",
    "ConvBlock2_1",
    "ConvBlock2_2",
    "downsample3",
)

# name -> (factory, official aliases); read by sdt3_event.registry.
MODEL_ENTRIES: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {}


class SpikingModelMixin:
    """Settings, input handling and state reset shared by every SDT model (V1, V2, V3).

    A family declares the keyword settings all its models share once, in :attr:`SETTINGS`
    (name -> the family's default): the data ones (``in_chans``, ``num_classes``, ``T``: the
    default below) and, for V3, the neuron ones (``D``, ``norm``, ``rounding``, ...).
    Constructors name only their architecture arguments and take the settings as ``**settings``;
    they call :meth:`record_config` first (it fills in the defaults and sets ``in_chans``, ``T``,
    ``num_classes`` and ``model_config``) and build V3 neurons with :meth:`neuron_factory`.
    """

    #: keyword setting -> the family's default (see the class docstring).
    SETTINGS: ClassVar[dict[str, Any]] = {"in_chans": 3, "num_classes": 1000, "T": 1}

    in_chans: int
    T: int
    model_config: dict[str, Any]
    pretrained_cfg: dict[str, Any]

    def record_config(self, args: dict[str, Any], **normalised: Any) -> None:
        """Keep the constructor's arguments as ``model_config`` (what rebuilds the model).

        Args:
            args: the constructor's ``locals()`` taken before any of them is reassigned; its
                ``settings`` (the ``**`` keywords) are checked against :attr:`SETTINGS` and
                stored with the family's defaults filled in.
            **normalised: values that replace the raw ones (e.g. a list for a tuple).

        ``in_chans``, ``num_classes``, ``T`` and ``D`` are stored as ints, ``norm`` (``None``
        means ``D``) and ``head_norm`` as floats; ``in_chans``, ``T`` (and ``num_classes``)
        also become attributes.

        Raises:
            TypeError: a keyword that is neither a constructor argument nor a setting.
            ValueError: ``T < 1`` or invalid neuron settings.
        """
        given = args.get("settings", {})
        unknown = sorted(set(given) - set(self.SETTINGS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: unknown argument(s) {unknown}; "
                f"valid arguments: {constructor_args(type(self))}"
            )
        conf = {k: v for k, v in args.items() if k not in ("self", "__class__", "settings")}
        conf.update({**self.SETTINGS, **given})
        if conf["T"] < 1:
            raise ValueError(f"T must be >= 1, got {conf['T']}")
        if "neuron" in conf:
            neuron_factory(**_neuron_settings(conf))  # validate the neuron settings as given
        conf.update(normalised)
        for key in ("in_chans", "num_classes", "T", "D"):
            if key in conf:
                conf[key] = int(conf[key])
        if "D" in conf:
            conf["norm"] = float(conf["D"] if conf.get("norm") is None else conf["norm"])
        if "head_norm" in conf:
            conf["head_norm"] = float(conf["head_norm"])
        self.model_config = conf
        self.in_chans, self.T = conf["in_chans"], conf["T"]
        if "num_classes" in conf:
            self.num_classes = conf["num_classes"]

    def init_weights(self, types: tuple[type[nn.Module], ...] = (nn.Linear,)) -> None:
        """timm's ViT initialisation, the last step of a constructor: weights of every ``types``
        module (in module order) from a normal truncated at ±2 with std 0.02, biases zero."""
        for module in self.modules():  # type: ignore[attr-defined]
            if isinstance(module, types):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def neuron_factory(self) -> Callable[..., MultiSpike]:
        """The factory of this model's neurons, from the neuron settings in ``model_config``."""
        return neuron_factory(**_neuron_settings(self.model_config))

    def build_conv_stages(
        self,
        embed_dim: Sequence[int],
        conv_block: Callable[[int], nn.Module],
        neuron: Callable[[], nn.Module],
    ) -> None:
        """Build the MetaFormer conv stages of V2 and V3 (:data:`CONV_STAGES`, official names):
        a conv7 s2 stem to ``C0/2`` (no neuron), ``conv_block(C0/2)``, ds s2 to ``C0``,
        ``conv_block(C0)``, ds s2 to ``C1``, two ``conv_block(C1)``, ds s2 to ``C2``.

        Args:
            embed_dim: the stage widths; the first three (C0, C1, C2) are used.
            conv_block: builds one ConvBlock of a width.
            neuron: the neuron factory of the downsampling layers.
        """
        c0, c1, c2 = embed_dim[:3]
        self.downsample1_1 = SpikeDownsample(self.in_chans, c0 // 2, 7, 2, 3, neuron=None)
        self.ConvBlock1_1 = nn.ModuleList([conv_block(c0 // 2)])
        self.downsample1_2 = SpikeDownsample(c0 // 2, c0, 3, 2, 1, neuron)
        self.ConvBlock1_2 = nn.ModuleList([conv_block(c0)])
        self.downsample2 = SpikeDownsample(c0, c1, 3, 2, 1, neuron)
        self.ConvBlock2_1 = nn.ModuleList([conv_block(c1)])
        self.ConvBlock2_2 = nn.ModuleList([conv_block(c1)])
        self.downsample3 = SpikeDownsample(c1, c2, 3, 2, 1, neuron)

    def forward_conv_stages(self, x: torch.Tensor) -> torch.Tensor:
        """The MetaFormer conv stages of V2 and V3: stem, ConvBlocks and downsamplings
        (:data:`CONV_STAGES`) up to ``downsample3``.

        Shape:
            ``(T, B, P, H, W)`` -> ``(T, B, C2, H/16, W/16)``.
        """
        for name in CONV_STAGES:
            stage = getattr(self, name)
            for module in stage if isinstance(stage, nn.ModuleList) else (stage,):
                x = module(x)
        return x

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Validate the input and return a time-major float tensor (the model's one transpose).

        Shape:
            ``(B, T, P, H, W)`` -> ``(T, B, P, H, W)``; ``(B, C, H, W)`` -> ``(self.T, B, C, H, W)``.

        Raises:
            TypeError: not a tensor.
            ValueError: the input is not 4-D/5-D or its channel count differs from ``in_chans``.
        """
        return to_time_major(x, self.T, self.in_chans, type(self).__name__)

    def reset_state(self) -> None:
        """Reset every submodule with a ``reset()``. The neurons start from rest on every call, so
        state never leaks between calls; this drops recorded statistics (and the state of any
        stateful module swapped in)."""
        reset_modules(self)  # type: ignore[arg-type]


def _neuron_settings(conf: dict[str, Any]) -> dict[str, Any]:
    """:func:`~sdt3_event.layers.neurons.make_neuron`'s arguments from a model's settings."""
    return {
        "kind": conf["neuron"],
        "D": conf["D"],
        "norm": conf["norm"],
        "rounding": conf["rounding"],
        "inclusive": conf["inclusive"],
    }


def constructor_args(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` takes: its named parameters and its settings."""
    params = inspect.signature(cls.__init__).parameters.values()
    named = [p.name for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    return named + list(getattr(cls, "SETTINGS", {}))


def pretrained_cfg(name: str, model_config: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The timm-style ``pretrained_cfg`` of a built model: the family's ``cfg`` over the defaults,
    with the architecture name, class count, input channels (and ``D``) of the built model."""
    out = {
        "official_name": None,
        "input_size": (3, 224, 224),
        "mean": None,
        "std": None,
        "checkpoint_files": (),
        "paper_params": None,
        "top1": None,
        "notes": "",
        "first_conv": "downsample1_1.encode_conv",
        "classifier": ("head", "head_kd"),
        **cfg,
    }
    out["architecture"] = name
    out["num_classes"] = model_config.get("num_classes", 0)
    out["input_size"] = (model_config["in_chans"], *out["input_size"][1:])
    if "D" in model_config:
        out["D"] = model_config["D"]
    return out


def build_model(
    cls: type[nn.Module],
    name: str,
    defaults: dict[str, Any],
    overrides: dict[str, Any],
    cfg: dict[str, Any],
) -> nn.Module:
    """Build ``cls(**defaults | overrides)``, configure its SNN settings, attach ``pretrained_cfg``.

    Args:
        cls: the model class.
        name: the registered name (``pretrained_cfg["architecture"]``, error messages).
        defaults: the variant's constructor arguments.
        overrides: the caller's arguments; ``backend`` goes to
            :func:`~sdt3_event.layers.snn.configure_snn` instead of the constructor.
        cfg: the variant's pretrained-config entries (see :func:`pretrained_cfg`).

    Raises:
        TypeError: an override that is not a constructor argument (the valid ones are listed).
        ValueError: an unknown backend (from ``configure_snn``) or constructor argument value.
    """
    valid = constructor_args(cls) + list(SNN_SETTINGS)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {unknown}; valid arguments: {valid}")
    kwargs = {**defaults, **overrides}
    snn = {k: kwargs.pop(k) for k in SNN_SETTINGS if k in kwargs}
    model = cls(**kwargs)
    if snn:
        configure_snn(model, **snn)
    model.pretrained_cfg = pretrained_cfg(name, model.model_config, cfg)
    return model


def entry_name(name: str) -> str:
    """The declared model ``name`` stands for: itself, or the entry it is an official alias of."""
    for key, (_, aliases) in MODEL_ENTRIES.items():
        if name in aliases:
            return key
    return name


def model_entry(
    name: str,
    cls: type[nn.Module],
    defaults: dict[str, Any],
    cfg: dict[str, Any],
    aliases: tuple[str, ...] = (),
    doc: str | None = None,
) -> Callable[..., nn.Module]:
    """Declare the registered model ``name``: a factory ``(**overrides) -> model`` that calls
    :func:`build_model`, listed in :data:`MODEL_ENTRIES` with its official ``aliases``.

    Raises:
        ValueError: ``name`` is already declared.
    """
    if name in MODEL_ENTRIES:
        raise ValueError(f"model name {name!r} is already declared")

    def factory(**overrides: Any) -> nn.Module:
        return build_model(cls, name, defaults, overrides, cfg)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc or f"{name} ({cls.__name__}); official name: {cfg.get('official_name')}."
    MODEL_ENTRIES[name] = (factory, tuple(aliases))
    return factory
