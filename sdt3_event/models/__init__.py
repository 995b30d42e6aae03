"""Model families; importing this package registers every factory with :mod:`sdt3_event.registry`."""

from sdt3_event.models import (
    sdt_v1,  # noqa: F401  (V1 registrations)
    sdt_v2,  # noqa: F401  (V2 registrations)
    sdt_v3,  # noqa: F401  (V3 Base / DVS / Large / MAE registrations)
)
