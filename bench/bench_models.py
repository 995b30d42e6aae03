"""Model benchmark: forward+backward time and peak memory of SDT-V3, linear vs official attention order.

    python bench/bench_models.py                    # CPU, batch 1, HARDVS shape (minutes on CPU)
    python bench/bench_models.py --device cuda      # GPU, batch 8 (override with --batch)
    python bench/bench_models.py --smoke            # seconds: T=2, 112x112, 2 timed steps

Cases: the 19M DVS model at the HARDVS shape (T=8 frames of 2x224x224) and the 10M Base model on
3x224x224 images. Each runs with identical weights and input in both attention orders: linear
``Q·(Kᵀ·V)`` (this project) and the official ``(Q·Kᵀ)·V`` (N×N map), swapped in place through
:func:`sdt3_event.layers.attention.set_attention_order`; the two orders' logits are checked first.

Timing: one training step (forward, cross-entropy, backward) per measurement, the two orders
*interleaved* step by step in one process so that load from other processes hits both alike; the
table shows the minimum and the median over ``--steps`` per order. A second table times the attention
product alone (forward+backward) at the 19M model's stage-3/4 shapes, for N = (hw/16)² tokens.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` of one step per order; on CPU the peak
resident set size of a fresh subprocess running one step (minus the Python+torch baseline).
Results: ``bench/results/bench_models_<device>[_smoke].json``.
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
ORDERS = ("linear", "quadratic")


def build_case(case: str, batch: int, T: int, hw: int):
    from sdt3_event.registry import create_model

    torch.manual_seed(0)
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


def train_step(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), labels).backward()


def time_case(case: str, device: str, batch: int, T: int, hw: int, steps: int) -> dict:
    """Interleaved step times of both orders, and (CUDA) their peak memory."""
    from sdt3_event.layers.attention import set_attention_order

    model, x, shape = build_case(case, batch, T, hw)
    model.to(device).train()
    x = x.to(device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    times: dict[str, list[float]] = {o: [] for o in ORDERS}
    peak: dict[str, float] = {}
    for order in ORDERS:  # warm-up both (allocator, cuDNN autotune)
        set_attention_order(model, order)
        train_step(model, x, labels)
    sync(device)
    if device == "cuda":
        for order in ORDERS:
            set_attention_order(model, order)
            torch.cuda.reset_peak_memory_stats()
            train_step(model, x, labels)
            sync(device)
            peak[order] = torch.cuda.max_memory_allocated() / 2**20
    for _ in range(steps):
        for order in ORDERS:
            set_attention_order(model, order)
            t0 = time.perf_counter()
            train_step(model, x, labels)
            sync(device)
            times[order].append(time.perf_counter() - t0)
    with torch.no_grad():
        model.eval()
        set_attention_order(model, "linear")
        a = model(x[:1])
        set_attention_order(model, "quadratic")
        b = model(x[:1])
    return {"case": case, "input": shape, "times": times, "peak_mb": peak,
            "max_abs_logit_diff": float((a - b).abs().max())}  # fmt: skip


def rss_child(args: argparse.Namespace) -> None:
    """Subprocess mode: one training step of one (case, order); prints the peak RSS in MB."""
    from sdt3_event.layers.attention import set_attention_order

    torch.set_num_threads(args.threads)
    model, x, _ = build_case(args.case, args.batch, args.T, args.hw)
    set_attention_order(model, args.order)
    train_step(model.train(), x, torch.zeros(args.batch, dtype=torch.long))
    print("RSS_MB", peak_rss_mb())


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (``VmHWM``; unlike ``ru_maxrss`` it is not
    inherited from the parent across fork+exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_peak_mb(args: argparse.Namespace, case: str, order: str) -> float:
    cmd = [sys.executable, __file__, "--rss-case", case, "--rss-order", order,
           "--batch", str(args.batch), "--T", str(args.T), "--hw", str(args.hw),
           "--threads", str(args.threads)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RSS_MB")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"memory subprocess failed: {out.stderr[-2000:]}")
    return float(line.split()[1])


def baseline_rss_mb() -> float:
    code = (
        "import sys, torch, sdt3_event.models; sys.path.insert(0, sys.argv[1]); "
        "import bench_models; print(bench_models.peak_rss_mb())"
    )
    cmd = [sys.executable, "-c", code, str(Path(__file__).parent)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def time_attention_core(device: str, batch: int, T: int, hw: int, repeat: int) -> list[dict]:
    """The attention product alone (fwd+bwd) at the 19M model's stage-3 and stage-4 shapes."""
    from sdt3_event.layers.attention import SpikeMatMulAttention

    rows = []
    N = (hw // 16) ** 2
    for stage, c in (("stage3", 256), ("stage4", 360)):
        h, d = 8, c // 8
        g = torch.Generator().manual_seed(0)
        q, k = (torch.randint(0, 5, (T * batch, h, N, d), generator=g).float() for _ in range(2))
        v = torch.randint(0, 5, (T * batch, h, N, 4 * d), generator=g).float()
        q, k, v = (t.to(device).requires_grad_() for t in (q, k, v))
        res = {"stage": stage, "shape": f"(T·B={T * batch}, h=8, N={N}, d={d}, dv={4 * d})"}
        times: dict[str, list[float]] = {o: [] for o in ORDERS}
        for i in range(repeat + 1):
            for order in ORDERS:
                attn = SpikeMatMulAttention(2 * d**-0.5, order=order)
                sync(device)
                t0 = time.perf_counter()
                attn(q, k, v).sum().backward()
                sync(device)
                if i:  # first round is the warm-up
                    times[order].append(time.perf_counter() - t0)
        for order in ORDERS:
            res[order + "_ms"] = min(times[order]) * 1e3
        rows.append(res)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--smoke", action="store_true", help="T=2, 112x112, 2 steps")
    p.add_argument("--batch", type=int, default=None, help="default: 1 on CPU, 8 on CUDA")
    p.add_argument("--T", type=int, default=8, help="event frames of the DVS case (HARDVS: 8)")
    p.add_argument("--hw", type=int, default=224)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=max(1, min(2, torch.get_num_threads())))
    p.add_argument("--cases", default="dvs19m,base10m")
    p.add_argument("--rss-case", help=argparse.SUPPRESS)
    p.add_argument("--rss-order", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        args.T, args.hw, args.steps = 2, 112, 2
    if args.batch is None:
        args.batch = 8 if args.device == "cuda" else 1
    if args.rss_case:
        args.case, args.order = args.rss_case, args.rss_order
        rss_child(args)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; run with --device cpu", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)

    base_mb = baseline_rss_mb() if args.device == "cpu" else 0.0
    results = []
    for case in args.cases.split(","):
        res = time_case(case, args.device, args.batch, args.T, args.hw, args.steps)
        if args.device == "cpu":
            res["peak_mb"] = {o: cpu_peak_mb(args, case, o) - base_mb for o in ORDERS}
        results.append(res)

    dev_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else (platform.processor() or platform.machine())
    )
    print(
        f"\nSDT-V3 training step (fwd+bwd), device={args.device} ({dev_name}), batch={args.batch}, "
        f"threads={args.threads}, torch {torch.__version__}, {args.steps} interleaved steps"
    )
    mem_kind = "CUDA max allocated" if args.device == "cuda" else "peak RSS minus baseline"
    print(f"memory: {mem_kind}" + (f" (baseline {base_mb:.0f} MB)" if base_mb else ""))
    print(
        f"{'case':8s} {'input':17s} {'order':9s} {'min ms':>9s} {'median ms':>10s} {'peak MB':>8s}"
    )
    summary = {}
    for res in results:
        t = res["times"]
        for order in ORDERS:
            print(
                f"{res['case']:8s} {res['input']:17s} {order:9s} {min(t[order]) * 1e3:9.1f} "
                f"{statistics.median(t[order]) * 1e3:10.1f} {res['peak_mb'][order]:8.1f}"
            )
        summary[res["case"]] = {
            "time_ratio_official_over_linear": min(t["quadratic"]) / min(t["linear"]),
            "mem_ratio_official_over_linear": res["peak_mb"]["quadratic"]
            / res["peak_mb"]["linear"],
            "max_abs_logit_diff": res["max_abs_logit_diff"],
        }
        s = summary[res["case"]]
        print(
            f"{'':8s} official/linear: time x{s['time_ratio_official_over_linear']:.2f} (min), "
            f"memory x{s['mem_ratio_official_over_linear']:.2f}; "
            f"max |logit diff| {s['max_abs_logit_diff']:.1e}"
        )

    core = []
    for hw in sorted({args.hw, 2 * args.hw}):
        core += [
            dict(r, hw=hw) for r in time_attention_core(args.device, args.batch, args.T, hw, 5)
        ]
    print("\nattention product alone (fwd+bwd, min of 5), 19M DVS shapes")
    print(f"{'hw':>4s} {'stage':7s} {'shape':42s} {'linear ms':>10s} {'N×N ms':>9s} {'ratio':>6s}")
    for r in core:
        ratio = r["quadratic_ms"] / r["linear_ms"]
        r["ratio_official_over_linear"] = ratio
        print(
            f"{r['hw']:4d} {r['stage']:7s} {r['shape']:42s} {r['linear_ms']:10.2f} "
            f"{r['quadratic_ms']:9.2f} {ratio:6.2f}"
        )
    print("ratios are official (Q·Kᵀ)·V over linear Q·(Kᵀ·V); > 1 means the linear order is better")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench_models_{args.device}{'_smoke' if args.smoke else ''}.json"
    meta = {
        "device": args.device,
        "device_name": dev_name,
        "torch": torch.__version__,
        "batch": args.batch,
        "T": args.T,
        "hw": args.hw,
        "steps": args.steps,
        "threads": args.threads,
        "baseline_rss_mb": base_mb,
        "time": time.time(),
    }
    payload = {"meta": meta, "cases": results, "summary": summary, "attention_core": core}
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
