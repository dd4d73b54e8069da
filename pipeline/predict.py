"""Segment images with a trained model: a palette mask and a colour overlay with a legend per image.

    python -m pipeline.predict IMAGE_OR_FOLDER... --model MODEL --out DIR [--image-size N] [--device auto] [--hflip]
        [--backend torch|onnxruntime] [--overwrite]

MODEL is a checkpoint file (models/*.pt), an ONNX file (python -m pipeline.export), a downloaded MLflow model
folder, or an MLflow model URI (models:/<name>@champion, runs:/<run id>/model); from MLflow only the model's
safetensors weights are read, or with --backend onnxruntime its ONNX graph. URIs are looked up in
MLFLOW_TRACKING_URI if set, else in this project's store (params.yaml's mlflow.tracking_uri, relative to the
project root), from whatever directory this runs in. A missing or
unreadable image is reported by name and skipped; the exit code is 1 if any image failed. The last line says what
was written where. Masks and overlays already in --out are refused before the model loads (an earlier run's
results are not silently replaced); --overwrite replaces them and says how many.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

import pipeline
from pipeline.atomic import atomic_path
from pipeline.config import ConfigError, image_size_problem, load_params
from pipeline.data.files import IMAGE_SUFFIXES, image_files
from pipeline.data.imageio import BadSampleError, read_rgb, write_mask_png
from pipeline.data.labels import BACKGROUND
from pipeline.data.palette import colorize, voc_palette
from pipeline.errors import UserError
from pipeline.logs import configure_logging
from pipeline.models.checkpoint import load_model
from pipeline.models.inference import predict_mask
from pipeline.models.onnx_graph import OnnxSegmenter, load_onnx
from pipeline.models.segmenter import SegmentationModel
from pipeline.reporting.labels import short_name
from pipeline.secrets import redact
from pipeline.training.device import pick_device

OVERLAY_ALPHA = 0.5
PROJECT_ROOT = Path(pipeline.__file__).resolve().parents[1]
SQLITE_PREFIX = "sqlite:///"
BACKGROUND_NAMES = ("background", "_background_", "bg")
MODEL_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # models:/, runs:/, s3://...; two letters at least
LEGEND_PAD, LEGEND_SWATCH = 4, 12
LEGEND_FILL, LEGEND_TEXT = (255, 255, 255), (0, 0, 0)


def fail(message: str) -> SystemExit:
    """A user error as one `error: ...` line and exit status 1, without a traceback (MLflow messages span lines)."""
    return SystemExit(redact("error: " + " ".join(str(message).split())))


def use_project_store(source: str) -> None:
    """Point MLflow at the project's store for a model URI, so that the URI resolves the same from any
    directory; MLFLOW_TRACKING_URI from the environment wins, and without params.yaml MLflow keeps its default."""
    params_file = PROJECT_ROOT / "params.yaml"
    if not MODEL_URI.match(source) or os.environ.get("MLFLOW_TRACKING_URI") or not params_file.is_file():
        return
    try:
        uri = load_params(params_file).mlflow.tracking_uri
    except ConfigError as error:
        raise fail(error) from None
    if uri.startswith(SQLITE_PREFIX) and not Path(uri[len(SQLITE_PREFIX):]).is_absolute():
        uri = SQLITE_PREFIX + str(PROJECT_ROOT / uri[len(SQLITE_PREFIX):])
    import mlflow  # slow to import: only when needed

    mlflow.set_tracking_uri(uri)


def open_model(source: str, device: str, backend: str = "torch") -> SegmentationModel | OnnxSegmenter:
    """The model from a checkpoint file, ONNX file or MLflow model on `device` (onnxruntime: the CPU); a bad
    source is a one-line user error."""
    if not MODEL_URI.match(source) and not Path(source).exists():  # skip MLflow's long message for a plain typo
        raise fail(f"--model {source}: no such file; neither a checkpoint or ONNX file nor an MLflow model URI")
    store_key = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "mlflow.tracking_uri"
    use_project_store(source)
    try:
        if MODEL_URI.match(source):
            check_store_reachable(store_key)
        if backend == "onnxruntime" or source.lower().endswith(".onnx"):
            return load_onnx(source)
        model = load_model(source)
    except (ValueError, OSError, UserError) as error:
        raise fail(f"--model {error}") from None
    return model.to(pick_device(device))


def check_store_reachable(key: str) -> None:
    """A tracking server that does not answer is said at once, not after MLflow's minutes of retries; `key` is
    the setting that chose it."""
    import mlflow

    from pipeline.tracking.store import check_reachable, is_server

    if is_server(mlflow.get_tracking_uri()):
        check_reachable(mlflow.get_tracking_uri(), key)


def check_out_folder(out: Path) -> None:
    """--out is a folder, made if missing: a file in its place (or in place of a folder above it) is refused
    before the model loads, not when the first mask is written."""
    existing = next(path for path in (out, *out.parents) if path.exists())
    if not existing.is_dir():
        where = "is a file" if existing == out else f"is inside {existing}, a file"
        raise fail(f"--out {out}: {where}; --out names a folder (made if missing) for the masks and overlays")


def outputs_of(images: Sequence[Path], out: Path) -> list[Path]:
    """The files predict_files writes for `images`, in order."""
    return [out / f"{path.stem}_{kind}.png" for path in images for kind in ("mask", "overlay")]


def check_overwrite(images: Sequence[Path], out: Path, overwrite: bool) -> int:
    """How many outputs already exist in --out; refused before the model loads unless `overwrite`."""
    existing = [path.name for path in outputs_of(images, out) if path.exists()]
    if existing and not overwrite:
        raise fail(f"--out {out}: {len(existing)} of the files to write exist already ({names(existing)}); pass "
                   "--overwrite to replace them, or choose another --out")
    return len(existing)


def names(files: Sequence[str], shown: int = 3) -> str:
    """The first `shown` file names, and how many more."""
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    return ", ".join(files[:shown]) + more


def check_device(parser: argparse.ArgumentParser, name: str) -> None:
    """An unavailable accelerator is the user's choice to correct, not a crash deep inside torch."""
    import torch

    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(name, True):
        parser.error(f"--device {name}: not available on this machine (choose auto or cpu)")


def expand_inputs(paths: Sequence[Path]) -> list[Path]:
    """Folders become their image files (any extension case, not hidden ones such as macOS `._IMG_1.JPG`; sorted,
    not recursive); other paths stay, to be reported if unreadable."""
    expanded = []
    for path in paths:
        if not path.is_dir():
            expanded.append(path)
            continue
        images = image_files(path)
        if not images:
            raise fail(f"{path}: a folder without image files ({', '.join(IMAGE_SUFFIXES)})")
        expanded.extend(images)
    return expanded


def background_index(class_names: Sequence[str]) -> int | None:
    """Index 0 is background only when it is named so: in some datasets class 0 is a real class ('building')."""
    return BACKGROUND if class_names and class_names[0].lower() in BACKGROUND_NAMES else None


def overlay(image: np.ndarray, mask: np.ndarray, background: int | None = BACKGROUND,
            alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The image blended with the mask's VOC colours, except background pixels, which stay as they are
    (blending them with black would darken the whole photo); HxWx3 uint8."""
    blended = ((1 - alpha) * image.astype(np.float32) + alpha * colorize(mask).astype(np.float32)).round()
    blended = blended.astype(np.uint8)
    if background is not None:
        keep = mask == background
        blended[keep] = image[keep]
    return blended


def legend_entries(mask: np.ndarray, class_names: Sequence[str], background: int | None) -> list[tuple]:
    """(colour, name) of each class present in the mask that the overlay colours; long names cut short."""
    palette = voc_palette()
    return [(tuple(int(c) for c in palette[index]),
             short_name(class_names[index]) if index < len(class_names) else str(index))
            for index in np.unique(mask).tolist() if index != background]


def legend_rows(entries: list[tuple], width: int, font) -> list[list[tuple]]:
    """Entries (colour, name, entry width) packed left to right into rows no wider than `width`."""
    rows: list[list[tuple]] = [[]]
    used = LEGEND_PAD
    for colour, name in entries:
        entry_width = LEGEND_SWATCH + LEGEND_PAD + int(font.getlength(name)) + 2 * LEGEND_PAD
        if rows[-1] and used + entry_width > width:
            rows.append([])
            used = LEGEND_PAD
        rows[-1].append((colour, name, entry_width))
        used += entry_width
    return rows


def with_legend(picture: np.ndarray, entries: list[tuple]) -> Image.Image:
    """The overlay above a white strip naming each coloured class beside its swatch, so a reader needs no
    palette table; widened if the image is narrower than the longest entry. The image stays at the top left."""
    font = ImageFont.load_default()
    entries = entries or [(LEGEND_FILL, "background only")]
    height, width = picture.shape[:2]
    widest = max(LEGEND_SWATCH + int(font.getlength(name)) + 4 * LEGEND_PAD for _, name in entries)
    canvas_width = max(width, widest)
    rows = legend_rows(entries, canvas_width, font)
    line = max(LEGEND_SWATCH, font.getbbox("Ag")[3]) + LEGEND_PAD
    canvas = Image.new("RGB", (canvas_width, height + LEGEND_PAD + line * len(rows)), LEGEND_FILL)
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row_number, row in enumerate(rows):
        top, left = height + LEGEND_PAD + row_number * line, LEGEND_PAD
        for colour, name, entry_width in row:
            draw.rectangle((left, top, left + LEGEND_SWATCH - 1, top + LEGEND_SWATCH - 1), fill=colour,
                           outline=LEGEND_TEXT)
            draw.text((left + LEGEND_SWATCH + LEGEND_PAD, top), name, fill=LEGEND_TEXT, font=font)
            left += entry_width
    return canvas


def predict_files(model: SegmentationModel, paths: Sequence[Path], out_dir: Path, image_size: int | None = None,
                  hflip: bool = False) -> tuple[list[Path], list[str]]:
    """Write <stem>_mask.png and <stem>_overlay.png for every readable image; return the files written and the
    error messages (each naming its file) for the others. `image_size` None: the size the model was trained at."""
    written, errors = [], []
    background = background_index(model.class_names)
    for path in tqdm(paths, desc="predict", unit="image", disable=None):
        try:
            image = read_rgb(path)
        except BadSampleError as error:  # missing files too: the message names the file
            errors.append(str(error))
            continue
        mask = predict_mask(model, image, image_size=image_size, hflip=hflip)
        write_mask_png(mask, out_dir / f"{path.stem}_mask.png")
        picture = with_legend(overlay(image, mask, background), legend_entries(mask, model.class_names, background))
        with atomic_path(out_dir / f"{path.stem}_overlay.png") as tmp:
            picture.save(tmp, format="PNG")
        written.extend(outputs_of([path], out_dir))
    return written, errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help=f"image file, or folder whose image files ({', '.join(IMAGE_SUFFIXES)}) are all predicted")
    parser.add_argument("--model", required=True,
                        help="checkpoint file, MLflow model folder, or MLflow URI such as models:/<name>@champion or "
                             "runs:/<id>/model")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the square the model sees (default: the size the model was trained at)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                        help="where the model runs (default: auto, the fastest available)")
    parser.add_argument("--hflip", action="store_true", help="also average over the horizontally flipped image")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace masks and overlays already in --out (without it, they are refused)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="what runs the model: torch, or onnxruntime on the model's ONNX graph (a .onnx file, or "
                             "the graph logged with an MLflow model); a .onnx --model always runs in onnxruntime")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()  # no MLflow download bar frames off a terminal
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.image_size is not None and (problem := image_size_problem(args.image_size)):
        raise fail(f"--image-size {problem}")
    check_out_folder(args.out)
    check_device(parser, args.device)
    images = expand_inputs(args.images)
    stems = [path.stem for path in images]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        parser.error(f"several images share the name stem {', '.join(duplicates)}: their outputs would collide")

    replaced = check_overwrite(images, args.out, args.overwrite)

    model = open_model(args.model, args.device, args.backend)
    try:
        written, errors = predict_files(model, images, args.out, image_size=args.image_size, hflip=args.hflip)
    except UserError as error:  # no space left for the outputs, a graph whose logits do not fit its class names
        raise fail(error) from None
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    report_written(written, args.out, replaced)
    if errors:
        print(f"{len(errors)} of {len(images)} images failed", file=sys.stderr)
    return 1 if errors else 0


def report_written(written: Sequence[Path], out: Path, replaced: int) -> None:
    """One line on stdout: how many images gave a mask and an overlay, in which folder, the first file names, and
    how many files an earlier run had written there (--overwrite)."""
    count = len(written) // 2
    note = f"; {replaced} of them replaced earlier files" if replaced else ""
    print(f"wrote {count} mask{'s' * (count != 1)} and overlay{'s' * (count != 1)} to {out}: "
          f"{names([path.name for path in written])}{note}")


if __name__ == "__main__":
    sys.exit(main())
