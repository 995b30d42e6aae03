"""``sdt3-event train -c CONFIG [--set key=value ...] [--resume]``: train or fine-tune a model.

Multi-GPU / multi-node: launch the same command through torchrun, e.g.
``torchrun --nproc_per_node=4 -m sdt3_event.apps.cli train -c configs/hardvs_sdt3_19m.yaml``.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._errors import report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", help="experiment YAML (see configs/); defaults if omitted"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-3 --set data.root=/data/hardvs",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="continue the run's checkpoints/last.pt (or the given checkpoint) exactly",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh in a run folder that has a run"
    )
    parser.add_argument("--name", help="run name (default: the config's name)")
    parser.add_argument("--output-dir", help="parent folder of run folders (default: runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _print_event(rec: dict) -> None:
    ev = rec["event"]
    if ev == "start":
        _out(
            f"training {rec['model']} for {rec['total_epochs']} epochs x "
            f"{rec['steps_per_epoch']} steps on {rec['device']} "
            f"(world size {rec['world_size']}, lr {rec['lr']:.3g})"
            + (f", resumed at epoch {rec['start_epoch']}" if rec["resumed"] else "")
        )
    elif ev == "eval":
        ema = f"  ema top-1 {rec['ema_acc1']:.2f}" if rec.get("ema_acc1") is not None else ""
        _out(
            f"epoch {rec['epoch'] + 1}: train loss {rec['train_loss']:.4f}  val loss "
            f"{rec['loss']:.4f}  top-1 {rec['acc1']:.2f}  top-5 {rec['acc5']:.2f}{ema}  "
            f"best {rec['best_acc1']:.2f}" + ("  *" if rec["is_best"] else "")
        )
    elif ev == "end":
        _out(f"done: best top-1 {rec['best_acc1']:.2f}")


def run(args: argparse.Namespace) -> int:
    from sdt3_event.engine.distributed import exit_process, launched_distributed

    code = _run(args)
    if launched_distributed():
        exit_process(code)  # see exit_process: gloo can abort a finished process at teardown
    return code


def _run(args: argparse.Namespace) -> int:
    import yaml

    from sdt3_event.engine.config import ConfigError, load_config
    from sdt3_event.engine.runner import fit, run_dir_of
    from sdt3_event.engine.train import NonFiniteLossError

    overrides = list(args.overrides)
    if args.name:
        overrides.append(f"name={args.name}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    try:
        cfg = load_config(args.config, overrides)
    except (ConfigError, FileNotFoundError) as exc:
        return report("train", exc)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    if cfg.model.pretrained and not args.resume:
        from sdt3_event.apps.weights import fetch_for_training

        if (problem := fetch_for_training(cfg.model.name, cfg.model.pretrained)) is not None:
            sys.stderr.write(f"error: {problem}\n")
            return 1
    try:
        from sdt3_event.device import resolve_device

        resolve_device(cfg.device)  # a missing GPU is said now, not after the data is built
        result = fit(
            cfg,
            resume=args.resume,
            progress=_sample_progress() if not args.no_progress and sys.stderr.isatty() else None,
            on_event=_print_event,
            overwrite=args.overwrite,
        )
    except KeyboardInterrupt:
        sys.stderr.write(
            f"\ninterrupted. The last finished epoch is in {run_dir_of(cfg)}/checkpoints/last.pt; "
            f"continue with: sdt3-event train -c {args.config or '<config>'} --resume\n"
        )
        return 130
    except Exception as exc:  # the run's metrics.jsonl ends with a "failed" record saying why
        code = report("train", exc)
        return 1 if isinstance(exc, (FileExistsError, NonFiniteLossError)) else code
    if os.environ.get("RANK", "0") == "0":  # once, not from every torchrun process
        _out(f"run folder: {result.run_dir}")
    return 0


def _sample_progress():
    from sdt3_event.apps._progress import sample_progress

    return sample_progress()
