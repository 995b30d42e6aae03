"""``sdt3-event export CKPT --onnx OUT.onnx`` / ``--nir OUT.nir``: the model as ONNX or NIR.

The multi-level neurons become Clip / Round / Div ops; the batch is a dynamic axis, and ``T`` too
for models with stateless neurons. The data contract travels in the file's metadata, so
``sdt3-event live --runtime onnx --model OUT.onnx`` preprocesses as training did. After writing,
onnxruntime runs the file on random event frames and the largest relative difference of its
logits from PyTorch's is printed (``--no-check`` skips it). ``--precision float64`` writes the
double-precision reference graph, whose logits match PyTorch's float64 ones to 1e-4 on real
weights (float32 differs by about 1 %, see ``sdt3_event.deploy``).

``--nir OUT.nir`` writes the convolutional part (stem, ConvBlocks, downsamplings; ``--nir-upto``
stops earlier) as a NIR graph, each neuron expanded into D thresholds (``sdt3_event.nir_export``);
the attention stages are refused there, with the reason. Its check runs the graph with the
project's reference interpreter against PyTorch's conv stages. Both need the ``[deploy]`` extra.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="an sdt3-event checkpoint (.pt), or 'demo'")
    parser.add_argument("--onnx", metavar="OUT", help="the .onnx file to write")
    parser.add_argument(
        "--nir",
        metavar="OUT",
        help="the .nir file to write: the conv part (stem, ConvBlocks, downsamplings) as a NIR "
        "graph; NIR cannot express the spike-driven attention that follows",
    )
    parser.add_argument(
        "--nir-upto",
        metavar="STAGE",
        help="with --nir: the last conv stage to write (downsample1_1, ConvBlock1_1, ..., "
        "downsample3; default downsample3)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float32",
        help="graph precision: float32 (fast) or float64 (matches PyTorch's float64 logits to "
        "1e-4 on real weights, several times slower; default float32)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the check of the written file against PyTorch"
    )


def _error(msg: str) -> int:
    sys.stderr.write(f"sdt3-event export: error: {msg}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    if not args.onnx and not args.nir:
        return _error("nothing to write: give --onnx OUT.onnx and/or --nir OUT.nir")
    if args.nir_upto and not args.nir:
        return _error("--nir-upto needs --nir OUT.nir")
    from sdt3_event.apps.evaluate import resolve_checkpoint

    from sdt3_event.checkpoint import CheckpointError, load_model_from_checkpoint

    try:
        loaded = load_model_from_checkpoint(resolve_checkpoint(args.checkpoint), device="cpu")
    except (FileNotFoundError, CheckpointError) as exc:
        return _error(str(exc))
    if args.onnx and (code := _export_onnx(args, loaded)):
        return code
    return _export_nir(args, loaded) if args.nir else 0


def _random_frames(loaded, dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 3, (2, *loaded.contract.frame_shape), generator=g).to(dtype)


def _difference(what: str, got, expected) -> None:
    """Print the largest difference of ``got`` from ``expected``, relative to ``expected``'s range."""
    scale = float(expected.abs().max()) or 1.0
    rel = float((got - expected).abs().max()) / scale
    sys.stdout.write(f"{what} on random frames: max relative difference {rel:.2e}\n")


def _export_onnx(args: argparse.Namespace, loaded) -> int:
    import torch

    from sdt3_event.deploy import PRECISIONS, OnnxModel, export_onnx

    try:
        report = export_onnx(
            loaded.model,
            loaded.contract,
            args.onnx,
            model_name=loaded.model_name,
            model_config=loaded.model.model_config
            if hasattr(loaded.model, "model_config")
            else None,
            opset=args.opset,
            precision=args.precision,
        )
    except ImportError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"--onnx {args.onnx}: {exc}")
    quant = {op: report.ops.get(op, 0) for op in ("Clip", "Round", "Floor", "Div")}
    axes = "batch, T" if report.dynamic_time else "batch (T is fixed: TemporalIF neurons)"
    sys.stdout.write(
        f"wrote {report.path} ({loaded.model_name}; input frames (B, T, P, H, W) = "
        f"(B, {', '.join(map(str, loaded.contract.frame_shape))}); dynamic axes: {axes})\n"
        f"quantiser ops: {', '.join(f'{k} {v}' for k, v in quant.items())}\n"
    )
    if args.no_check:
        return 0
    try:
        runtime = OnnxModel(report.path)
    except ImportError as exc:
        sys.stderr.write(f"sdt3-event export: not checked: {exc}\n")
        return 0
    dtype = PRECISIONS[args.precision]
    frames = _random_frames(loaded, dtype)
    with torch.no_grad():
        expected = loaded.model.to(dtype)(frames)
    _difference(f"onnxruntime vs PyTorch ({args.precision})", runtime(frames), expected)
    return 0


def _export_nir(args: argparse.Namespace, loaded) -> int:
    import torch

    from sdt3_event.deploy import PRECISIONS
    from sdt3_event.nir_export import NirExportError, export_nir, forward_stages, run_nir_graph

    shape = tuple(loaded.contract.frame_shape[1:])  # (P, H, W)
    meta = {"model_name": loaded.model_name, "data_contract": loaded.contract.to_dict()}
    try:
        report = export_nir(
            loaded.model,
            args.nir,
            shape,
            upto=args.nir_upto,
            precision=args.precision,
            metadata=meta,
        )
    except ImportError as exc:
        return _error(str(exc))
    except NirExportError as exc:
        flag = "--nir-upto" if exc.argument == "upto" else "--nir"
        return _error(f"{flag}: {exc}")
    except OSError as exc:
        return _error(f"--nir {args.nir}: {exc}")
    sys.stdout.write(
        f"wrote {report.path} ({loaded.model_name}; stages {report.stages[0]} .. "
        f"{report.stages[-1]}; per frame {report.input_shape} -> {report.output_shape})\n"
        f"NIR nodes: {', '.join(f'{k} {v}' for k, v in sorted(report.ops.items()))}\n"
        f"not in the file: what follows {report.stages[-1]} (from block3 on, spike-driven "
        "attention, which NIR cannot express); read it with nir.read(path, type_check=False) "
        "(nir sizes a depthwise conv's input as C_in / groups)\n"
    )
    if args.no_check:
        return 0
    import nir

    from sdt3_event.layers.timestep import flat_apply

    dtype = PRECISIONS[args.precision]
    model = loaded.model.to(dtype)
    frames = _random_frames(loaded, dtype)  # (B, T, P, H, W)
    graph = nir.read(str(report.path), type_check=False)
    with torch.no_grad():
        frames = model.to_time_major(frames)  # (T, B, P, H, W)
        x = forward_stages(model, frames, report.stages)
        got = flat_apply(lambda f: run_nir_graph(graph, f), frames)  # frame by frame
    _difference(
        f"NIR graph (reference interpreter) vs PyTorch ({args.precision}) conv stages", got, x
    )
    return 0
