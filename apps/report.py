"""``sdt3-event report CKPT [--data synthetic|PATH]``: firing rates, synaptic operations, energy.

Runs the checkpoint's model over a few batches of its evaluation data and reports per-layer firing
rates and spike-level histograms, MACs / SOPs per layer, and the energy per inference by the
spiking-transformer papers' convention (printed with the numbers). Writes ``report.json`` and
``report.png`` to ``--out`` (default beside the checkpoint's run, ``runs/<name>/report/<stem>``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._errors import report as report_error
from ._model_args import add_arch_argument, checked_device
from .evaluate import data_arguments, default_out, resolve_checkpoint


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="an sdt3-event checkpoint (.pt), or a bundled model: demo, nmnist"
    )
    add_arch_argument(parser)
    parser.add_argument("--data", default=None, help="'synthetic' or the data set folder")
    parser.add_argument("--dataset", default=None, help="data set name for --data PATH")
    parser.add_argument(
        "--split",
        default=None,
        help="split to measure (default: the one the checkpoint's training run evaluated on)",
    )
    parser.add_argument("--samples", type=int, default=None, help="synthetic data: sample count")
    parser.add_argument("--batches", type=int, default=4, help="batches to measure (default 4)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-ema", action="store_true")
    parser.add_argument("--layers", action="store_true", help="print every layer, not only stages")
    parser.add_argument("--out", default=None, help="output folder for report.json / report.png")


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def plot_report(report, path: Path, title: str) -> None:
    """Three panels: firing rate per stage, spike-level histogram, energy per layer kind/stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    firing = report.firing
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    stages = list(firing["stage_rates"])
    axes[0].bar(range(len(stages)), [firing["stage_rates"][s] for s in stages], color="tab:blue")
    axes[0].set_xticks(range(len(stages)), stages, rotation=60, ha="right", fontsize=8)
    axes[0].set_ylabel("mean spikes / neuron / time step")
    axes[0].set_title("firing rate per stage")
    hist = firing["level_histogram"]
    axes[1].bar(range(len(hist)), hist, color="tab:green")
    axes[1].set_xticks(range(len(hist)))
    axes[1].set_xlabel("spike level (integer count)")
    axes[1].set_ylabel("fraction of neuron-time-steps")
    axes[1].set_yscale("log")
    axes[1].set_title("spike-level histogram")
    by_stage: dict[str, list[float]] = {}
    for row in report.layers:
        st = row["name"].split(".", 1)[0]
        acc = by_stage.setdefault(st, [0.0, 0.0])
        acc[0 if row["kind"] == "mac" else 1] += row["energy_pj"] * 1e-6
    names = list(by_stage)
    mac = [by_stage[n][0] for n in names]
    ac = [by_stage[n][1] for n in names]
    axes[2].bar(range(len(names)), mac, color="tab:red", label="MAC (4.6 pJ)")
    axes[2].bar(range(len(names)), ac, bottom=mac, color="tab:orange", label="AC (0.9 pJ)")
    axes[2].set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    top = max((m + a for m, a in zip(mac, ac, strict=True)), default=0.0)
    if top > 0:
        axes[2].set_ylim(0, top * 1.25)  # headroom: the tallest bar stays below the legend
    axes[2].set_ylabel("µJ per inference")
    axes[2].set_title(f"energy: {report.energy_pj * 1e-6:.3f} µJ per inference")
    axes[2].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader, Subset

    from sdt3_event.checkpoint import load_model_from_checkpoint
    from sdt3_event.engine.data import build_eval_dataset, recorded_split
    from sdt3_event.spikes import estimate_energy

    ckpt = resolve_checkpoint(args.checkpoint)
    try:
        device = checked_device(args.device)
        dataset, root = data_arguments(args)
        loaded = load_model_from_checkpoint(
            ckpt, device=device, use_ema=not args.no_ema, arch=args.arch
        )
        cfg = loaded.meta.get("config") or {}
        data_cfg = cfg.get("data", {})
        ds = build_eval_dataset(
            loaded.contract,
            dataset or data_cfg.get("dataset", "synthetic"),
            root=root or data_cfg.get("root"),
            split=args.split or data_cfg.get("eval_split", "test"),
            n_samples=args.samples or args.batches * args.batch_size,
            **recorded_split(cfg),
        )
    except Exception as exc:
        return report_error("report", exc)
    # a recorded split is sorted by class: measure samples spread evenly over all of it
    n = min(len(ds), args.batches * args.batch_size)
    spread = [round(i * (len(ds) - 1) / max(n - 1, 1)) for i in range(n)]
    loader = DataLoader(Subset(ds, spread), batch_size=args.batch_size, shuffle=False)
    report = estimate_energy(loaded.model, loader, max_batches=args.batches)
    f = report.firing
    _out(f"{loaded.model_name}: {report.samples} samples of {ckpt}")
    _out(
        f"contract: T={loaded.contract.n_time_bins}, input {tuple(loaded.contract.input_size)}, "
        f"window {loaded.contract.window_us} us"
    )
    _out()
    _out(f"{'stage':<16} {'rate':>7}   (mean integer spikes per neuron per time step)")
    for stage, rate in f["stage_rates"].items():
        _out(f"{stage:<16} {rate:>7.4f}")
    _out(f"{'all neurons':<16} {f['overall_rate']:>7.4f}")
    levels = "  ".join(f"{i}:{v * 100:.2f}%" for i, v in enumerate(f["level_histogram"]))
    _out(f"spike levels     {levels}")
    _out()
    rows = report.layers
    if not args.layers:
        merged: dict[str, dict] = {}
        for r in rows:
            key = r["name"].split(".", 1)[0] + (" (MAC)" if r["kind"] == "mac" else "")
            m = merged.setdefault(key, {"name": key, "macs": 0.0, "sops": 0.0, "energy_pj": 0.0})
            for k in ("macs", "sops", "energy_pj"):
                m[k] += r[k]
        rows = list(merged.values())
    _out(f"{'layer':<44} {'MACs':>9} {'SOPs':>9} {'energy uJ':>10}")
    for r in rows:
        _out(
            f"{r['name'][:44]:<44} {_fmt(r['macs']):>9} {_fmt(r['sops']):>9} "
            f"{r['energy_pj'] * 1e-6:>10.4f}"
        )
    _out()
    _out(
        f"MACs (real-valued layers) {_fmt(report.mac_ops)}  ->  {report.energy_mac_pj * 1e-6:.4f} uJ"
    )
    _out(f"SOPs (spike-driven)       {_fmt(report.sops)}  ->  {report.energy_ac_pj * 1e-6:.4f} uJ")
    _out(
        f"energy per inference      {report.energy_pj * 1e-6:.4f} uJ "
        f"(same network as a dense ANN: {report.ann_energy_pj * 1e-6:.4f} uJ)"
    )
    _out(f"convention: {report.convention}")
    out = Path(args.out) if args.out else default_out(ckpt, "report")
    out.mkdir(parents=True, exist_ok=True)
    record = report.to_dict()
    record.update(
        model_name=loaded.model_name, checkpoint=str(ckpt), data_contract=loaded.contract.to_dict()
    )
    (out / "report.json").write_text(json.dumps(record, indent=2))
    plot_report(report, out / "report.png", f"{loaded.model_name} ({report.samples} samples)")
    _out(f"wrote {out / 'report.json'} and {out / 'report.png'}")
    return 0
