"""The model flags shared by ``live``, ``monitor``, ``eval`` and ``report``: ``--model`` /
``--arch`` and the checked ``--device``."""

from __future__ import annotations

import argparse


def add_arch_argument(parser: argparse.ArgumentParser) -> None:
    """``--arch NAME``: the model of a bare state_dict or an official checkpoint."""
    parser.add_argument(
        "--arch",
        default=None,
        metavar="NAME",
        help="model name for a bare state_dict or an official checkpoint (see `sdt3-event models`)",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model PATH`` and ``--arch NAME``."""
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled demo)")
    add_arch_argument(parser)


def checked_device(name: str | None) -> str | None:
    """The device ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) checked against this machine;
    ``None`` stays ``None`` (the caller's default).

    Raises:
        DeviceUnavailableError: CUDA asked for but missing (the CLI suggests ``--device cpu``).
    """
    if name is None:
        return None
    from sdt3_event.device import resolve_device

    return str(resolve_device(name))
