"""Model families (one module each: ``sdt_v1``, ``sdt_v2``, ``sdt_v3``), built by ``_builder``.

Importing this package declares every family's factories in :data:`MODEL_ENTRIES`, which
:mod:`sdt3_event.registry` registers when it first needs them.

``load_pretrained(model, path)`` loads official and sdt3-event checkpoints into a model::

    from sdt3_event.models import load_pretrained
"""

from sdt3_event.models import (
    sdt_v1,  # noqa: F401  (V1 entries)
    sdt_v2,  # noqa: F401  (V2 entries)
    sdt_v3,  # noqa: F401  (V3 Base / DVS / Large / MAE entries)
)
from sdt3_event.models._builder import MODEL_ENTRIES, SpikingModelMixin, build_model
from sdt3_event.models.pretrained import CheckpointMismatchError, LoadReport, load_pretrained

__all__ = [
    "MODEL_ENTRIES",
    "CheckpointMismatchError",
    "LoadReport",
    "SpikingModelMixin",
    "build_model",
    "load_pretrained",
]
