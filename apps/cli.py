"""The ``sdt3-event`` command: one entry point, one module per subcommand.

Each subcommand module defines ``configure(parser)`` (adds its arguments) and ``run(args) -> int``.
A failure prints ``sdt3-event COMMAND: error: ...`` in one or two lines and exits non-zero;
``--debug`` (after the subcommand) prints the traceback too.

Modules are imported lazily so ``sdt3-event --help`` stays fast and a subcommand's heavy dependencies
(torch, textual) load only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

import sdt3_event  # the parent package: already imported with this module

# name -> (module under sdt3_event.apps, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train or fine-tune a model from a YAML config"),
    "eval": (
        "evaluate",
        "evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix",
    ),
    "report": ("report", "firing rates, synaptic operations and energy of a checkpoint"),
    "live": ("live", "run live event streams through a model (default: synthetic demo)"),
    "serve": ("serve", "replay a recording as a DV-compatible AEDAT4 TCP stream"),
    "monitor": ("monitor", "terminal dashboard for a live source or a training run folder"),
    "data": ("data", "download, verify and inspect data sets and recordings"),
    "models": ("models", "list the registered models and their parameter counts"),
    "weights": ("weights", "list, download, locate and verify the official pretrained weights"),
    "export": (
        "export",
        "export a checkpoint to ONNX (integer model, quantiser as ONNX ops) or its conv part to NIR",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdt3-event",
        description="Spike-Driven Transformer V3 for event cameras.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv debug)"
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"sdt3-event {sdt3_event.__version__} from {Path(sdt3_event.__file__).parent}",
        help="print the version and the folder the package runs from, then exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        p.add_argument(
            "--debug", action="store_true", help="print the traceback of an error as well"
        )
        module = _load(module_name)
        if module is not None:
            module.configure(p)
    return parser


def _load(module_name: str):
    try:
        return importlib.import_module(f"sdt3_event.apps.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"sdt3_event.apps.{module_name}":
            return None
        raise


class _CliFormatter(logging.Formatter):
    """Log lines in the command line's terms (``pass --sensor WxH``, not ``sensor_size=``)."""

    def format(self, record: logging.LogRecord) -> str:
        from ._errors import cli_text

        return cli_text(super().format(record))


def _configure_logging(verbose: int) -> None:
    handler = logging.StreamHandler()
    fmt = (
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
        if verbose
        else "%(levelname)s: %(message)s"
    )
    handler.setFormatter(_CliFormatter(fmt))
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `sdt3-event` alone runs the main job: the live demo on the embedded synthetic stream.
    if not argv:
        argv = ["live"]
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    module = _load(args._module)
    if module is None:
        parser.error(f"the {args.command!r} command is not available in this installation")
    from . import _errors

    _errors.DEBUG = bool(args.debug)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every failure ends in one or two lines (--debug: the traceback)
        return _errors.report(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
