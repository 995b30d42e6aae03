"""``sdt3-event serve FILE --port N``: replay a recording as a DV-compatible AEDAT 4.0 TCP stream.

Any DV client reads it: ``sdt3-event live --source tcp://HOST:PORT``, dv-processing's
``dv.io.NetworkReader(HOST, PORT)``, or the DV software's network input. Each client gets its own
replay from the start. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the recording to replay (.aedat4, or any readable format)")
    parser.add_argument(
        "--port", type=int, default=7777, help="TCP port (0 = pick a free one; default 7777)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="multiple of the recorded speed; 0 = as fast as clients read (default 1)",
    )
    parser.add_argument("--loop", action="store_true", help="replay forever")
    parser.add_argument(
        "--compression",
        default="none",
        choices=["none", "lz4", "lz4_high", "zstd", "zstd_high"],
        help="packet compression (dv-processing's NetworkWriter sends none)",
    )
    parser.add_argument(
        "--packet-us", type=int, default=1000, help="packet duration in event time (µs)"
    )
    parser.add_argument(
        "--sensor", default=None, help="WxH for formats that do not store it (e.g. 640x480)"
    )
    parser.add_argument("--max-clients", type=int, default=16, help="simultaneous clients accepted")


def run(args: argparse.Namespace) -> int:
    from sdt3_event.events.schema import EventFormatError
    from sdt3_event.stream.network import DVServer

    sensor = None
    if args.sensor:
        try:
            parts = [int(v) for v in args.sensor.lower().replace("x", ",").split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 3) or min(parts) <= 0:
            _err(f"--sensor expects WxH like 640x480, got {args.sensor!r}")
            return 2
        sensor = (parts[0], parts[1], parts[2] if len(parts) == 3 else 2)
    try:
        server = DVServer.from_file(
            args.file,
            sensor,
            host=args.host,
            port=args.port,
            speed=args.speed,
            loop=args.loop,
            compression=args.compression,
            packet_us=args.packet_us,
            max_clients=args.max_clients,
        )
        server.start()
    except (FileNotFoundError, EventFormatError, ValueError) as exc:
        _err(str(exc))
        return 1
    except OSError as exc:
        _err(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    pace = "as fast as clients read" if args.speed == 0 else f"{args.speed:g}x recorded speed"
    w, h = server.sensor_size[:2]
    _out(
        f"serving {server.n_events or 'the'} events ({w}x{h}) from {args.file} on {server.address} "
        f"at {pace}{', looping' if args.loop else ''}; Ctrl-C to stop"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    _out(f"stopped after serving {server.clients_served} client(s)")
    return 0
