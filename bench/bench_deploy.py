"""ONNX deployment benchmark: latency of one window through PyTorch and onnxruntime (CPU).

    python bench/bench_deploy.py            # demo model and sdt3_10m, 30 runs each
    python bench/bench_deploy.py --smoke    # demo model, 3 runs (CI)
    python bench/bench_deploy.py --float64  # also export --precision float64 vs torch float64

Same model, same input (``(1, T, P, H, W)`` event counts), same thread count (``--threads``,
default 1) for both runtimes; median wall time of ``--runs`` calls after two warm-up calls.
onnxruntime runs with graph optimisations off (exact parity, the default of ``live --runtime
onnx``) and on (Conv+BatchNorm fusion; logits within ~1 %).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def median_ms(fn, runs: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def bench(name, model, contract, runs: int, threads: int, tmp: Path) -> list[tuple]:
    from sdt3_event.deploy import OnnxModel, export_onnx

    torch.set_num_threads(threads)
    model = model.eval()
    frames = torch.randint(0, 4, (1, *contract.frame_shape)).float()
    t0 = time.perf_counter()
    report = export_onnx(model, contract, tmp / f"{name}.onnx", model_name=name)
    export_s = time.perf_counter() - t0
    with torch.inference_mode():
        t_torch = median_ms(lambda: model(frames), runs)
    rows = [(name, "torch (eager)", t_torch, t_torch, "")]
    for optimize in (False, True):
        runtime = OnnxModel(report.path, threads=threads, optimize=optimize)
        t = median_ms(lambda runtime=runtime: runtime(frames), runs)
        label = "onnxruntime " + ("optimised" if optimize else "exact (default)")
        rows.append((name, label, t, t_torch, f"export {export_s:.0f} s"))
    return rows


def bench_float64(name, model, contract, runs: int, threads: int, tmp: Path) -> list[tuple]:
    """The float64 export against PyTorch in float64, and its largest relative difference."""
    import copy

    from sdt3_event.deploy import OnnxModel, export_onnx

    torch.set_num_threads(threads)
    model = copy.deepcopy(model).eval().double()
    frames = torch.randint(0, 4, (1, *contract.frame_shape)).double()
    t0 = time.perf_counter()
    report = export_onnx(model, contract, tmp / f"{name}64.onnx", precision="float64")
    export_s = time.perf_counter() - t0
    with torch.inference_mode():
        expected = model(frames)
        t_torch = median_ms(lambda: model(frames), runs)
    runtime = OnnxModel(report.path, threads=threads)
    rel = float((runtime(frames) - expected).abs().max()) / float(expected.abs().max() or 1.0)
    t = median_ms(lambda: runtime(frames), runs)
    return [
        (name, "torch float64 (eager)", t_torch, t_torch, ""),
        (name, "onnxruntime float64", t, t_torch, f"export {export_s:.0f} s, rel diff {rel:.1e}"),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="demo model only, 3 runs")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--float64", action="store_true", help="also the float64 export (export --precision)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs = 3

    import onnxruntime

    from sdt3_event import create_model
    from sdt3_event.assets import DEMO_CHECKPOINT
    from sdt3_event.checkpoint import load_model_from_checkpoint
    from sdt3_event.events.contract import DataContract

    demo = load_model_from_checkpoint(DEMO_CHECKPOINT, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [bench] + ([bench_float64] if args.float64 else [])
        for run in runs:
            rows += run(
                "sdt3_micro (demo)", demo.model, demo.contract, args.runs, args.threads, Path(tmp)
            )
        if not args.smoke:
            contract = DataContract((128, 128, 2), (128, 128), 4, window_us=100_000)
            model = create_model("sdt3_10m", num_classes=11, in_chans=2, T=4)
            for run in runs:
                rows += run("sdt3_10m", model, contract, args.runs, args.threads, Path(tmp))
    print(
        f"\nLatency per window, batch 1, {args.threads} thread(s), median of {args.runs} "
        f"(torch {torch.__version__}, onnxruntime {onnxruntime.__version__})"
    )
    print(f"{'model':20s} {'runtime':28s} {'ms':>8s} {'vs torch':>9s}")
    for name, label, t, t_torch, note in rows:
        print(f"{name:20s} {label:28s} {t:>8.1f} {t_torch / t:>8.2f}x  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
