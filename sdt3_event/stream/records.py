"""Plain records that flow from the live pipeline to its sinks (JSON lines, the Textual monitor).

They hold no tensors and import no torch, so the terminal UI can use them without loading a model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SOURCE_STATES = ("connecting", "connected", "reconnecting", "finished", "error")


@dataclass(frozen=True)
class Prediction:
    """One prediction for one window of events.

    Attributes:
        window_start_us / window_end_us: the window, in the source's timestamps.
        labels / scores: top-k class names and probabilities, best first.
        smoothed_label / smoothed_score: after temporal smoothing over recent windows.
        latency_ms: wall time from the window's last event arriving to this prediction.
        n_events: events in the window; event_rate_mev_s: their rate (Mev/s) over the window.
        firing: per-stage mean firing rate (spikes per neuron per time step), may be empty.
        energy_uj: energy per inference in microjoules by the papers' convention, if measured.
        frame: the window as ``(P, H, W)`` event counts for display; never serialised.
    """

    window_start_us: int
    window_end_us: int
    labels: tuple[str, ...]
    scores: tuple[float, ...]
    smoothed_label: str
    smoothed_score: float
    latency_ms: float
    n_events: int
    event_rate_mev_s: float
    firing: dict[str, float] = field(default_factory=dict)
    energy_uj: float | None = None
    wall_time: float = 0.0
    frame: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        return self.labels[0] if self.labels else ""

    @property
    def score(self) -> float:
        return self.scores[0] if self.scores else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("frame")
        d["labels"], d["scores"] = list(self.labels), [round(s, 6) for s in self.scores]
        return d

    def to_json(self) -> str:
        return json.dumps({"type": "prediction", **self.to_dict()}, separators=(",", ":"))


@dataclass(frozen=True)
class StreamStatus:
    """The state of the source and the pipeline's counters, emitted on every change and periodically.

    Attributes:
        state: one of ``SOURCE_STATES``.
        message: human-readable detail (the error, the reconnect delay).
        source: the source URI; model / device: what runs the inference.
        events_in: events read from the source; events_dropped: events of dropped windows, each
            counted once (in the latest window that holds it) when windows overlap.
        windows_in / windows_dropped: windows produced / dropped because inference fell behind
            (or because a window held more events than the bound).
        events_invalid: events outside the sensor, dropped on arrival; events_late: events older
            than the newest already seen, dropped; records_dropped: records nobody read in time.
    """

    state: str
    source: str = ""
    message: str = ""
    model: str = ""
    device: str = ""
    events_in: int = 0
    events_dropped: int = 0
    windows_in: int = 0
    windows_dropped: int = 0
    wall_time: float = 0.0
    events_invalid: int = 0
    events_late: int = 0
    records_dropped: int = 0

    def __post_init__(self) -> None:
        if self.state not in SOURCE_STATES:
            raise ValueError(f"state must be one of {SOURCE_STATES}, got {self.state!r}")

    def to_json(self) -> str:
        return json.dumps({"type": "status", **asdict(self)}, separators=(",", ":"))


#: What a pipeline emits and a sink writes: a prediction or a status record.
Record = Prediction | StreamStatus
