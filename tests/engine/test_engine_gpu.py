"""GPU paths: AMP (bf16 / fp16 with the grad scaler), CUDA checkpoints, the executor on CUDA."""

from __future__ import annotations

import pytest
import torch
from engine.engine_toy import toy_config, toy_datasets

from sdt3_event.engine.checkpoint import load_checkpoint, load_model_from_checkpoint
from sdt3_event.engine.runner import fit
from sdt3_event.engine.train import resolve_amp

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_fit_with_amp_on_gpu(tmp_path, amp):
    cfg = toy_config(tmp_path, device="cuda", train={"amp": amp, "epochs": 2})
    res = fit(cfg, datasets=toy_datasets())
    assert res.best_acc1 >= 80.0
    payload = load_checkpoint(tmp_path / "toy" / "checkpoints" / "last.pt")
    assert (payload["scaler"] is not None) == (amp == "fp16")
    assert (
        resolve_amp(amp, torch.device("cuda"))
        == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    )
    loaded = load_model_from_checkpoint(tmp_path / "toy" / "checkpoints" / "best.pt", "cuda")
    assert next(loaded.model.parameters()).is_cuda


def test_resume_is_exact_on_gpu(tmp_path):
    import json

    def losses(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(s)["loss"] for s in lines if json.loads(s)["event"] == "step"]

    full = tmp_path / "full"
    fit(toy_config(full, device="cuda", train={"amp": "off"}), datasets=toy_datasets())
    part = tmp_path / "part"
    fit(toy_config(part, device="cuda", train={"amp": "off", "epochs": 1}), datasets=toy_datasets())
    fit(
        toy_config(part, device="cuda", train={"amp": "off", "epochs": 3}),
        datasets=toy_datasets(),
        resume=True,
    )
    # the killed run logged steps 1..9; the resumed one re-runs from step 7 (epoch 1)
    assert losses(part / "toy")[9:] == pytest.approx(losses(full / "toy")[6:], rel=1e-5)


def test_executor_on_gpu_equals_integer_model():
    from spikes.spikes_models import excite

    from sdt3_event.registry import create_model
    from sdt3_event.spikes import to_spike_driven

    model = excite(create_model("sdt3_19m_hardvs")).double().cuda()
    x = (torch.rand(1, 2, 2, 64, 64, dtype=torch.float64, device="cuda") * 3).round()
    with torch.no_grad():
        torch.testing.assert_close(to_spike_driven(model, x)(x), model(x), rtol=1e-9, atol=1e-9)
