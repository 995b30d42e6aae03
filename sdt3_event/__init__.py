"""sdt3-event: Spike-Driven Transformer V3 (and V1/V2) for event cameras.

The core library: models, neurons, spike-driven execution, event I/O, training engine and the live
pipeline. The Tonic-style datasets install as :mod:`sdt3_event.datasets`, the user-facing programs as
:mod:`sdt3_event.apps`.
"""

from sdt3_event.registry import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "list_pretrained", "register_model"]


def __getattr__(name: str):
    # list_pretrained lives with the tag table, which imports torch: load it on first use only
    if name == "list_pretrained":
        from sdt3_event.models.zoo import list_pretrained

        return list_pretrained
    raise AttributeError(f"module 'sdt3_event' has no attribute {name!r}")
