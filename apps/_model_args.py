"""The model flags shared by ``live``, ``monitor``, ``eval`` and ``report``: ``--model`` /
``--arch`` and the checked ``--device``; and the one place ``live`` and ``monitor`` turn their
parsed flags into a pipeline (:func:`pipeline_from_args`)."""

from __future__ import annotations

import argparse
from typing import Any


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


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """How ``live`` and ``monitor`` run their model: ``--model``, ``--arch``, ``--device`` and
    ``--spike-driven``."""
    add_model_arguments(parser)
    parser.add_argument(
        "--device", default=None, help="inference device: cpu, cuda, cuda:1 (default: best)"
    )
    parser.add_argument("--spike-driven", action="store_true", help="run the spike-driven executor")


# build_pipeline keyword <- the parsed flag it comes from, for the flags a command has
PIPELINE_FLAGS = {
    "spike_driven": "spike_driven",
    "arch": "arch",
    "runtime": "runtime",
    "window_us": "window_us",
    "stride_us": "stride_us",
    "clip": "clip",
    "top_k": "top_k",
    "compile": "compile",
    "cuda_graph": "cuda_graph",
    "trace": "trace",
    "channels_last": "channels_last",
    "filters": "filter",
    "record": "record",
    "record_raw": "record_raw",
    "record_max_mb": "record_max_mb",
}


def pipeline_from_args(args: argparse.Namespace, spec: Any, device: str | None, **options: Any):
    """:func:`~sdt3_event.stream.pipeline.build_pipeline` for a command's parsed flags: the
    source ``spec`` (:func:`~apps._source_args.source_spec`), ``--model``, ``device``, every flag
    of :data:`PIPELINE_FLAGS` the command has, and ``options`` (what the command derives itself).
    """
    from sdt3_event.stream.pipeline import build_pipeline

    flags = {kw: getattr(args, name) for kw, name in PIPELINE_FLAGS.items() if hasattr(args, name)}
    return build_pipeline(
        spec.uri,
        args.model,
        device=device,
        sensor_map=spec.sensor_map,
        source_options=spec.options,
        **flags,
        **options,
    )


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
