"""``sdt3-event eval CKPT [--data synthetic|PATH]``: top-1/top-5, per-class accuracy, confusion matrix.

Writes ``eval.json`` and ``confusion.png`` to ``--out``, by default beside the checkpoint's run:
``runs/<name>/eval/<checkpoint name>/`` for ``runs/<name>/checkpoints/<checkpoint name>.pt``.
``CKPT`` may be ``demo`` or ``nmnist`` for a bundled model.

``sdt3-event eval CKPT --events REC --labels CSV`` instead replays a recording (such as one made
with ``live --record``) through the model window by window and scores the windows against labelled
time intervals (:mod:`sdt3_event.stream.replay`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ._errors import report
from ._model_args import add_arch_argument, checked_device


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="an sdt3-event checkpoint (.pt), or a bundled model: demo, nmnist"
    )
    add_arch_argument(parser)
    parser.add_argument(
        "--data",
        default=None,
        help="'synthetic' or the data set folder (default: what the checkpoint was trained on)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="data set name for --data PATH (dvs_gesture, cifar10dvs, hardvs, nmnist, folder); "
        "default the checkpoint's",
    )
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--samples", type=int, default=None, help="synthetic data: sample count")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    parser.add_argument(
        "--spike-driven", action="store_true", help="evaluate the spike-driven executor"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder for eval.json / confusion.png (default: beside the checkpoint's run)",
    )
    parser.add_argument(
        "--events",
        default=None,
        metavar="REC",
        help="replay this recording (e.g. from live --record) through the model, window by "
        "window, and score it against --labels",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="CSV",
        help="with --events: rows class,start_us,end_us (class name or 1-based index)",
    )
    parser.add_argument(
        "--runtime", choices=("torch", "onnx"), default="torch", help="with --events: CKPT.onnx"
    )


def resolve_checkpoint(name: str) -> Path:
    """A checkpoint path, or a bundled model's name (``demo``, ``nmnist``)."""
    from sdt3_event.assets import bundled_checkpoint

    return bundled_checkpoint(name)


def default_out(ckpt: Path, kind: str) -> Path:
    """Where ``eval`` / ``report`` write without ``--out``: beside the checkpoint's run
    (``runs/<name>/<kind>/<stem>`` for ``runs/<name>/checkpoints/<stem>.pt``), else
    ``runs/<kind>/<bundle>`` for a bundled model (never inside the installed package) and
    ``<folder>/<stem>_<kind>`` for other files."""
    from sdt3_event.assets import BUNDLED_MODELS

    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / kind / ckpt.stem
    for bundle, path in BUNDLED_MODELS.items():
        if ckpt.resolve() == Path(path).resolve():
            return Path("runs") / kind / bundle
    return ckpt.parent / f"{ckpt.stem}_{kind}"


def data_arguments(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(dataset, root)`` from ``--data``/``--dataset``."""
    if args.data is None:
        return args.dataset, None
    if args.data == "synthetic":
        return "synthetic", None
    root = Path(args.data)
    if not root.exists():
        raise FileNotFoundError(f"--data {args.data}: no such folder")
    return args.dataset, str(root)


def plot_confusion(confusion, class_names, path: Path, title: str) -> None:
    """Row-normalised confusion matrix as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(class_names)
    size = max(4.0, min(0.45 * k + 2, 40))
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), class_names, rotation=90)
        ax.set_yticks(range(k), class_names)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(
                            j,
                            i,
                            int(cm[i, j]),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black",
                        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def run(args: argparse.Namespace) -> int:
    from sdt3_event.engine.evaluation import evaluate_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    if args.events is not None or args.labels is not None:
        return _score_recording(args, ckpt)
    try:
        dataset, root = data_arguments(args)
        metrics, loaded = evaluate_checkpoint(
            ckpt,
            dataset=dataset,
            root=root,
            split=args.split,
            n_samples=args.samples,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=checked_device(args.device),
            use_ema=not args.no_ema,
            spike_driven=args.spike_driven,
            progress=_sample_progress() if sys.stderr.isatty() else None,
            arch=args.arch,
        )
    except Exception as exc:
        return report("eval", exc)
    names = metrics["class_names"]
    _out(
        f"{metrics['model_name']} on {metrics['dataset']}/{metrics['split']} "
        f"({metrics['n']} samples, {metrics['weights']} weights"
        + (", spike-driven" if args.spike_driven else "")
        + ")"
    )
    _out(
        f"top-1 {metrics['acc1']:.2f} %   top-5 {metrics['acc5']:.2f} %   loss {metrics['loss']:.4f}"
    )
    _out()
    width = max(len(n) for n in names) if names else 5
    _out(f"{'class':<{width}}  {'n':>6}  {'acc %':>7}")
    conf = metrics["confusion"]
    for i, n in enumerate(names):
        acc = metrics["per_class_acc"][i]
        _out(
            f"{n:<{width}}  {int(conf[i].sum()):>6}  "
            + ("    n/a" if math.isnan(acc) else f"{acc:>7.2f}")
        )
    out = Path(args.out) if args.out else default_out(ckpt, "eval")
    out.mkdir(parents=True, exist_ok=True)
    record = {k: v for k, v in metrics.items() if k != "confusion"}
    record["confusion"] = conf.tolist()
    record["per_class_acc"] = [None if math.isnan(a) else a for a in metrics["per_class_acc"]]
    (out / "eval.json").write_text(json.dumps(record, indent=2))
    plot_confusion(
        conf,
        names,
        out / "confusion.png",
        f"{metrics['model_name']}: top-1 {metrics['acc1']:.1f} %",
    )
    _out(f"\nwrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0


def _score_recording(args: argparse.Namespace, ckpt: Path) -> int:
    """``eval CKPT --events REC --labels CSV``: replay and score window by window."""
    from sdt3_event.checkpoint import CheckpointError
    from sdt3_event.events.schema import EventFormatError
    from sdt3_event.stream.replay import score_recording

    if args.events is None or args.labels is None:
        sys.stderr.write("error: --events and --labels go together\n")
        return 2
    try:
        result = score_recording(
            ckpt, args.events, args.labels, runtime=args.runtime, device=checked_device(args.device)
        )
    except (FileNotFoundError, CheckpointError, EventFormatError, ValueError, ImportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    acc = result["accuracy"]
    _out(
        f"{args.events}: {result['windows']} windows, {result['labelled_windows']} labelled, "
        + ("accuracy n/a" if acc is None else f"accuracy {100 * acc:.2f} %")
    )
    for name, c in result["per_class"].items():
        _out(f"  {name:<16} {c['correct']:>5} / {c['windows']:<5}")
    out = Path(args.out) if args.out else Path("runs") / "eval" / Path(args.events).stem
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_events.json").write_text(json.dumps(result, indent=1))
    _out(f"wrote {out / 'eval_events.json'}")
    return 0


def _sample_progress():
    from sdt3_event.apps._progress import sample_progress

    return sample_progress()
