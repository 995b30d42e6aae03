"""``sdt3-event live``: run a live event stream through a model.

With no arguments it streams ``synthetic:`` through the bundled demo model. On a terminal it shows
the Textual monitor; when stdout is not a terminal (a pipe, a file) it writes JSON lines, one record
per line (see :mod:`sdt3_event.stream.sinks`). Ctrl-C (or SIGTERM) stops the stream cleanly.

Exit status: 0 when the stream ended or a limit was reached, 1 when it failed (the last status record
says why), 2 for bad arguments (missing checkpoint, unknown source, a sensor that does not fit the
model), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ._errors import UsageError, report
from ._model_args import add_inference_arguments, checked_device, pipeline_from_args
from ._source_args import LIVE, add_source_arguments, source_spec


def configure(parser: argparse.ArgumentParser) -> None:
    from sdt3_event.events.filters import FILTER_GRAMMAR

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "sources: synthetic: (default), file:REC.aedat4[?speed=2&loop=1], tcp://HOST:PORT,\n"
        "         camera:[SERIAL], webcam:N, video:CLIP.mp4\n"
        "         every source option is also a flag: ?sensor=640x480 is --sensor 640x480\n"
        "examples:\n"
        "  sdt3-event live\n"
        "  sdt3-event live --source file:rec.aedat4 --speed 0 --jsonl out.jsonl --max-windows 100\n"
        "  sdt3-event live --source tcp://127.0.0.1:7777 --model runs/x/checkpoints/best.pt\n"
        '  sdt3-event live --source file:rec.aedat4 --filter "ba:2000,roi:0,0,320,240"\n'
        "  sdt3-event live --model nmnist --clip --source file:Test/3/00001.bin\n"
        "\n" + FILTER_GRAMMAR
    )
    parser.add_argument("--source", default="synthetic:", help="source URI (default: synthetic:)")
    add_inference_arguments(parser)
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default="torch",
        help="onnx: run --model OUT.onnx (from `sdt3-event export`) with onnxruntime on the CPU",
    )
    parser.add_argument("--window-us", type=int, default=None, help="window length (µs)")
    parser.add_argument("--stride-us", type=int, default=None, help="window stride (µs)")
    parser.add_argument(
        "--clip",
        action="store_true",
        help="one window per recording, binned from its first event as in training "
        "(N-MNIST .bin files)",
    )
    parser.add_argument("--jsonl", default=None, metavar="FILE", help="also write JSON lines here")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="on CUDA, replay the forward pass from a captured CUDA graph (no firing statistics)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run the forward pass as a TorchScript trace, checked equal to the eager model "
        "(faster on CPU beside a busy reader; no firing statistics)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU inference threads (default: all cores but one, left to the reader)",
    )
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument(
        "--max-windows",
        type=int,
        default=None,
        metavar="N",
        help="stop after N predictions (the monitor then shows the ended stream until q)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    parser.add_argument("--top-k", type=int, default=5, help="classes per prediction")
    parser.add_argument(
        "--record",
        default=None,
        metavar="OUT.aedat4",
        help="record the events to AEDAT 4.0 while inferring (after --filter / the checkpoint's "
        "filters); predictions go beside it to OUT.predictions.jsonl",
    )
    parser.add_argument(
        "--record-raw", action="store_true", help="record the events before the filters"
    )
    parser.add_argument(
        "--record-max-mb",
        type=float,
        default=None,
        metavar="MB",
        help="start a new file (OUT-001.aedat4, ...) every MB megabytes",
    )
    parser.add_argument(
        "--filter",
        default=None,
        metavar="SPEC",
        help="event filters for every window, replacing the checkpoint's (grammar below; "
        "'' for none)",
    )
    parser.add_argument(
        "--lossless",
        action="store_true",
        help="never drop windows: the source waits for the model (for file replay)",
    )
    parser.add_argument(
        "--no-firing", action="store_true", help="skip firing statistics (faster inference)"
    )
    parser.add_argument(
        "--energy-every",
        type=int,
        default=10,
        metavar="N",
        help="estimate energy per inference on every N-th window (0 = never; default 10)",
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON lines on stdout even on a terminal"
    )
    parser.add_argument(
        "--predictions-only", action="store_true", help="JSON lines without status records"
    )
    add_source_arguments(parser, LIVE)


def predictions_path(record: str):
    """``OUT.predictions.jsonl`` beside ``OUT.aedat4``."""
    from pathlib import Path

    path = Path(record)
    return path.with_name(f"{path.stem}.predictions.jsonl")


def _error(msg: str) -> int:
    sys.stderr.write(f"sdt3-event live: error: {msg}\n")
    return 2


def _monitor_entry():
    """The monitor's ``run_dashboard(pipeline, ...)``, or ``None`` if Textual is unusable."""
    try:
        import textual  # noqa: F401
        from sdt3_event.apps.monitor import run_dashboard
    except ImportError:
        return None
    return run_dashboard


def run(args: argparse.Namespace) -> int:
    from sdt3_event.stream.records import StreamStatus
    from sdt3_event.stream.sinks import JsonLinesSink, TeePipeline, drain

    for name in ("max_windows", "window_us", "stride_us", "top_k", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _error(f"--{name.replace('_', '-')} must be >= 1")
    if args.runtime == "onnx":
        if args.model is None or not str(args.model).endswith(".onnx"):
            return _error(
                "--runtime onnx needs --model FILE.onnx; make one with: "
                "sdt3-event export CKPT --onnx FILE.onnx"
            )
        if args.spike_driven or args.compile:
            return _error("--runtime onnx cannot be combined with --spike-driven or --compile")
    elif args.model is not None and str(args.model).endswith(".onnx"):
        return _error(f"--model {args.model} is an ONNX file: add --runtime onnx")
    if args.record is None and (args.record_raw or args.record_max_mb is not None):
        return _error("--record-raw and --record-max-mb need --record OUT.aedat4")
    if args.record is not None and not args.record.endswith(".aedat4"):
        return _error(f"--record {args.record}: the file name must end in .aedat4")
    if args.record_max_mb is not None and args.record_max_mb <= 0:
        return _error("--record-max-mb must be > 0")
    if args.filter is not None:
        from sdt3_event.events.filters import FilterSpecError, parse_filters

        try:
            parse_filters(args.filter)
        except FilterSpecError as exc:
            return _error(f"--filter: {exc}")
    if args.clip and args.stride_us is not None:
        return _error("--clip takes one window per recording: drop --stride-us")
    try:
        spec = source_spec(args, args.source)
        device = checked_device(args.device)
        if args.arch and not args.model:
            raise UsageError("--arch names the model of a checkpoint given with --model PATH")
    except Exception as exc:
        return report("live", exc)
    _set_threads(args.threads)
    use_monitor = sys.stdout.isatty() and not args.json
    monitor = _monitor_entry() if use_monitor else None
    if use_monitor and monitor is None:
        sys.stderr.write("sdt3-event live: the monitor is not available; writing JSON lines\n")
    try:
        pipeline = pipeline_from_args(
            args,
            spec,
            device,
            keep_frames=monitor is not None,
            drop_policy="block" if args.lossless else "drop_oldest",
            firing=not args.no_firing,
            energy_every=0 if args.no_firing else max(0, args.energy_every),
        )
    except Exception as exc:
        return report("live", exc)
    warn_window_limits(pipeline, args.duration, spec)

    sinks = []
    try:
        if args.jsonl:
            sinks.append(JsonLinesSink.to_file(args.jsonl, statuses=not args.predictions_only))
        if args.record:
            target = predictions_path(args.record)
            sinks.append(JsonLinesSink.to_file(target, statuses=False))
    except OSError as exc:
        pipeline.stop()
        return _error(f"cannot write {exc.filename}: {exc.strerror}")

    # JSON lines: Ctrl-C / SIGTERM only set a flag that the drain loop polls. Raised as
    # KeyboardInterrupt in the main thread, they could land inside the pipeline's locking code
    # (get() waiting on the lock the worker threads share) and leave the lock corrupted.
    stop_request = _StopRequest() if monitor is None else None
    previous = _install_sigterm() if monitor is not None else stop_request.install()
    try:
        if monitor is not None:
            target = TeePipeline(
                pipeline, sinks, max_windows=args.max_windows, duration_s=args.duration
            )
            title = f"sdt3-event live · {pipeline.model_name} · {pipeline.source_uri}"
            return int(monitor(target, title=title) or 0)
        stdout = JsonLinesSink(sys.stdout, statuses=not args.predictions_only)
        pipeline.start()
        result = drain(
            pipeline,
            [stdout, *sinks],
            max_windows=args.max_windows,
            duration_s=args.duration,
            should_stop=stop_request.is_set,
        )
        if result.reason == "stopped":
            return 130
        if result.reason == "broken_pipe":
            _silence_stdout()
            return 1 if result.failed else 0
        if result.reason in ("max_windows", "duration"):
            # stop, then pass on the closing status so readers see how the stream ended
            pipeline.stop()
            while (record := pipeline.get(timeout=1.0)) is not None:
                if stop_request.is_set():
                    return 130
                if isinstance(record, StreamStatus):
                    for sink in (stdout, *sinks):
                        sink.write(record)
        return 1 if result.failed else 0
    except KeyboardInterrupt:
        return 130
    finally:
        try:
            pipeline.stop()
            warn_dropped(pipeline)
            for sink in sinks:
                sink.close()
            rec = getattr(pipeline, "recorder", None)
            if rec is not None:
                files = str(rec.paths[0]) if rec.paths else "no file (no events)"
                if len(rec.paths) > 1:
                    files += f" .. {rec.paths[-1].name} ({len(rec.paths)} files)"
                sys.stderr.write(f"sdt3-event live: recorded {rec.n_events} events to {files}\n")
        finally:
            # only now, with the pipeline threads stopped, may a signal raise again
            if stop_request is not None:
                stop_request.restore(previous)
            else:
                _restore_sigterm(previous)


def warn_window_limits(pipeline, duration_s: float | None, spec) -> None:
    """Warn once when the window is so long that no prediction can come in time."""
    window_us = getattr(pipeline, "window_us", None)
    if window_us is None:
        return
    window_s = window_us * 1e-6
    speed = spec.options.get("speed", 1.0) or 0
    if duration_s is not None and speed and window_s / speed > duration_s:
        sys.stderr.write(
            f"sdt3-event live: warning: a window of {window_s:g} s cannot end within "
            f"--duration {duration_s:g}, so no prediction will come; shorten --window-us\n"
        )
        return
    try:
        span = pipeline.source.duration_us  # file sources know their length
    except (AttributeError, IndexError):
        span = None
    if span is not None and not spec.options.get("loop") and window_us > span:
        sys.stderr.write(
            f"sdt3-event live: warning: the window ({window_s:g} s) is longer than the "
            f"recording ({span * 1e-6:g} s): at most one prediction; shorten --window-us\n"
        )
    elif speed and window_s / speed > 10 and duration_s is None:
        sys.stderr.write(
            f"sdt3-event live: warning: the first prediction comes after {window_s / speed:g} s "
            "(the window length); shorten --window-us for faster answers\n"
        )


def warn_dropped(pipeline) -> None:
    """Warn once, at the end, when almost every window was dropped."""
    stats = getattr(pipeline, "stats", None)
    if stats is None:
        return
    dropped = stats.windows_dropped + stats.windows_overflow
    if stats.windows_in >= 20 and dropped >= 0.9 * stats.windows_in:
        sys.stderr.write(
            f"sdt3-event live: warning: {dropped:,} of {stats.windows_in:,} windows were dropped "
            f"because the model cannot keep up with a window every "
            f"{pipeline.stride_us:,} us; raise --stride-us / --window-us, or pass --lossless "
            "to predict every window of a file\n"
        )


def _set_threads(threads: int | None) -> None:
    """CPU intra-op threads: the user's choice, else OMP_NUM_THREADS, else all cores but one (the
    reader thread needs a core to keep up with the source while the model runs)."""
    import os

    import torch

    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return
        threads = max(1, (os.cpu_count() or 1) - 1)
    torch.set_num_threads(threads)


class _StopRequest:
    """SIGINT / SIGTERM handlers that ask the stream to stop instead of raising.

    The first signal sets a flag (``is_set``); a second one raises KeyboardInterrupt, the way out
    when stopping itself is stuck (stdout blocked by a reader that stopped reading).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None

    def is_set(self) -> bool:
        return self.signum is not None

    def install(self) -> dict | None:
        """Install the handlers; returns the previous ones (``None`` off the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        return {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def restore(self, previous: dict | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


def _install_sigterm():
    """Turn SIGTERM into KeyboardInterrupt so a killed stream stops like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """After the reader of stdout went away, keep Python from failing while flushing at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
