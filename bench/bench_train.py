"""Training-step and spike-driven inference benchmarks.

For the 19M DVS model (``sdt3_19m_hardvs``, input ``(B, 8, 2, 224, 224)``) and the 10M Base model
(``sdt3_10m``, ``(B, 3, 224, 224)``) this measures one optimizer step (forward, loss, backward,
clip, AdamW step) in two forms:

* **ours**: the project's step: stateless quantiser neurons, linear-order attention ``Q·(Kᵀ·V)``;
* **official algorithm**: what the official DVS training loop does, rebuilt here: the ``N×N``
  attention order ``(Q·Kᵀ)·V``, stateful integrate-and-fire nodes called once per module on the
  whole ``[T, B, ...]`` tensor (membrane kept between calls, soft reset ``v -= s``), and a
  ``reset_net`` pass over every node after each batch.

and reports samples/s and peak memory for both, plus the cost of the spike-driven executor
(:func:`sdt3_event.spikes.to_spike_driven`) against the integer model for inference.

    python bench/bench_train.py --smoke                      # CPU, small inputs, a few seconds
    python bench/bench_train.py --device cuda --amp bf16 --compile
    python bench/bench_train.py --device cuda --batch 24 --json bench/results/train.json

Peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU each case runs in a fresh process
and reports its peak resident set size (coarse: includes the interpreter and torch, ~0.3-0.5 GB).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdt3_event.engine.train import autocast, optimizer_step, resolve_amp  # noqa: E402
from sdt3_event.layers.attention import set_attention_order  # noqa: E402
from sdt3_event.layers.neurons import MultiSpike, quantize  # noqa: E402
from sdt3_event.layers.snn import reset_net  # noqa: E402
from sdt3_event.registry import create_model  # noqa: E402


class OfficialQIFNode(nn.Module):
    """The official DVS ``Q_IFNode`` usage: a stateful IF node run as ONE step on ``[T, B, ...]``.

    ``v ← v + x``; ``s = round(clamp(v, 0, D))``; ``v ← v − s`` (reset not detached); the
    membrane persists until :meth:`reset` (the official loop's ``functional.reset_net``).
    """

    def __init__(self, D: int, norm: float):
        super().__init__()
        self.D, self.norm = D, norm
        self.v: torch.Tensor | float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v + x if isinstance(self.v, torch.Tensor) and self.v.shape == x.shape else x
        s = quantize(v, self.D)
        self.v = v - s
        return s / self.norm

    def reset(self) -> None:
        self.v = 0.0


def officialise(model: nn.Module) -> nn.Module:
    """Swap every neuron for :class:`OfficialQIFNode` and the attention to the N×N order."""
    for name, m in list(model.named_modules()):
        if isinstance(m, MultiSpike) and not isinstance(m, OfficialQIFNode):
            parent, _, attr = name.rpartition(".")
            setattr(
                model.get_submodule(parent) if parent else model, attr, OfficialQIFNode(m.D, m.norm)
            )
    set_attention_order(model, "quadratic")
    return model


CASES = {
    "sdt3_19m_hardvs": dict(kwargs={}, frames=True, T=8, size=224, classes=300),
    "sdt3_10m": dict(kwargs={}, frames=False, T=1, size=224, classes=1000),
}


def _input(case: dict, batch: int, size: int, T: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if case["frames"]:
        x = (torch.rand(batch, T, 2, size, size, generator=g) < 0.1).float()  # binary events
    else:
        x = torch.randn(batch, 3, size, size, generator=g)
    return x.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_case(name: str, variant: str, args: dict) -> dict:
    """One case: build, warm up, time ``steps`` optimizer steps; returns the measurements."""
    device = torch.device(args["device"])
    torch.manual_seed(0)
    case = CASES[name]
    size, batch = args["size"] or case["size"], args["batch"]
    T = (args["T"] or case["T"]) if case["frames"] else 1  # images carry no time axis
    model = create_model(name, **case["kwargs"]).to(device)
    if variant == "official":
        officialise(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    dtype = resolve_amp(args["amp"], device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    step_model = torch.compile(model) if args["compile"] and variant == "ours" else model
    x = _input(case, batch, size, T, device)
    y = torch.randint(0, case["classes"], (batch,), device=device)

    def step():
        with autocast(device, dtype):
            loss = F.cross_entropy(step_model(x).float(), y, label_smoothing=0.1)
        optimizer_step(loss, opt, model.parameters(), scaler=scaler, clip=1.0)
        if variant == "official":
            reset_net(model)

    for _ in range(args["warmup"]):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args["steps"]):
        step()
    _sync(device)
    dt = (time.perf_counter() - t0) / args["steps"]
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "model": name,
        "variant": variant,
        "batch": batch,
        "T": T,
        "size": size,
        "step_s": dt,
        "samples_per_s": batch / dt,
        "peak_mib": peak,
    }


@torch.no_grad()
def executor_case(name: str, args: dict) -> dict:
    """Inference latency of the integer model vs its spike-driven executor (same input)."""
    from sdt3_event.spikes import to_spike_driven

    device = torch.device(args["device"])
    torch.manual_seed(0)
    case = CASES[name]
    size, batch = args["size"] or case["size"], args["batch"]
    T = (args["T"] or case["T"]) if case["frames"] else 1
    model = create_model(name, **case["kwargs"]).to(device).eval()
    x = _input(case, batch, size, T, device)
    if not case["frames"]:
        x = x.unsqueeze(1).abs()  # (B, 1, 3, H, W): non-negative "event-like" input for the trace
    executor = to_spike_driven(model, x)
    out = {"model": name, "batch": batch, "T": T, "size": size}
    for label, m in (("integer", model), ("spike_driven", executor)):
        for _ in range(args["warmup"]):
            m(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(args["steps"]):
            m(x)
        _sync(device)
        out[f"{label}_s"] = (time.perf_counter() - t0) / args["steps"]
    err = (model(x) - executor(x)).abs().max().item()
    out["max_abs_logit_diff"] = err
    out["slowdown"] = out["spike_driven_s"] / out["integer_s"]
    return out


def _run_isolated(fn, *a):
    """Run ``fn(*a)`` in a fresh process (CPU peak memory per case)."""
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, a)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="tiny inputs (CI / CPU): B=2, T=2, 64x64")
    p.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true", help="torch.compile our step")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="input side (default 224)")
    p.add_argument("--T", type=int, default=None, help="time bins of the DVS model (default 8)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--no-executor", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    args = {
        "device": a.device,
        "amp": a.amp,
        "compile": a.compile,
        "batch": a.batch or (2 if a.smoke else 16),
        "size": a.size or (64 if a.smoke else None),
        "T": a.T or (2 if a.smoke else None),
        "steps": a.steps or (2 if a.smoke else 10),
        "warmup": 1 if a.smoke else 3,
    }
    isolated = torch.device(a.device).type == "cpu"
    print(
        f"device {a.device}, amp {a.amp}, compile {a.compile}, batch {args['batch']}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    results = {"config": args, "train": [], "executor": []}
    for name in a.models:
        rows = []
        for variant in ("ours", "official"):
            r = (
                _run_isolated(train_step_case, name, variant, args)
                if isolated
                else train_step_case(name, variant, args)
            )
            rows.append(r)
            results["train"].append(r)
        ours, off = rows
        print(
            f"{name:16s} T={ours['T']} {ours['size']}px B={ours['batch']}: "
            f"ours {ours['samples_per_s']:8.2f} samples/s {ours['peak_mib']:8.0f} MiB | "
            f"official {off['samples_per_s']:8.2f} samples/s {off['peak_mib']:8.0f} MiB | "
            f"speed x{ours['samples_per_s'] / off['samples_per_s']:.2f}, "
            f"memory x{off['peak_mib'] / max(ours['peak_mib'], 1e-9):.2f} less"
        )
        if not a.no_executor:
            e = _run_isolated(executor_case, name, args) if isolated else executor_case(name, args)
            results["executor"].append(e)
            print(
                f"{'':16s} inference: integer {e['integer_s'] * 1e3:8.1f} ms, spike-driven "
                f"{e['spike_driven_s'] * 1e3:8.1f} ms (x{e['slowdown']:.2f}), "
                f"max |logit diff| {e['max_abs_logit_diff']:.2e}"
            )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
