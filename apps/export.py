"""``sdt3-event export CKPT --onnx OUT.onnx``: the integer model as an ONNX file.

The multi-level neurons become Clip / Round / Div ops; the batch is a dynamic axis, and ``T`` too
for models with stateless neurons. The data contract travels in the file's metadata, so
``sdt3-event live --runtime onnx --model OUT.onnx`` preprocesses as training did. After writing,
onnxruntime runs the file on random event frames and the largest relative difference of its
logits from PyTorch's is printed (``--no-check`` skips it). ``--precision float64`` writes the
double-precision reference graph, whose logits match PyTorch's float64 ones to 1e-4 on real
weights (float32 differs by about 1 %, see ``sdt3_event.deploy``). Needs the ``[deploy]`` extra.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="an sdt3-event checkpoint (.pt), or 'demo'")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float32",
        help="graph precision: float32 (fast) or float64 (matches PyTorch's float64 logits to "
        "1e-4 on real weights, several times slower; default float32)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime vs PyTorch check"
    )


def _error(msg: str) -> int:
    sys.stderr.write(f"sdt3-event export: error: {msg}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    import torch
    from sdt3_event.apps.evaluate import resolve_checkpoint

    from sdt3_event.checkpoint import CheckpointError, load_model_from_checkpoint
    from sdt3_event.deploy import PRECISIONS, OnnxModel, export_onnx

    try:
        loaded = load_model_from_checkpoint(resolve_checkpoint(args.checkpoint), device="cpu")
    except (FileNotFoundError, CheckpointError) as exc:
        return _error(str(exc))
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
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 3, (2, *loaded.contract.frame_shape), generator=g)
    dtype = PRECISIONS[args.precision]
    with torch.no_grad():
        expected = loaded.model.to(dtype)(frames.to(dtype))
    got = runtime(frames)
    scale = float(expected.abs().max()) or 1.0
    rel = float((got - expected).abs().max()) / scale
    sys.stdout.write(
        f"onnxruntime vs PyTorch ({args.precision}) on random frames: "
        f"max relative difference {rel:.2e}\n"
    )
    return 0
