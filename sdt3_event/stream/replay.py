"""Replay a recording through a model and score its windows against labelled time intervals.

This is how a ``live --record`` session is scored later (``sdt3-event eval CKPT --events
out.aedat4 --labels labels.csv``): the recording is replayed losslessly through the same pipeline
as live inference (same windows, filters and transform), and every window whose midpoint falls in
a labelled interval is compared with its label.

Labels are a CSV of ``class,start_us,end_us`` rows (``[start, end)`` on the recording's clock; a
header row is skipped). ``class`` is a class name of the model, or an integer: 1-based, as in the
DVS128 Gesture label files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LabelledInterval", "read_labels", "score_windows", "score_recording"]


@dataclass(frozen=True)
class LabelledInterval:
    label: str
    start_us: int
    end_us: int


def read_labels(path: str | Path, class_names: tuple[str, ...]) -> list[LabelledInterval]:
    """Read a label CSV (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed row or an unknown class, naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    out = []
    with path.open(newline="", encoding="utf-8") as fp:
        for lineno, row in enumerate(csv.reader(fp), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{lineno}: expected class,start_us,end_us, got {row}")
            name, start, end = (c.strip() for c in row[:3])
            try:
                start_us, end_us = int(float(start)), int(float(end))
            except ValueError:
                if lineno == 1:
                    continue  # a header
                raise ValueError(f"{path}:{lineno}: times must be numbers, got {row}") from None
            if name.isdigit():
                k = int(name)
                if not 1 <= k <= len(class_names):
                    raise ValueError(
                        f"{path}:{lineno}: class {k} outside 1..{len(class_names)} (1-based)"
                    )
                name = class_names[k - 1]
            elif name not in class_names:
                raise ValueError(
                    f"{path}:{lineno}: unknown class {name!r}; the model's: {list(class_names)}"
                )
            if end_us <= start_us:
                raise ValueError(f"{path}:{lineno}: end_us must be > start_us, got {row}")
            out.append(LabelledInterval(name, start_us, end_us))
    return out


def score_windows(
    predictions: list[dict[str, Any]], labels: list[LabelledInterval]
) -> dict[str, Any]:
    """Accuracy of prediction records (``window_start_us``, ``window_end_us``, ``labels``) over
    the windows whose midpoint lies in a labelled interval."""
    per_class: dict[str, list[int]] = {}
    correct = labelled = 0
    for rec in predictions:
        mid = (int(rec["window_start_us"]) + int(rec["window_end_us"])) // 2
        truth = next((iv.label for iv in labels if iv.start_us <= mid < iv.end_us), None)
        if truth is None:
            continue
        hit = rec["labels"][0] == truth
        labelled += 1
        correct += hit
        counts = per_class.setdefault(truth, [0, 0])
        counts[0] += hit
        counts[1] += 1
    return {
        "windows": len(predictions),
        "labelled_windows": labelled,
        "correct": correct,
        "accuracy": correct / labelled if labelled else None,
        "per_class": {k: {"correct": c, "windows": n} for k, (c, n) in sorted(per_class.items())},
    }


def score_recording(
    checkpoint: str | Path,
    events: str | Path,
    labels: str | Path,
    *,
    runtime: str = "torch",
    device: str | None = "cpu",
    stride_us: int | None = None,
    filters: str | None = None,
) -> dict[str, Any]:
    """Replay ``events`` through ``checkpoint`` (no window dropped) and score it against
    ``labels``.

    Returns:
        :func:`score_windows`'s dict plus ``"predictions"`` (the records as dicts).

    Raises:
        FileNotFoundError, ValueError: as :func:`~sdt3_event.stream.pipeline.build_pipeline`
            and :func:`read_labels`.
    """
    from sdt3_event.stream.pipeline import build_pipeline
    from sdt3_event.stream.records import Prediction

    pipeline = build_pipeline(
        f"file:{events}",
        str(checkpoint),
        source_options={"speed": 0},
        device=device,
        drop_policy="block",
        firing=False,
        energy_every=0,
        keep_frames=False,
        stride_us=stride_us,
        filters=filters,
        runtime=runtime,
    )
    intervals = read_labels(labels, pipeline.class_names)
    records = []
    with pipeline:
        while (rec := pipeline.get()) is not None:
            if isinstance(rec, Prediction):
                records.append(rec.to_dict())
    if pipeline.error:
        raise ValueError(f"replaying {events} failed: {pipeline.error}")
    result = score_windows(records, intervals)
    result["predictions"] = records
    return result
