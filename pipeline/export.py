"""Write a trained model as an ONNX graph, which any ONNX runtime loads without running Python, checked first.

    python -m pipeline.export --model MODEL --out model.onnx

MODEL is what predict takes: a checkpoint file (models/model.pt), a downloaded MLflow model folder, or an MLflow
model URI (runs:/<run id>/model, models:/<name>@champion); only its safetensors weights are read, the network is
rebuilt from this project's code. The graph takes (N, 3, H, W) RGB floats in [0, 1] for any N, H, W (the input
normalisation is inside it) and gives (N, classes, H, W) logits; its metadata_props hold class_names (a JSON
list) and image_size (the side the model was trained at, which predict resizes to). Before the file appears,
onnxruntime runs it beside torch: a |logit difference| above 1e-3, or fewer than 99.9% of pixels given the same
class, is an error and nothing is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.models.onnx_graph import OnnxModelError, write_onnx
from pipeline.predict import fail, open_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="checkpoint file, MLflow model folder, or MLflow URI such as models:/<name>@champion or "
                             "runs:/<id>/model")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".onnx":
        parser.error(f"--out {args.out}: name the file *.onnx (predict runs such files in onnxruntime)")
    if args.model.lower().endswith(".onnx"):
        parser.error(f"--model {args.model}: already an ONNX graph; give the checkpoint or MLflow model it came from")
    model = open_model(args.model, "cpu")
    started = time.perf_counter()
    try:
        parity = write_onnx(model, args.out)
    except OnnxModelError as error:
        raise fail(error) from None
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB, exported and checked in "
          f"{time.perf_counter() - started:.1f} s; onnxruntime against torch: {parity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
