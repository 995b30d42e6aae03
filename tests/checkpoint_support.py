"""Writing the smallest checkpoint that ``load_model_from_checkpoint`` accepts (for live tests)."""

from __future__ import annotations

from pathlib import Path

from sdt3_event.checkpoint import save_checkpoint
from sdt3_event.events.contract import DataContract


def save_inference_checkpoint(path: Path, model, contract, model_name: str = "sdt3_micro") -> Path:
    """Save ``model`` (built by ``create_model(model_name, ...)``) with its data contract."""
    return save_checkpoint(
        path,
        {
            "model_name": model_name,
            "model_config": model.model_config,
            "model": model.state_dict(),
            "data_contract": contract.to_dict(),
        },
    )


def save_micro_checkpoint(path: Path, contract) -> Path:
    """Save a seeded, untrained ``sdt3_micro`` with one output per class of ``contract`` and its
    ``T``, for the live path's tests (the app path is the same as for a trained model)."""
    import torch

    from sdt3_event import create_model

    torch.manual_seed(0)
    n_classes = len(contract.class_names)
    model = create_model("sdt3_micro", num_classes=n_classes, in_chans=2, T=contract.n_time_bins)
    return save_inference_checkpoint(path, model, contract)


def assert_trained_by(checkpoint: Path, recipe: Path) -> dict:
    """Assert that ``recipe`` (a YAML config) is the config stored in ``checkpoint``; settings
    added to the config after the checkpoint was trained must keep their defaults there.

    Returns:
        the stored config.
    """
    from sdt3_event.checkpoint import load_checkpoint
    from sdt3_event.engine.config import load_config

    shipped = load_config(recipe).to_dict()
    stored = load_checkpoint(checkpoint)["config"]
    defaults = load_config(None).to_dict()
    for section in ("model", "data", "optim", "train"):
        for key in shipped[section].keys() - {"num_workers"}:  # loader workers do not change data
            value = stored[section].get(key, defaults[section][key])
            assert value == shipped[section][key], f"{section}.{key}"
    assert stored["seed"] == shipped["seed"]
    return stored


def micro_contract(
    sensor_size: tuple, input_size: tuple, window_us: int, class_names
) -> DataContract:
    """The data contract of the micro test models (``sdt3_micro`` at ``T=2``): 2 frames of
    ``window_us`` µs from a ``(W, H, P)`` sensor, counts clamped at the spike level ``D=4``."""
    return DataContract(sensor_size, input_size, 2, window_us, clamp=4, class_names=class_names)
