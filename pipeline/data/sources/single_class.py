"""Reader for a set of single-class binary datasets combined into one multi-class source.

Layout: one folder per class under `root`; the folder name is the class name.
  root/<class>/images/*  +  root/<class>/masks/*                  split by a seeded `val_fraction` per class
  root/<class>/train/{images,masks}  +  root/<class>/val/{images,masks}   the class keeps its own split
A mask pairs with the image of the same file stem. Classes are ["background", *sorted folder names].

Each image is labelled for its own class only (`labelled=(0, class_index)`): outside its mask a pixel is
"not this class", which says nothing about the other classes (see pipeline/training/losses.py).

Binary mask encodings accepted (foreground is decided per file):
  grey ('L', '1', or RGB with equal channels): values all in {0, 1} -> 1 is foreground, else > 127
    (0/255 and anti-aliased grey);
  palette ('P'): if only indices 0 and 1 are used, the index is the label (as label tools write it,
    whatever the colours); otherwise the palette colours are read as grey;
  with alpha ('LA', 'RGBA'): if the colour is one constant and only alpha varies, alpha is the label
    (strokes on a transparent layer); otherwise the colour composited over black.
Anything else (16-bit, float, coloured RGB) is an error naming the file.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.files import files_by_stem, seeded_val_split
from pipeline.data.imageio import BadSampleError, open_image
from pipeline.data.interim import SPLITS, RawSample, SourceDataset

BACKGROUND = "background"
ID_SEPARATOR = "__"
BINARY_MODES = ("1", "L", "P", "LA", "RGB", "RGBA")


def read_single_class(root: Path, val_fraction: float, seed: int) -> SourceDataset:
    """All class folders of `root`; a class's seeded split depends only on (seed, class name, its files)."""
    root = Path(root)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{root}: no class folders (expected <class>/images and <class>/masks)")
    if BACKGROUND in [folder.name for folder in folders]:
        raise ValueError(f"{root / BACKGROUND}: '{BACKGROUND}' is class 0 of every single-class set; rename the folder")
    samples = []
    for class_index, folder in enumerate(folders, start=1):
        samples += class_samples(folder, class_index, val_fraction, seed)
    counts = Counter(sample.id for sample in samples)
    duplicate = next((sample for sample in samples if counts[sample.id] > 1), None)
    if duplicate:
        raise ValueError(f"{duplicate.image_path}: sample id {duplicate.id} is not unique (two images with "
                         f"the same stem, or class/file names that join to the same id)")
    return SourceDataset(classes=[BACKGROUND, *(folder.name for folder in folders)], samples=samples,
                         decode_mask=decode_single_class_mask)


def class_samples(folder: Path, class_index: int, val_fraction: float, seed: int) -> list[RawSample]:
    """The samples of one class folder, with its own train/val split if it has one, else a seeded split."""
    own_split = [split for split in SPLITS if (folder / split).is_dir()]
    if own_split and (len(own_split) != len(SPLITS) or (folder / "images").is_dir()):
        raise ValueError(f"{folder}: use either images/ + masks/ (split by val_fraction) or both train/ and "
                         f"val/, each with images/ + masks/ (found {', '.join(own_split)} folders)")
    if own_split:
        return [sample for split in SPLITS for sample in pair_files(folder / split, folder.name, class_index, split)]
    return seeded_val_split(pair_files(folder, folder.name, class_index, "train"), val_fraction,
                            f"{seed}:{folder.name}")


def pair_files(folder: Path, class_name: str, class_index: int, split: str) -> list[RawSample]:
    """Images of `folder/images` with the mask of the same stem in `folder/masks` (any image extension, any case)."""
    if not (folder / "images").is_dir():
        raise FileNotFoundError(f"{folder / 'images'}: image folder missing")
    masks = files_by_stem(folder / "masks")
    return [RawSample(id=f"{class_name}{ID_SEPARATOR}{stem}", split=split, image_path=image,
                      mask_path=masks.get(stem, folder / "masks" / f"{stem}.png"), labelled=(0, class_index))
            for stem, image in files_by_stem(folder / "images").items()]


def decode_single_class_mask(sample: RawSample) -> np.ndarray:
    """HxW uint8: 0 outside the mask, the sample's class index inside."""
    return np.where(binary_foreground(sample.mask_path), sample.labelled[1], 0).astype(np.uint8)


def binary_foreground(path: Path) -> np.ndarray:
    """HxW bool foreground of a binary mask in any of the encodings the module docstring lists."""
    image = open_image(path)
    if image.mode not in BINARY_MODES:
        raise BadSampleError(f"{path}: mask mode {image.mode} cannot hold a binary label "
                             f"(expected one of {BINARY_MODES}: 0/1, 0/255 or anti-aliased grey)")
    if image.mode == "P":
        indices = np.asarray(image)
        if indices.max() <= 1:
            return indices == 1
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "RGBA"):
        return threshold(alpha_or_composite(path, image))
    return threshold(grey_values(path, image))


def grey_values(path: Path, image: Image.Image) -> np.ndarray:
    """HxW grey levels of a '1', 'L' or RGB image; an RGB mask must be grey (equal channels)."""
    array = np.asarray(image.convert("L") if image.mode == "1" else image)
    if array.ndim == 2:
        return array
    coloured = np.argwhere((array != array[..., :1]).any(axis=-1))
    if coloured.size:
        y, x = coloured[0]
        raise BadSampleError(f"{path}: mask has colour {tuple(int(v) for v in array[y, x])} at x={x}, y={y}; "
                             f"a binary mask must be grey (black/white or 0/1)")
    return array[..., 0]


def alpha_or_composite(path: Path, image: Image.Image) -> np.ndarray:
    """Alpha when it alone carries the drawing (one constant colour), else the grey colour composited over black."""
    colour, alpha = image.convert("RGB" if image.mode == "RGBA" else "L"), np.asarray(image.getchannel("A"))
    if np.ptp(alpha) and not np.ptp(np.asarray(colour)):
        return alpha
    return (grey_values(path, colour).astype(np.uint16) * alpha // 255).astype(np.uint8)


def threshold(values: np.ndarray) -> np.ndarray:
    """0/1 masks keep 1 as foreground; 0/255 and anti-aliased grey are foreground above 127."""
    return values == 1 if values.max() <= 1 else values > 127
