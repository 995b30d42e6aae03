"""Model benchmark: forward+backward time and peak memory of SDT-V3, linear vs official attention order.

    python bench/bench_models.py                    # CPU, batch 1, HARDVS shape (slow on CPU)
    python bench/bench_models.py --device cuda      # GPU, batch 8 (override with --batch)
    python bench/bench_models.py --smoke            # seconds: T=2, 112x112, 1 timed step

Cases: the 19M DVS model at the HARDVS shape (T=8 frames of 2x224x224) and the 10M Base model on
3x224x224 images. Each case runs twice with identical weights and input: attention in the linear
order ``Q·(Kᵀ·V)`` (this project) and in the official order ``(Q·Kᵀ)·V`` (N×N map), swapped through
:func:`sdt3_event.layers.attention.set_attention_order`. Before timing, both orders' logits are
checked to agree. ``--hw 448`` shows how the gap grows with the token count (N = (hw/16)²).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` around one training step; on CPU the peak
resident set size of a fresh subprocess per case (includes the Python/torch baseline, reported
separately). Times are the median of ``--steps`` steps after one warm-up. Results go to
``bench/results/bench_models_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def build_case(case: str, batch: int, T: int, hw: int):
    from sdt3_event.registry import create_model

    if case == "dvs19m":
        model = create_model("sdt3_19m_hardvs")
        x = (torch.rand(batch, T, 2, hw, hw) < 0.2).float()  # binary polarity frames
        shape = f"{batch}x{T}x2x{hw}x{hw}"
    elif case == "base10m":
        model = create_model("sdt3_10m")
        x = torch.randn(batch, 3, hw, hw)
        shape = f"{batch}x3x{hw}x{hw}"
    else:
        raise ValueError(f"unknown case {case!r}")
    return model, x, shape


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_case(case: str, order: str, device: str, batch: int, T: int, hw: int, steps: int) -> dict:
    """One (case, attention order): median fwd+bwd seconds and peak memory of a training step."""
    from sdt3_event.layers.attention import set_attention_order

    torch.manual_seed(0)
    model, x, shape = build_case(case, batch, T, hw)
    set_attention_order(model, order)
    model.to(device).train()
    x = x.to(device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()

    step()  # warm-up (cuDNN autotune, allocator)
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    out = {"case": case, "order": order, "input": shape, "step_s": statistics.median(times)}
    if device == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_kind"] = "cuda max_memory_allocated"
    else:
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_kind"] = "process peak RSS"
    return out


def check_orders_agree(case: str, device: str, hw: int, T: int) -> float:
    """Max |logit difference| between the two orders (eval mode, same weights and input)."""
    from sdt3_event.layers.attention import set_attention_order

    torch.manual_seed(0)
    model, x, _ = build_case(case, 1, T, hw)
    model.to(device).eval()
    x = x.to(device)
    with torch.no_grad():
        a = model(x)
        set_attention_order(model, "quadratic")
        b = model(x)
    return float((a - b).abs().max())


def child_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    res = run_case(args.case, args.order, args.device, args.batch, args.T, args.hw, args.steps)
    print("RESULT " + json.dumps(res))


def baseline_rss_mb() -> float:
    code = "import resource, torch, sdt3_event.models; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip()) / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--smoke", action="store_true", help="T=2, 112x112, 1 step")
    p.add_argument("--batch", type=int, default=None, help="default: 1 on CPU, 8 on CUDA")
    p.add_argument("--T", type=int, default=8, help="event frames of the DVS case (HARDVS: 8)")
    p.add_argument("--hw", type=int, default=224)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=max(1, min(2, torch.get_num_threads())))
    p.add_argument("--cases", default="dvs19m,base10m")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--order", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        args.T, args.hw, args.steps = 2, 112, 1
    if args.batch is None:
        args.batch = 8 if args.device == "cuda" else 1
    if args.case:  # subprocess mode (one case, one order)
        child_main(args)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; run with --device cpu", file=sys.stderr)
        return 2

    rows = []
    agree = {}
    for case in args.cases.split(","):
        agree[case] = check_orders_agree(case, args.device, min(args.hw, 112), min(args.T, 2))
        for order in ("linear", "quadratic"):
            cmd = [
                sys.executable, __file__, "--case", case, "--order", order,
                "--device", args.device, "--batch", str(args.batch), "--T", str(args.T),
                "--hw", str(args.hw), "--steps", str(args.steps), "--threads", str(args.threads),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(line[len("RESULT ") :]))

    base_mb = baseline_rss_mb() if args.device == "cpu" else 0.0
    print(
        f"\nSDT-V3 forward+backward, device={args.device}, batch={args.batch}, "
        f"threads={args.threads}, torch {torch.__version__}"
    )
    if args.device == "cpu":
        print(f"(peak RSS includes a {base_mb:.0f} MB Python+torch baseline)")
    header = f"{'case':8s} {'input':18s} {'order':9s} {'step ms':>9s} {'peak MB':>9s}"
    print(header + f" {'time x':>7s} {'mem x':>6s}")
    print("-" * (len(header) + 15))
    summary = {}
    for case in args.cases.split(","):
        lin = next(r for r in rows if r["case"] == case and r["order"] == "linear")
        quad = next(r for r in rows if r["case"] == case and r["order"] == "quadratic")
        mem_lin, mem_quad = lin["peak_mb"] - base_mb, quad["peak_mb"] - base_mb
        t_ratio = quad["step_s"] / lin["step_s"]
        m_ratio = mem_quad / mem_lin if mem_lin > 0 else float("nan")
        for r, mem in ((lin, mem_lin), (quad, mem_quad)):
            extra = f" {t_ratio:7.2f} {m_ratio:6.2f}" if r is quad else ""
            print(
                f"{case:8s} {r['input']:18s} {r['order']:9s} {r['step_s'] * 1e3:9.1f} "
                f"{mem:9.1f}{extra}"
            )
        summary[case] = {
            "time_ratio_official_over_linear": t_ratio,
            "mem_ratio_official_over_linear": m_ratio,
            "max_abs_logit_diff": agree[case],
        }
    print("ratios: official (Q·Kᵀ)·V over linear Q·(Kᵀ·V); > 1 means the linear order is better")
    print("max |logit diff| between orders:", {k: f"{v:.2e}" for k, v in agree.items()})

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench_models_{args.device}{'_smoke' if args.smoke else ''}.json"
    meta = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "batch": args.batch,
        "T": args.T,
        "hw": args.hw,
        "steps": args.steps,
        "threads": args.threads,
        "baseline_rss_mb": base_mb,
        "time": time.time(),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
