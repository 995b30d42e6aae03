"""TET loss: per-time-bin logits from the model's head, the loss of each bin averaged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from engine.engine_toy import toy_config, toy_datasets

from sdt3_event import create_model
from sdt3_event.engine.mixing import soft_cross_entropy
from sdt3_event.engine.runner import fit
from sdt3_event.engine.train import PerStepLogits, tet_loss, train_one_epoch


def test_tet_loss_is_the_mean_of_every_bins_loss():
    g = torch.Generator().manual_seed(0)
    per_step = torch.randn(3, 4, 5, generator=g)
    target = torch.tensor([0, 4, 2, 2])
    want = torch.stack([F.cross_entropy(o, target, label_smoothing=0.1) for o in per_step]).mean()
    torch.testing.assert_close(tet_loss(per_step, target, label_smoothing=0.1), want)
    soft = torch.softmax(torch.randn(4, 5, generator=g), -1)
    want = torch.stack([soft_cross_entropy(o, soft) for o in per_step]).mean()
    torch.testing.assert_close(tet_loss(per_step, target, soft), want)
    # one bin: the ordinary loss
    torch.testing.assert_close(tet_loss(per_step[:1], target), F.cross_entropy(per_step[0], target))
    # and not the loss of the mean over bins
    assert not torch.isclose(tet_loss(per_step, target), F.cross_entropy(per_step.mean(0), target))


def test_per_step_logits_are_the_heads_bins_and_average_to_the_output():
    torch.manual_seed(0)
    model = create_model("sdt3_micro", T=3, num_classes=4, in_chans=2).eval()
    x = torch.rand(2, 3, 2, 32, 32).mul(3).round()
    with PerStepLogits(model) as per_step, torch.no_grad():
        out = model(x)
        bins = per_step.logits(2)
        assert bins.shape == (3, 2, 4)
        torch.testing.assert_close(bins.mean(0), out)
        with pytest.raises(ValueError, match=r"per-time-bin logits \(T, 2, K\), got None"):
            per_step.logits(2)  # taken once per forward
    assert not model.head._forward_hooks  # removed on exit


def test_train_one_epoch_with_tet_learns_on_a_spiking_model():
    torch.manual_seed(0)
    model = create_model("sdt3_micro", T=2, num_classes=2, in_chans=2)
    x = torch.rand(8, 2, 2, 32, 32).mul(2).round()
    x[4:, :, :, :16] += 2  # class 1 lights the top half
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = [
        train_one_epoch(
            model, [(x, y)], opt, device=torch.device("cpu"), epoch=e, num_classes=2, tet=True
        )["loss"]
        for e in range(8)
    ]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert not model.head._forward_hooks


def test_tet_on_a_model_without_a_head_is_refused(tmp_path):
    cfg = toy_config(tmp_path)
    cfg.train.tet = True
    with pytest.raises(ValueError, match="train.tet needs a model with a `head`.*train.tet=false"):
        fit(cfg, datasets=toy_datasets())
