"""GPU paths: AMP (bf16 / fp16 with the grad scaler), CUDA checkpoints, the executor on CUDA."""

from __future__ import annotations

import pytest
import torch
from engine.engine_toy import toy_config, toy_datasets

from sdt3_event.checkpoint import load_checkpoint, load_model_from_checkpoint
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
    """A run killed mid-epoch and resumed logs the same losses as an uninterrupted one."""
    import json

    def steps(run):
        lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        starts = [i for i, r in enumerate(lines) if r["event"] == "start"]
        return [(r["step"], r["loss"]) for r in lines[starts[-1] :] if r["event"] == "step"]

    class Killed(Exception):
        pass

    def kill_mid_epoch(rec):
        if rec["event"] == "step" and rec["step"] == 9:  # epoch 1, step 3 of 6
            raise Killed

    cfg = dict(device="cuda", train={"amp": "off"})
    full = tmp_path / "full"
    fit(toy_config(full, **cfg), datasets=toy_datasets())
    reference = steps(full / "toy")
    part = tmp_path / "part"
    with pytest.raises(Killed):
        fit(toy_config(part, **cfg), datasets=toy_datasets(), on_event=kill_mid_epoch)
    fit(toy_config(part, **cfg), datasets=toy_datasets(), resume=True)
    resumed = steps(part / "toy")
    assert [s for s, _ in resumed] == [s for s, _ in reference[6:]]
    # cuDNN may pick other kernels after a restart: equal up to float rounding
    assert [loss for _, loss in resumed] == pytest.approx(
        [loss for _, loss in reference[6:]], rel=1e-5
    )


def test_executor_on_gpu_equals_integer_model():
    from spikes.spikes_models import excite

    from sdt3_event.registry import create_model
    from sdt3_event.spikes import to_spike_driven

    model = excite(create_model("sdt3_19m_hardvs")).double().cuda()
    x = (torch.rand(1, 2, 2, 64, 64, dtype=torch.float64, device="cuda") * 3).round()
    with torch.no_grad():
        torch.testing.assert_close(to_spike_driven(model, x)(x), model(x), rtol=1e-9, atol=1e-9)
