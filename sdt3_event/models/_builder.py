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
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

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
    """Input handling and state reset shared by every SDT model (V1, V2, V3).

    Subclasses set ``in_chans``, ``T`` and ``model_config`` in their constructor.
    """

    in_chans: int
    T: int
    model_config: dict[str, Any]
    pretrained_cfg: dict[str, Any]

    def record_config(self, args: dict[str, Any], **normalised: Any) -> None:
        """Keep the constructor's arguments as ``model_config`` (what rebuilds the model).

        Args:
            args: the constructor's ``locals()`` taken before any of them is reassigned.
            **normalised: values that replace the raw ones (e.g. a list for a tuple).

        ``in_chans``, ``num_classes``, ``T`` and ``D`` are stored as ints, ``norm`` (``None``
        means ``D``) and ``head_norm`` as floats; ``in_chans``, ``T`` (and ``num_classes``)
        also become attributes.
        """
        conf = {k: v for k, v in args.items() if k not in ("self", "__class__")}
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
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    valid += list(SNN_SETTINGS)
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
