"""``sdt3-event data``: download, verify and inspect data sets and recordings.

    sdt3-event data download cifar10dvs --root ~/data      # fetch, verify (md5), extract
    sdt3-event data verify dvsgesture --root ~/data        # checksums of what is on disk
    sdt3-event data list                                   # known data sets and their files
    sdt3-event data info rec.aedat4                        # format, events, duration, rate
    sdt3-event data preview rec.aedat4 --out rec.png       # ON/OFF frames as an image

Exit status: 0 on success, 1 when a check fails or a file cannot be read, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from argparse import SUPPRESS

from ._errors import fail, report
from ._source_args import READ, add_source_arguments, source_spec


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n")[1]
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = sub.add_parser("download", help="download, verify and extract a data set")
    p.add_argument("name", help="cifar10dvs, dvsgesture or hardvs")
    p.add_argument("--root", required=True, help="data root (the set goes to ROOT/<Folder>)")
    p.add_argument("--no-extract", action="store_true", help="only download and verify")
    p = sub.add_parser("verify", help="check the files of a data set against their checksums")
    p.add_argument("name")
    p.add_argument("--root", required=True)
    sub.add_parser("list", help="list the downloadable data sets")
    for name, help_text in (
        ("info", "describe an event file: format, events, duration, sensor, rate"),
        ("preview", "render an event file as ON/OFF frames into an image"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("file", help="an event file: a path or file:PATH[?sensor=WxH]")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=SUPPRESS)
        add_source_arguments(p, READ)
        if name == "preview":
            p.add_argument("--out", required=True, help="output image (.png)")
            p.add_argument("--bins", type=int, default=4, help="frames side by side (default 4)")


def run(args: argparse.Namespace) -> int:
    command = args.data_command
    if command == "list":
        return _list()
    if command in ("download", "verify"):
        from sdt3_event.datasets.download import dataset_info

        try:
            dataset_info(args.name)
        except KeyError as exc:
            sys.stderr.write(f"error: {exc.args[0]}\n")
            return 2
        return _download(args) if command == "download" else _verify(args.name, args.root)
    try:
        spec = source_spec(args, args.file, bare_path=True)
        if spec.scheme != "file":
            return fail(
                "data", f"{command} reads an event file (FILE or file:FILE), not {args.file!r}"
            )
    except Exception as exc:
        return report("data", exc)
    return _info(spec) if command == "info" else _preview(args, spec)


def _list() -> int:
    from sdt3_event.datasets.download import DATASETS

    for info in DATASETS.values():
        sys.stdout.write(f"{info.name}  ->  <root>/{info.folder}\n    {info.note}\n")
        for r in info.resources:
            how = "manual" if r.manual else "auto"
            sys.stdout.write(f"    {r.filename:28s} md5 {r.md5}  [{how}] {r.url}\n")
    return 0


def _download(args) -> int:
    from contextlib import ExitStack

    from sdt3_event.apps._progress import byte_progress
    from sdt3_event.datasets.download import ChecksumError, download_dataset

    with ExitStack() as bars:
        try:
            folder = download_dataset(
                args.name,
                args.root,
                progress_factory=lambda res: bars.enter_context(byte_progress(res.filename)),
                extract=not args.no_extract,
            )
        except (FileNotFoundError, ChecksumError, OSError) as exc:
            bars.close()
            sys.stderr.write(f"error: {exc}\n")
            return 1
    sys.stdout.write(f"{args.name}: ready in {folder}\n")
    return _verify(args.name, args.root)


def _verify(name: str, root: str) -> int:
    from sdt3_event.datasets.download import verify

    ok = True
    for status in verify(name, root):
        mark = "ok  " if status.ok else "FAIL"
        sys.stdout.write(f"{mark} {status.path}  {status.reason}\n")
        ok &= status.ok
    return 0 if ok else 1


def _read(spec):
    from sdt3_event.events.io import detect_format, read_events

    fmt = detect_format(spec.target)
    events, sensor_size = read_events(
        spec.target,
        spec.sensor_size,
        allow_truncated=bool(spec.options.get("allow_truncated", False)),
    )
    return fmt, events, sensor_size


def _info(spec) -> int:
    path = spec.target
    try:
        fmt, events, sensor_size = _read(spec)
    except (OSError, ValueError) as exc:
        report("data", exc)
        return 1
    n = len(events)
    lines = [f"file:        {path}", f"format:      {fmt}", f"events:      {n:,}"]
    if sensor_size is None and n:
        guess = (int(events["x"].max()) + 1, int(events["y"].max()) + 1)
        lines.append(f"sensor:      unknown (coordinates span {guess[0]}x{guess[1]})")
    elif sensor_size is not None:
        lines.append(f"sensor:      {sensor_size[0]}x{sensor_size[1]} (P={sensor_size[2]})")
    if n:
        t0, t1 = int(events["t"][0]), int(events["t"][-1])
        duration_s = (t1 - t0) * 1e-6
        lines += [
            f"first t:     {t0} us",
            f"last t:      {t1} us",
            f"duration:    {duration_s:.6f} s",
            f"rate:        {n / duration_s / 1e6:.3f} Mev/s"
            if duration_s > 0
            else "rate:        -",
            f"ON share:    {100 * float(events['p'].mean()):.1f} %",
        ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _preview(args, spec) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from sdt3_event.events.frames import to_window_frames

    if args.bins < 1:
        return fail("data", "--bins must be >= 1")
    try:
        _, events, sensor_size = _read(spec)
    except (OSError, ValueError) as exc:
        report("data", exc)
        return 1
    if sensor_size is None:
        if not len(events):
            return fail("data", "empty file and no --sensor WxH", 1)
        sensor_size = (int(events["x"].max()) + 1, int(events["y"].max()) + 1, 2)
    w, h = sensor_size[0], sensor_size[1]
    t0 = int(events["t"][0]) if len(events) else 0
    t1 = int(events["t"][-1]) + 1 if len(events) else 1
    frames = to_window_frames(events, (w, h, 2), args.bins, t0, t1)  # (T, 2, H, W)
    scale = max(float(np.percentile(frames[frames > 0], 99)) if frames.any() else 1.0, 1.0)
    fig, axes = plt.subplots(
        1, args.bins, figsize=(3 * args.bins * w / max(h, 1), 3.3), squeeze=False
    )
    for k, ax in enumerate(axes[0]):
        img = np.zeros((h, w, 3), np.float32)
        img[..., 0] = np.clip(frames[k, 1] / scale, 0, 1)  # ON red
        img[..., 2] = np.clip(frames[k, 0] / scale, 0, 1)  # OFF blue
        ax.imshow(img, interpolation="nearest")
        lo = (t1 - t0) * k / args.bins / 1e3
        ax.set_title(f"{lo:.1f} ms", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{args.file} ({len(events):,} events; red ON, blue OFF)", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    sys.stdout.write(f"wrote {args.out}\n")
    return 0
