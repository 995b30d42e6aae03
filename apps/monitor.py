"""``sdt3-event monitor``: the terminal dashboard, for a live source or a training run folder.

    sdt3-event monitor runs/<name>                       # follow a training run's metrics.jsonl
    sdt3-event monitor --source synthetic:// --model CKPT   # live predictions from a source

This module imports no Textual and no torch at import time (the CLI imports every subcommand to build
``--help``); the apps live in ``tui/monitor_live`` and ``tui/monitor_train`` and load inside :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._errors import report
from ._model_args import add_inference_arguments, checked_device, pipeline_from_args
from ._source_args import LIVE, add_source_arguments, source_spec


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "keys, live view:     p pause/resume  r reset stats  v events/spikes  s snapshot PNG  q quit\n"
        "keys, training view: r reload  q quit\n"
        "examples:\n"
        "  sdt3-event monitor runs/demo\n"
        "  sdt3-event monitor --source file:rec.aedat4 --model runs/demo/checkpoints/best.pt\n"
    )
    parser.add_argument(
        "run",
        nargs="?",
        help="a training run folder (runs/<name>) or its metrics.jsonl to follow; "
        "omit it for the live view",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="live source URI (synthetic:, file:REC.aedat4, tcp://HOST:PORT, camera:, ...); "
        "default: the synthetic demo stream",
    )
    add_inference_arguments(parser)
    parser.add_argument(
        "--snapshot-dir",
        default=".",
        help="where the live view's snapshot key writes PNGs (default: the current folder)",
    )
    parser.add_argument(
        "--fps", type=float, default=20.0, help="most screen updates per second (default 20)"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="training view: print a text summary of the run and exit "
        "(what happens anyway when stdout is not a terminal)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=0.5,
        help="seconds between reads of metrics.jsonl in the training view (default 0.5)",
    )
    add_source_arguments(parser, LIVE)


def run_dashboard(
    pipeline: Any,
    *,
    title: str = "sdt3-event live",
    fps: float = 20.0,
    snapshot_dir: str | Path = ".",
) -> int:
    """Show the live dashboard for ``pipeline`` until the user quits; start and stop the pipeline.

    Args:
        pipeline: a ``sdt3_event.stream.pipeline.LivePipeline`` (or anything with ``start()``,
            ``stop()``, ``get(timeout)``, ``paused`` and ``reset_stats()``), not started yet.
        title: the header line.
        fps: the most screen updates per second.
        snapshot_dir: where PNG snapshots go.

    Returns:
        The exit status: 0, or 1 when the source ended in an error.
    """
    from .tui.monitor_live import LiveMonitorApp

    app = LiveMonitorApp(pipeline, title=title, fps=fps, snapshot_dir=snapshot_dir)
    try:
        code = app.run()
    finally:
        app.log_capture.uninstall()
        if not app.pipeline_stopped:
            app.pipeline_stopped = True
            pipeline.stop()
    # Warnings logged while the app owned the screen were shown as notifications; print them now.
    app.log_capture.replay()
    status = app.stats.status
    if status is not None and status.state == "error":
        sys.stderr.write(f"source error: {status.message}\n")
    return int(code or 0)


def summarize_run(path: str | Path, now: float | None = None) -> str:
    """A few lines on a run folder's ``metrics.jsonl``: position, best, latest losses, ETA.

    Args:
        path: the run folder or its ``metrics.jsonl``.
        now: unix time for the ETA and the age of the last record (default: now).
    """
    import time

    from sdt3_event.runlog import MetricsFollower, TrainingProgress

    from .tui.render import format_count, format_duration

    follower = MetricsFollower(path)
    if not follower.exists:
        return f"{follower.path}: no metrics written yet"
    pr = TrainingProgress()
    pr.update(follower.poll())
    now = time.time() if now is None else now
    frac = pr.fraction
    epoch = "?" if pr.epoch is None else min(pr.epoch + 1, pr.total_epochs or pr.epoch + 1)
    state = "finished" if pr.finished else "running or stopped"
    if pr.failed is not None:
        state = f"failed: {pr.failed}"
    elif not pr.finished and pr.last_time is not None:
        state += f" (last record {format_duration(now - pr.last_time)} ago)"
    lines = [
        f"{follower.path}: model {pr.model or '?'}, epoch {epoch}/{pr.total_epochs or '?'}, "
        f"step {pr.step if pr.step is not None else '?'}/{pr.total_steps or '?'}"
        + (f" ({100 * frac:.0f}%)" if frac is not None else "")
        + f", {state}"
    ]
    if pr.best_acc1 is not None:
        where = f" at epoch {pr.best_epoch + 1}" if pr.best_epoch is not None else ""
        lines.append(f"best acc1 {pr.best_acc1:.2f}%{where}")
    if pr.evals:
        last = pr.evals[-1]
        parts = [f"{k} {last[k]:.4g}" for k in ("acc1", "acc5", "loss") if _finite(last.get(k))]
        lines.append("last eval: " + ", ".join(parts))
    if pr.steps:
        step, loss = pr.steps[-1]
        line = f"train loss {loss:.4g} at step {step}"
        if pr.lrs:
            line += f", lr {pr.lrs[-1][1]:.3g}"
        if pr.throughput:
            line += f", {format_count(pr.throughput[-1][1])} samples/s"
        eta = pr.eta_s(now)
        if eta is not None and not pr.finished and pr.failed is None:
            line += f", ETA {format_duration(eta)}"
        lines.append(line)
    if follower.n_malformed:
        lines.append(
            f"{follower.n_malformed} malformed line(s) skipped; last {follower.malformed[-1]}"
        )
    if follower.pending:
        lines.append("the last line is still being written")
    return "\n".join(lines)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e300


def run(args: argparse.Namespace) -> int:
    for name in ("fps", "poll"):
        if not getattr(args, name) > 0:
            sys.stderr.write(f"--{name} must be > 0, got {getattr(args, name)}\n")
            return 2
    if args.run is not None:
        if args.source is not None or args.model is not None:
            sys.stderr.write(
                "give either a run folder (training view) or --source/--model (live view), not both\n"
            )
            return 2
        path = Path(args.run)
        if not path.exists():
            sys.stderr.write(
                f"{path} does not exist; pass a run folder written by `sdt3-event train` "
                "(runs/<name>) or its metrics.jsonl\n"
            )
            return 2
        if args.once or not sys.stdout.isatty():
            sys.stdout.write(summarize_run(path) + "\n")
            return 0
        from .tui.monitor_train import TrainingMonitorApp

        app = TrainingMonitorApp(path, poll_s=args.poll)
        try:
            code = app.run()
        finally:
            app.log_capture.uninstall()
        app.log_capture.replay()
        return int(code or 0)

    if not sys.stdout.isatty():
        sys.stderr.write(
            "the live dashboard needs a terminal; for records on a pipe or in a file use "
            "`sdt3-event live --source ... --json`\n"
        )
        return 2
    try:
        spec = source_spec(args, args.source or "synthetic:")
        pipeline = pipeline_from_args(args, spec, checked_device(args.device))
    except Exception as exc:
        return report("monitor", exc)
    return run_dashboard(
        pipeline,
        title=f"sdt3-event monitor · {pipeline.model_name} · {pipeline.source_uri}",
        fps=args.fps,
        snapshot_dir=args.snapshot_dir,
    )
