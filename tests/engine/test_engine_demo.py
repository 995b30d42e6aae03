"""The bundled demo checkpoint: self-describing, small, matches the live stream, >= 95 % top-1."""

from __future__ import annotations

import pytest
import torch
from sdt3_event.datasets.synthetic import SYNTHETIC_CLASSES

from sdt3_event.assets import DEMO_CHECKPOINT
from sdt3_event.checkpoint import load_checkpoint, load_model_from_checkpoint


def test_demo_checkpoint_is_small_and_self_describing():
    assert DEMO_CHECKPOINT.is_file(), "the demo checkpoint must ship inside the package"
    assert DEMO_CHECKPOINT.stat().st_size < 5 * 2**20
    payload = load_checkpoint(DEMO_CHECKPOINT)  # weights_only=True
    assert payload["optimizer"] is None and payload["model_name"] == "sdt3_micro"
    loaded = load_model_from_checkpoint(DEMO_CHECKPOINT)
    c = loaded.contract
    # what the live `synthetic:` source produces: 128x128x2 sensor, 500 ms gestures
    assert c.sensor_size == (128, 128, 2) and c.window_us == 500_000
    assert c.class_names == SYNTHETIC_CLASSES and c.frame_shape == (8, 2, 64, 64)
    assert loaded.model.model_config["num_classes"] == len(SYNTHETIC_CLASSES)
    assert payload["config"]["seed"] == 42 and payload["config"]["model"]["name"] == "sdt3_micro"


def test_demo_checkpoint_was_trained_by_the_shipped_config():
    """The recipe in configs/synthetic_demo.yaml is the one stored in the shipped checkpoint."""
    from checkpoint_support import assert_trained_by
    from testpaths import REPO

    assert_trained_by(DEMO_CHECKPOINT, REPO / "configs" / "synthetic_demo.yaml")


@pytest.mark.slow
def test_demo_checkpoint_accuracy_on_synthetic_test_split():
    from sdt3_event.engine.evaluation import evaluate_checkpoint

    metrics, _ = evaluate_checkpoint(DEMO_CHECKPOINT, n_samples=300, batch_size=50)
    assert metrics["split"] == "test" and metrics["n"] == 300
    assert metrics["acc1"] >= 95.0, metrics["per_class_acc"]


@pytest.mark.slow
def test_demo_spike_driven_executor_matches():
    from sdt3_event.engine.data import build_eval_dataset
    from sdt3_event.spikes import to_spike_driven

    loaded = load_model_from_checkpoint(DEMO_CHECKPOINT)
    ds = build_eval_dataset(loaded.contract, "synthetic", n_samples=2, seed=42)
    x = torch.stack([ds[i][0] for i in range(2)]).double()  # (2, T, P, H, W)
    model = loaded.model.double()
    with torch.no_grad():
        ref = model(x)
        out = to_spike_driven(model, x[:1])(x)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_demo_eval_spike_driven_predicts_like_the_integer_model():
    from sdt3_event.engine.evaluation import evaluate_checkpoint

    ref, _ = evaluate_checkpoint(DEMO_CHECKPOINT, n_samples=10, batch_size=10)
    spk, _ = evaluate_checkpoint(DEMO_CHECKPOINT, n_samples=10, batch_size=10, spike_driven=True)
    assert spk["spike_driven"] and torch.equal(spk["confusion"], ref["confusion"])
    # float32: the plane-by-plane sums round differently and can flip an occasional spike level
    # at an exact .5 boundary, so the loss agrees closely but not bitwise (float64: exact, above)
    assert spk["loss"] == pytest.approx(ref["loss"], rel=2e-2)
