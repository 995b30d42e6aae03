"""``sdt3-event weights``: the official pretrained checkpoints, by tag.

    sdt3-event weights list                      # tags, architecture, params, D, input, top-1, cached
    sdt3-event weights download sdt3_10m.in1k    # fetch into $SDT3_EVENT_CACHE, verify, print path
    sdt3-event weights path sdt3_10m.in1k        # where the file is (or should be saved by hand)
    sdt3-event weights verify [TAG]              # strict key/shape load of the cached file(s)

Exit status: 0 on success, 1 when a download or check fails or a file is missing, 2 for an
unknown tag.
"""

from __future__ import annotations

import argparse
import functools
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n")[1]
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list the pretrained tags")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'sdt3_*'")
    p = sub.add_parser("download", help="download and verify a tag's checkpoint")
    p.add_argument("tag")
    p.add_argument("--force", action="store_true", help="download again even when cached")
    p = sub.add_parser("path", help="print the cache path of a tag's checkpoint")
    p.add_argument("tag")
    p = sub.add_parser("verify", help="check cached checkpoints (all cached ones by default)")
    p.add_argument("tag", nargs="?", default=None)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def run(args: argparse.Namespace) -> int:
    from sdt3_event.models.zoo import get_pretrained

    command = args.weights_command
    if command == "list":
        return _list(args.pattern)
    tag = None
    if args.tag is not None:
        try:
            tag = get_pretrained(args.tag)
        except KeyError as exc:
            _err(exc.args[0])
            return 2
    if command == "download":
        return _download(tag, args.force)
    if command == "path":
        _out(str(tag.cache_path))
        if not tag.cache_path.is_file():
            sys.stderr.write(
                f"not downloaded yet: run `sdt3-event weights download {tag.name}`, or save the "
                f"file from {tag.url} at that path\n"
            )
            return 1
        return 0
    return _verify(tag)


@functools.cache
def _count(architecture: str, kwargs: tuple) -> int:
    import torch

    from sdt3_event.registry import create_model

    with torch.device("meta"):  # counts without allocating the weights
        model = create_model(architecture, **dict(kwargs))
    return sum(p.numel() for p in model.parameters())


def _params(tag) -> str:
    from sdt3_event.models.zoo import tag_kwargs

    counts = []
    for kd in (False, True) if tag.kd_from_file else (None,):
        kwargs = tag_kwargs(tag) | ({} if kd is None else {"kd": kd})
        counts.append(f"{_count(tag.architecture, tuple(sorted(kwargs.items()))) / 1e6:.1f}M")
    return "/".join(counts) + (" (kd)" if tag.kd_from_file else "")


def _list(pattern: str) -> int:
    from sdt3_event.models.zoo import default_tag, get_pretrained, list_pretrained

    names = list_pretrained(pattern)
    if not names:
        sys.stderr.write(f"no pretrained tag matches {pattern!r}\n")
        return 1
    rows = [("tag", "official", "params", "D", "T", "input", "top-1", "cached")]
    for name in names:
        tag = get_pretrained(name)
        D = tag.kwargs.get("D", "-")
        T = tag.kwargs.get("T", 1)
        default = "*" if default_tag(tag.architecture) is tag else ""
        rows.append(
            (
                name + default,
                tag.official_file.split(" (")[0],
                _params(tag),
                str(D),
                str(T),
                "x".join(map(str, tag.input_size[1:])),
                f"{tag.top1:.2f}" if tag.top1 is not None else "-",
                "yes" if tag.cache_path.is_file() else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        _out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    _out("* default tag of its architecture (pretrained=True); top-1: ImageNet-1k, official tables")
    return 0


def _download(tag, force: bool) -> int:
    from sdt3_event.apps._progress import byte_progress

    from sdt3_event.hub import DownloadError
    from sdt3_event.models.zoo import download_pretrained

    try:
        with byte_progress(tag.name) as progress:
            path = download_pretrained(tag, progress=progress, force=force)
    except DownloadError as exc:
        _err(str(exc))
        return 1
    _out(str(path))
    return 0


def _verify(tag) -> int:
    from sdt3_event.models.zoo import get_pretrained, list_pretrained, verify_pretrained

    tags = [tag] if tag is not None else [get_pretrained(n) for n in list_pretrained()]
    cached = [t for t in tags if t.cache_path.is_file()]
    if not cached:
        what = tag.name if tag is not None else "no tag"
        _err(
            f"{what} is not downloaded (cache: {tags[0].cache_path.parent}); "
            "run `sdt3-event weights download TAG` first"
        )
        return 1
    ok = True
    for t in cached:
        try:
            report = verify_pretrained(t)
        except Exception as exc:  # any unreadable or unfitting file is a failed check
            ok = False
            _out(f"FAIL {t.name}  {t.cache_path}: " + " ".join(str(exc).split())[:300])
            continue
        _out(f"ok   {t.name}  {t.cache_path}  ({report.loaded} tensors, {t.integrity})")
    return 0 if ok else 1


def fetch_for_training(architecture: str, pretrained: str) -> str | None:
    """Download what ``model.pretrained`` names before training (with a bar on a terminal).

    Returns:
        None when the weights are in place (or ``pretrained`` is a local file), else the one-line
        error to print.
    """
    from pathlib import Path

    from sdt3_event.apps._progress import byte_progress

    from sdt3_event.hub import DownloadError
    from sdt3_event.models.zoo import resolve_source
    from sdt3_event.registry import resolve_name, split_name

    if Path(pretrained).expanduser().is_file():
        return None
    try:
        with byte_progress(pretrained) as progress:
            resolve_source(resolve_name(split_name(architecture)[0]), pretrained, progress=progress)
    except FileNotFoundError as exc:
        return f"model.pretrained: {exc}"
    except (DownloadError, KeyError, ValueError, ImportError) as exc:
        return str(exc.args[0] if isinstance(exc, KeyError) else exc)
    return None
