"""The main job end to end: the ``synthetic:`` stream through the bundled demo model."""

from __future__ import annotations

import pytest

from sdt3_event.stream.pipeline import build_pipeline
from sdt3_event.stream.predictor import LabeledPrediction

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_synthetic_stream_is_mostly_classified_right_by_the_demo_model(demo_checkpoint):
    p = build_pipeline(
        "synthetic:?speed=0&max_gestures=16&seed=123",
        demo_checkpoint,
        device="cpu",
        stride_us=None,
        drop_policy="block",  # lossless: every window of the finite stream is predicted
        energy_every=0,
    )
    window = p.window_us
    preds = []
    with p:
        while (r := p.get(60)) is not None:
            if isinstance(r, LabeledPrediction):
                preds.append(r)
    assert p.stats.windows_dropped == 0
    # windows aligned with a gesture (the stream's gestures last one contract window each)
    aligned = [r for r in preds if r.window_start_us % window == 0 and r.true_label is not None]
    assert len(aligned) >= 12
    assert set(p.class_names) >= {r.true_label for r in aligned}
    accuracy = sum(r.label == r.true_label for r in aligned) / len(aligned)
    assert accuracy >= 0.6, f"demo accuracy on the live stream {accuracy:.2f}"
