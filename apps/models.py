"""``sdt3-event models``: list registered models, their aliases and exact parameter counts."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'sdt3_*'")
    parser.add_argument(
        "--params", action="store_true", help="build each model and count parameters"
    )


def run(args: argparse.Namespace) -> int:
    from sdt3_event.registry import _ALIASES, create_model, list_models

    names = list_models(args.pattern)
    if not names:
        sys.stderr.write(f"no model matches {args.pattern!r}\n")
        return 1
    aliases: dict[str, list[str]] = {}
    for alias, target in _ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    for name in names:
        line = name
        if args.params:
            n = sum(p.numel() for p in create_model(name).parameters())
            line += f"  {n:,}"
        if name in aliases:
            line += "  (" + ", ".join(sorted(aliases[name])) + ")"
        sys.stdout.write(line + "\n")
    return 0
