"""``sdt3-event serve FILE --port N``: replay a recording as a DV-compatible AEDAT 4.0 TCP stream.

Any DV client reads it: ``sdt3-event live --source tcp://HOST:PORT``, dv-processing's
``dv.io.NetworkReader(HOST, PORT)``, or the DV software's network input. Each client gets its own
replay from the start. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from ._errors import UsageError, fail, report
from ._source_args import REPLAY, add_source_arguments, source_spec


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        help="the recording to replay: a path or file:PATH[?sensor=WxH&speed=2&loop=1] "
        "(.aedat4, or any readable format)",
    )
    parser.add_argument(
        "--port", type=int, default=7777, help="TCP port (0 = pick a free one; default 7777)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--compression",
        default="none",
        choices=["none", "lz4", "lz4_high", "zstd", "zstd_high"],
        help="packet compression (dv-processing's NetworkWriter sends none)",
    )
    parser.add_argument(
        "--packet-us", type=int, default=1000, help="packet duration in event time (µs)"
    )
    parser.add_argument("--max-clients", type=int, default=16, help="simultaneous clients accepted")
    add_source_arguments(parser, REPLAY)


def run(args: argparse.Namespace) -> int:
    from sdt3_event.stream.dv_server import DVServer

    try:
        spec = source_spec(args, args.file, bare_path=True)
        if spec.scheme != "file":
            raise UsageError(f"serve replays a recording (FILE or file:FILE), not {args.file!r}")
        speed = spec.options.get("speed", 1.0)
        loop = bool(spec.options.get("loop", False))
        server = DVServer.from_file(
            spec.target,
            spec.sensor_size,
            allow_truncated=bool(spec.options.get("allow_truncated", False)),
            host=args.host,
            port=args.port,
            speed=speed,
            loop=loop,
            compression=args.compression,
            packet_us=args.packet_us,
            max_clients=args.max_clients,
        )
    except Exception as exc:
        return report("serve", exc)
    try:
        server.start()
    except OSError as exc:
        return fail("serve", f"cannot listen on {args.host}:{args.port} (--host/--port): {exc}", 1)
    pace = "as fast as clients read" if speed == 0 else f"{speed:g}x recorded speed"
    w, h = server.sensor_size[:2]
    _out(
        f"serving {server.n_events or 'the'} events ({w}x{h}) from {spec.target} on "
        f"{server.address} at {pace}{', looping' if loop else ''}; Ctrl-C to stop"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    _out(f"stopped after serving {server.clients_served} client(s)")
    return 0
