"""LAMB, the warm-up + cosine schedule, EMA, frame mixing and the samplers, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from sdt3_event.engine.distributed import EpochShuffleSampler, ShardSampler
from sdt3_event.engine.ema import ModelEma
from sdt3_event.engine.mixing import FrameMixer, soft_cross_entropy, soft_targets
from sdt3_event.engine.optim import Lamb, WarmupCosine, build_optimizer, param_groups


def test_lamb_first_step_by_hand():
    p = nn.Parameter(torch.tensor([3.0, 4.0]))  # ‖p‖ = 5
    p.grad = torch.tensor([1.0, -2.0])
    opt = Lamb([p], lr=0.1, betas=(0.9, 0.999), eps=0.0, weight_decay=0.5, trust_clip=False)
    opt.step()
    # step 1: m̂ = g, v̂ = g², update = g/|g| + wd·p = [1, -1] + [1.5, 2] = [2.5, 1]
    u = torch.tensor([2.5, 1.0])
    ratio = 5.0 / u.norm()
    torch.testing.assert_close(p.detach(), torch.tensor([3.0, 4.0]) - 0.1 * ratio * u)


def test_lamb_trust_clip_and_zero_weights():
    p = nn.Parameter(torch.tensor([30.0, 40.0]))
    p.grad = torch.tensor([1.0, 1.0])
    Lamb([p], lr=0.1, eps=0.0, weight_decay=0.0, trust_clip=True).step()
    torch.testing.assert_close(p.detach(), torch.tensor([29.9, 39.9]))  # ratio 50/√2 clipped to 1
    z = nn.Parameter(torch.zeros(2))
    z.grad = torch.tensor([1.0, -1.0])
    Lamb([z], lr=0.1, eps=0.0, weight_decay=0.0).step()  # ‖p‖ = 0 -> ratio 1
    torch.testing.assert_close(z.detach(), torch.tensor([-0.1, 0.1]))


def test_weight_decay_groups_skip_1d_params():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = param_groups(model, 0.05)
    assert [len(g["params"]) for g in groups] == [2, 4]  # conv/linear weights | biases + BN
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert isinstance(build_optimizer(model, "lamb", 1e-3, 0.05), Lamb)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(model, "sgd", 1e-3, 0.05)


def test_warmup_cosine_schedule():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = WarmupCosine(opt, total_steps=20, warmup_steps=10, min_lr=0.0, warmup_lr=0.0)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[:3] == pytest.approx([0.0, 0.1, 0.2]) and lrs[10] == pytest.approx(1.0)
    assert lrs[15] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([p], lr=1.0)
    s2 = WarmupCosine(opt2, total_steps=20, warmup_steps=10, min_lr=0.0, warmup_lr=0.0)
    s2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_ema_update_and_integer_buffers():
    model = nn.BatchNorm1d(2)
    ema = ModelEma(model, decay=0.75)
    with torch.no_grad():
        model.weight.fill_(5.0)
        model.num_batches_tracked.fill_(7)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, torch.full((2,), 0.75 * 1 + 0.25 * 5))
    assert int(ema.module.num_batches_tracked) == 7  # copied, not averaged


def test_mixer_soft_targets_and_cutmix_box():
    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2, 1])
    st = soft_targets(y, 3, 0.3)
    torch.testing.assert_close(st.sum(1), torch.ones(4))
    assert st[0, 0] == pytest.approx(0.8) and st[0, 1] == pytest.approx(0.1)
    frames = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 2, 2, 8, 8).clone()
    mixer = FrameMixer(3, mixup_alpha=0.0, cutmix_alpha=1.0)
    out, soft = mixer(frames, y)
    torch.testing.assert_close(soft.sum(1), torch.ones(4))
    # every pixel comes from the sample itself or its mirror in the batch; same box for all T
    assert torch.equal(out[:, 0], out[:, 1])
    lam = float((out[0] == 0).float().mean())
    assert soft[0, 0] == pytest.approx(lam, abs=1e-6) or lam == 1.0
    loss = soft_cross_entropy(torch.zeros(4, 3), soft)
    assert loss == pytest.approx(math.log(3))


def test_samplers_partition_and_reseed():
    a = EpochShuffleSampler(10, seed=1, rank=0, world_size=2)
    b = EpochShuffleSampler(10, seed=1, rank=1, world_size=2)
    assert sorted(list(a) + list(b)) == list(range(10)) and len(a) == 5
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) != []
    a.set_epoch(0)
    assert list(a) == first
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    assert [len(ShardSampler(7, r, 3)) for r in range(3)] == [3, 2, 2]
