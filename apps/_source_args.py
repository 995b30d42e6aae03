"""The source flags, spelled the same way on every command that takes events.

``live``, ``monitor``, ``serve`` and ``data`` add them with :func:`add_source_arguments` and read
them with :func:`source_spec`, which hands URI and flags to the one parser,
:func:`sdt3_event.stream.factory.parse_source`. A flag is the URI option of the same name:
``--sensor 640x480`` is ``?sensor=640x480``, ``--sensor-map letterbox`` is ``?sensor_map=letterbox``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ._errors import UsageError

# flag groups: which commands take which flags
REPLAY = ("sensor", "allow_truncated", "speed", "loop")
LIVE = (*REPLAY, "sensor_map", "reconnect", "retries")
READ = ("sensor", "allow_truncated")


def add_source_arguments(parser: argparse.ArgumentParser, flags: tuple[str, ...] = LIVE) -> None:
    """Add the source flags named in ``flags`` (see ``REPLAY``, ``LIVE``, ``READ``)."""
    group = parser.add_argument_group("source options (the same as ?key=value in the source URI)")
    if "sensor" in flags:
        group.add_argument(
            "--sensor",
            default=None,
            metavar="WxH",
            help="sensor size for files that do not store it (EVT 2.0 RAW), e.g. 640x480",
        )
    if "sensor_map" in flags:
        from sdt3_event.events.contract import SPATIAL_MODES

        group.add_argument(
            "--sensor-map",
            choices=("auto", *SPATIAL_MODES),
            default="auto",
            help="map a sensor of another size onto the model input (default auto: resize when "
            "the aspect ratios agree, else letterbox, which keeps the aspect ratio)",
        )
    if "speed" in flags:
        group.add_argument(
            "--speed",
            type=float,
            default=None,
            help="replay speed, a multiple of the recorded speed (0 = as fast as possible)",
        )
    if "loop" in flags:
        group.add_argument("--loop", action="store_true", help="replay the recording forever")
    if "allow_truncated" in flags:
        group.add_argument(
            "--allow-truncated",
            action="store_true",
            help="read the complete part of a file that was cut short instead of refusing it",
        )
    if "reconnect" in flags:
        group.add_argument(
            "--reconnect",
            action="store_true",
            help="tcp:// sources: keep reconnecting for as long as the server is away",
        )
    if "retries" in flags:
        group.add_argument(
            "--retries",
            type=int,
            default=None,
            metavar="N",
            help="tcp:// sources: reconnection attempts before giving up (default 3)",
        )


# option -> flag, for messages
_FLAG_OF = {
    "sensor": "--sensor",
    "sensor_map": "--sensor-map",
    "speed": "--speed",
    "loop": "--loop",
    "allow_truncated": "--allow-truncated",
    "max_retries": "--retries",
}


def source_spec(args: argparse.Namespace, uri: str, *, bare_path: bool = False):
    """The parsed source of ``uri`` with the flags set in ``args``.

    Raises:
        UsageError: a bad URI, or a flag that the source does not take (named).
    """
    from sdt3_event.stream.base import parse_size
    from sdt3_event.stream.factory import parse_source, valid_options

    flags: dict[str, Any] = {}
    if getattr(args, "sensor", None) is not None:
        try:
            parse_size(args.sensor)
        except ValueError:
            raise UsageError(f"--sensor expects WxH like 640x480, got {args.sensor!r}") from None
        flags["sensor"] = args.sensor
    if getattr(args, "sensor_map", None) not in (None, "auto"):
        flags["sensor_map"] = args.sensor_map
    if getattr(args, "speed", None) is not None:
        if args.speed < 0:
            raise UsageError("--speed must be >= 0 (0 = as fast as possible)")
        flags["speed"] = args.speed
    if getattr(args, "loop", False):
        flags["loop"] = True
    if getattr(args, "allow_truncated", False):
        flags["allow_truncated"] = True
    if getattr(args, "retries", None) is not None:
        if args.retries < 1:
            raise UsageError("--retries must be >= 1 (--reconnect keeps trying forever)")
        flags["max_retries"] = args.retries
    if getattr(args, "reconnect", False):
        flags["max_retries"] = 0
    try:
        scheme = parse_source(uri, bare_path=bare_path).scheme
        valid = valid_options(scheme)
        for option in flags:
            if option != "sensor_map" and option not in valid:
                raise UsageError(f"{_FLAG_OF[option]} does not apply to {scheme}: sources")
        spec = parse_source(uri, bare_path=bare_path, **flags)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if spec.sensor_map is None and getattr(args, "sensor_map", None) == "auto":
        spec = dataclasses.replace(spec, sensor_map="auto")
    return spec
