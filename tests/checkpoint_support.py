"""Writing the smallest checkpoint that ``load_model_from_checkpoint`` accepts (for live tests)."""

from __future__ import annotations

from pathlib import Path

from sdt3_event.engine.checkpoint import save_checkpoint


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
