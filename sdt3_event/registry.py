"""Model registry in the timm style: ``register_model`` / ``create_model`` / ``list_models``.

The model families declare their factories in :mod:`sdt3_event.models` (``model_entry``), and the
registry collects them the first time it needs them; nothing in :mod:`sdt3_event.models` imports the
registry. Official factory names (``Efficient_Spiking_Transformer_scaling_8_19M``,
``metaspikformer_8_512``, ...) are registered as aliases of the project's names (``sdt3_19m_hardvs``,
...).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads only when a model is built, so `sdt3-event --help` stays fast
    import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    aliases: tuple[str, ...] = (),
):
    """Register a model factory under ``name`` (default: the function name) and its aliases.

    Usable as ``@register_model`` or ``@register_model(aliases=("official_name",))``.

    Raises:
        ValueError: if the name or an alias is already taken by another factory.
    """

    def _register(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _MODELS and _MODELS[key] is not f:
            raise ValueError(f"model name {key!r} is already registered")
        _MODELS[key] = f
        for alias in aliases:
            if _ALIASES.get(alias, key) != key or alias in _MODELS:
                raise ValueError(f"alias {alias!r} is already registered")
            _ALIASES[alias] = key
        return f

    return _register(fn) if fn is not None else _register


def _ensure_families_loaded() -> None:
    from sdt3_event.models import MODEL_ENTRIES  # torch loads here, when a model is first needed

    for name, (factory, aliases) in MODEL_ENTRIES.items():
        if _MODELS.get(name) is not factory:
            register_model(factory, name=name, aliases=aliases)


def resolve_name(name: str) -> str:
    """Return the canonical registered name for ``name`` (which may be an official alias).

    Raises:
        KeyError: with the closest registered names when ``name`` is unknown.
    """
    _ensure_families_loaded()
    if name in _MODELS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    candidates = sorted(_MODELS) + sorted(_ALIASES)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(
        f"unknown model {name!r}.{hint} `sdt3_event.list_models()` lists all {len(_MODELS)} models."
    )


def split_name(name: str) -> tuple[str, str | None]:
    """``"sdt3_10m.in1k"`` -> ``("sdt3_10m", "in1k")``; a name without a tag -> ``(name, None)``."""
    arch, dot, tag = name.partition(".")
    return (arch, tag) if dot else (name, None)


def create_model(name: str, pretrained: bool | str | None = None, **overrides: Any) -> nn.Module:
    """Build a registered model, optionally with weights (timm style).

    Args:
        name: a registered name (``sdt3_19m_hardvs``), an official factory name, or either with a
            pretrained tag (``sdt3_83m.in1k_1x8``): the tag's arguments (``D``, ``kd``, ``T``)
            apply, and ``pretrained=True`` loads its weights.
        pretrained: ``True`` (the name's tag, else the architecture's default tag), a tag
            (``"in1k_1x8"`` or a full tag name), a checkpoint path in any official container
            layout, an ``http(s)://`` URL or ``hf-hub:org/repo[/file]``. Tags and URLs download
            once into ``$SDT3_EVENT_CACHE`` (:mod:`sdt3_event.models.zoo`). Weights load with
            :func:`sdt3_event.models.pretrained.load_pretrained`, which adapts the stem and head
            when ``in_chans`` / ``num_classes`` differ and reports every adapted key.
        **overrides: constructor arguments (``num_classes``, ``in_chans``, ``T``, ``D``, ...).

    Raises:
        KeyError: unknown name or tag (the message lists close matches).
        FileNotFoundError: ``pretrained`` names nothing loadable.
        sdt3_event.hub.DownloadError: the weights cannot be downloaded (one-line reason).
    """
    arch, tag = split_name(name)
    canonical = resolve_name(arch)
    if tag is None and (pretrained is None or pretrained is False):
        return _MODELS[canonical](**overrides)
    from sdt3_event.models.zoo import build_pretrained

    return build_pretrained(_MODELS[canonical], canonical, tag, pretrained, overrides)


def list_models(pattern: str = "*", include_aliases: bool = False) -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``."""
    _ensure_families_loaded()
    names = list(_MODELS) + (list(_ALIASES) if include_aliases else [])
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The factory function registered for ``name`` (or its alias)."""
    return _MODELS[resolve_name(name)]
