"""Errors in the command line's own terms: one or two lines, the flag to change, no traceback.

Every subcommand's failure reaches :func:`report` (from ``cli.main`` or from the subcommand's own
``except``). The library's messages speak Python (``pass sensor_size=(W, H, 2)``); ``report``
rewrites those spellings into the flags that do the same on the command line, so that a user on the
command line never reads a Python argument name. ``--debug`` prints the traceback as well.
"""

from __future__ import annotations

import re
import sys
import traceback

# set by cli.main from --debug
DEBUG = False


class UsageError(Exception):
    """A command-line mistake; the message names the flag to change. Exit status 2."""


# Python spelling in a library message -> what does the same on the command line
_CLI_SPELLINGS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"pass sensor_size=\(W, H, \d\)"), "pass --sensor WxH (or ?sensor=WxH in the URI)"),
    (re.compile(r"\(e\.g\. \((\d+), (\d+), 2\) for"), r"(e.g. --sensor \1x\2 for"),
    (re.compile(r"\((\d+), (\d+), 2\) for GenX320\)"), r"\1x\2 for GenX320)"),
    (re.compile(r"pass allow_truncated=True"), "pass --allow-truncated"),
    (
        re.compile(r"create_model\(name, pretrained=path\)( instead)?"),
        "--arch NAME beside the checkpoint (a name from `sdt3-event models`)",
    ),
    (re.compile(r"max_retries=0 keeps trying"), "--reconnect keeps trying"),
    (re.compile(r"pass window_us \(--window-us\)"), "pass --window-us"),
    (re.compile(r"`sdt3_event\.list_models\(\)` lists"), "`sdt3-event models` lists"),
    (re.compile(r"pass --sensor-map with one of"), "pass --sensor-map with one of auto,"),
]


def cli_text(message: str) -> str:
    """``message`` with its Python spellings replaced by the command-line flags."""
    for pattern, replacement in _CLI_SPELLINGS:
        message = pattern.sub(replacement, message)
    return message


class _Never(Exception):
    """Stands in for an exception class whose module was never imported (nothing raised it)."""


def _loaded(module: str, name: str) -> type[BaseException]:
    return getattr(sys.modules.get(module), name, _Never)


def _message(exc: BaseException, command: str) -> tuple[int, str]:
    """``(exit status, message)`` for an exception raised by a subcommand."""
    # looked up, not imported: an error before torch was loaded must not wait for torch
    checkpoint_error = _loaded("sdt3_event.checkpoint", "CheckpointError")
    device_error = _loaded("sdt3_event.device", "DeviceUnavailableError")
    if isinstance(exc, KeyError) and exc.args:  # a KeyError's str() is the repr of its key
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, device_error):
        flag = "--set device=cpu" if command == "train" else "--device cpu"
        return 2, f"{text}; run on the CPU with {flag}"
    if isinstance(exc, UsageError | FileNotFoundError | KeyError | checkpoint_error):
        return 2, text
    if isinstance(exc, ConnectionError):
        return 1, text
    if isinstance(exc, ValueError | OSError | ImportError):  # incl. the typed library errors
        return (2 if isinstance(exc, ValueError) else 1), text
    return 1, f"{type(exc).__name__}: {text} (run again with --debug for the traceback)"


def report(command: str, exc: BaseException) -> int:
    """Print ``exc`` as ``sdt3-event COMMAND: error: ...`` (two lines at most) and return the
    exit status; with ``--debug`` the traceback comes first."""
    code, text = _message(exc, command)
    if DEBUG:
        traceback.print_exception(exc, file=sys.stderr)
    lines = [line for line in cli_text(text).splitlines() if line.strip()] or [type(exc).__name__]
    body = lines[0] if len(lines) == 1 else f"{lines[0]}\n  {lines[1]}"
    sys.stderr.write(f"sdt3-event {command}: error: {body}\n")
    return code


def fail(command: str, message: str, code: int = 2) -> int:
    """Print a command-line error of the command's own and return ``code``."""
    sys.stderr.write(f"sdt3-event {command}: error: {cli_text(message)}\n")
    return code
