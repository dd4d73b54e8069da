"""Segment images with a trained model: a palette mask and a colour overlay per image.

    python -m pipeline.predict IMAGE... --model MODEL --out DIR [--image-size 256] [--hflip]

MODEL is a checkpoint file (models/*.pt) or an MLflow model URI (models:/<name>@champion,
runs:/<run id>/model). A missing or unreadable image is reported by name and skipped; the exit
code is 1 if any image failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.checkpoint import load_checkpoint
from pipeline.data.imageio import BadSampleError, read_rgb, write_mask_png
from pipeline.data.palette import colorize
from pipeline.inference import predict_mask
from pipeline.models import SegmentationModel

OVERLAY_ALPHA = 0.5


def load_model(source: str) -> SegmentationModel:
    """A checkpoint if `source` is an existing file, otherwise an MLflow model URI; eval mode, CPU."""
    if Path(source).is_file():
        return load_checkpoint(Path(source))
    import mlflow.pytorch  # slow to import: only when needed

    try:
        model = mlflow.pytorch.load_model(source, map_location="cpu")
    except Exception as error:  # MLflow raises several unrelated types for a bad URI
        raise SystemExit(f"--model {source}: neither a checkpoint file nor a loadable MLflow model URI ({error})")
    if not hasattr(model, "class_names"):
        raise SystemExit(f"--model {source}: the MLflow model is not a SegmentationModel (no class_names)")
    return model.eval()


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The image blended with the mask's VOC colours; HxWx3 uint8."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(mask).astype(np.float32)
    return blended.round().astype(np.uint8)


def predict_files(model: SegmentationModel, paths: Sequence[Path], out_dir: Path, image_size: int = 256,
                  hflip: bool = False) -> list[str]:
    """Write <stem>_mask.png and <stem>_overlay.png for every readable image; return the error messages
    (each naming its file) for the others."""
    errors = []
    for path in tqdm(paths, desc="predict", unit="image"):
        try:
            image = read_rgb(path)
        except BadSampleError as error:  # missing files too: the message names the file
            errors.append(str(error))
            continue
        mask = predict_mask(model, image, image_size=image_size, hflip=hflip)
        write_mask_png(mask, out_dir / f"{path.stem}_mask.png")
        with atomic_path(out_dir / f"{path.stem}_overlay.png") as tmp:
            Image.fromarray(overlay(image, mask)).save(tmp, format="PNG")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--model", required=True,
                        help="checkpoint file, or MLflow URI such as models:/<name>@champion or runs:/<id>/model")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--image-size", type=int, default=256, help="side of the square the model sees")
    parser.add_argument("--hflip", action="store_true", help="also average over the horizontally flipped image")
    args = parser.parse_args(argv)

    stems = [path.stem for path in args.images]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        parser.error(f"several images share the name stem {', '.join(duplicates)}: their outputs would collide")

    model = load_model(args.model)
    errors = predict_files(model, args.images, args.out, image_size=args.image_size, hflip=args.hflip)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} of {len(args.images)} images failed", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
