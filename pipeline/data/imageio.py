"""Reading and writing images and masks with clear errors and atomic writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.atomic import atomic_path
from pipeline.data.palette import flat_palette
from pipeline.errors import UserError


class BadSampleError(UserError, ValueError):
    """An input file that cannot serve as a training sample; the message names the file."""


def open_image(path: Path) -> Image.Image:
    """The decoded file; a corrupt file or one over PIL's decompression-bomb limit is a BadSampleError
    naming it (so `on_bad_sample: skip` can skip it)."""
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise BadSampleError(f"{path}: cannot read image ({error})") from error
    return image


def open_displayed(path: Path) -> Image.Image:
    """The image as viewers show it: an EXIF orientation tag is applied, so a rotated camera JPEG lines
    up with its mask (which has no such tag)."""
    return ImageOps.exif_transpose(open_image(path))


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB as displayed, whatever the file's mode (grey, palette, LA, RGBA, 16-bit)."""
    image = open_displayed(path)
    if image.mode in ("I;16", "I;16B", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / max(float(array.max()), 1.0)
        image = Image.fromarray((array * scale).astype(np.uint8))
    return np.asarray(image.convert("RGB"))


def write_mask_png(mask: np.ndarray, path: Path) -> None:
    """Write class indices as a palette PNG (viewable in colour, read back as indices)."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(flat_palette())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
