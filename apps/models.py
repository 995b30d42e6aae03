"""``sdt3-event models``: list registered models, their exact parameter counts and aliases.

Counting builds each model on the ``meta`` device (shapes only, no memory, no initialisation), so
listing all of them takes about a second.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'sdt3_*'")
    parser.add_argument(
        "--no-params", action="store_true", help="names and aliases only (no parameter counts)"
    )


def count_parameters(name: str) -> int:
    """Parameters of the registered model ``name`` with its default arguments."""
    import torch

    from sdt3_event.registry import create_model

    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def run(args: argparse.Namespace) -> int:
    from sdt3_event.registry import _ALIASES, list_models

    names = list_models(args.pattern)
    if not names:
        sys.stderr.write(f"no model matches {args.pattern!r}\n")
        return 1
    aliases: dict[str, list[str]] = {}
    for alias, target in _ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    width = max(len(n) for n in names)
    for name in names:
        line = f"{name:<{width}}"
        if not args.no_params:
            line += f"  {count_parameters(name):>13,}"
        if name in aliases:
            line += "  (" + ", ".join(sorted(aliases[name])) + ")"
        sys.stdout.write(line + "\n")
    return 0
