"""Tiny datasets named the way people's files are: spaces, "é"/"Æ" (written decomposed on disk, as macOS does,
while the lists and params have them composed), upper-case extensions, list files with CRLF line ends and a
UTF-8 byte-order mark; in the VOC layout and as images/ + masks/ with colour-coded masks."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.palette import flat_palette

CLASSES = ["background", "pétale", "Æble"]
COLOURS = {"background": (0, 0, 0), "pétale": (200, 30, 30), "Æble": (30, 200, 30)}
IGNORE_COLOUR = (224, 224, 192)  # VOC's border colour
TRAIN_IDS = ["IMG 1", "café Æ", "scan (2)", "IMG_4"]
VAL_IDS = ["Ærø 5", "photo 6"]
IMAGE_SUFFIXES = [".JPG", ".jpeg", ".PNG", ".jpg", ".Jpg", ".png"]  # one per id, in order
WIDTH, HEIGHT = 48, 40


def on_disk(name: str) -> str:
    """The decomposed form (e + combining accent) a Mac writes a typed "é" as."""
    return unicodedata.normalize("NFD", name)


def windows_text(lines: list[str]) -> bytes:
    """A list as Windows Notepad saves it: a byte-order mark and CRLF line ends."""
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def class_mask(index: int) -> np.ndarray:
    """Background with one rectangle of class 1 or 2 and, at its left edge, a column of ignored pixels."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    top, left = 4 + index % 3 * 4, 6 + index % 4 * 5
    mask[top:top + 20, left:left + 24] = 1 + index % 2
    mask[top:top + 20, left] = 255
    return mask


def save_photo(path: Path, index: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(index).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def save_png(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def all_ids() -> list[str]:
    return TRAIN_IDS + VAL_IDS


def write_voc_layout(root: Path) -> dict[str, np.ndarray]:
    """A VOC-layout folder with palette masks; returns id -> mask."""
    masks = {}
    for index, sample_id in enumerate(all_ids()):
        save_photo(root / "JPEGImages" / f"{on_disk(sample_id)}{IMAGE_SUFFIXES[index]}", index)
        masks[sample_id] = class_mask(index)
        mask = Image.fromarray(masks[sample_id], mode="P")
        mask.putpalette(flat_palette())
        save_png(root / "SegmentationClass" / f"{on_disk(sample_id)}{'.PNG' if index % 2 else '.png'}", mask)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_bytes(windows_text(TRAIN_IDS))
    (lists / "val.txt").write_bytes(windows_text(VAL_IDS))
    (root / "classes.txt").write_bytes(windows_text(CLASSES))
    return masks


def write_images_and_masks(root: Path) -> dict[str, np.ndarray]:
    """images/ + masks/ with RGB masks in the colours of a colors.txt in CVAT's labelmap form; returns id -> mask."""
    colours = {**COLOURS, "ignore": IGNORE_COLOUR}
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[[*range(len(CLASSES)), 255]] = [COLOURS[name] for name in CLASSES] + [IGNORE_COLOUR]
    masks = {}
    for index, sample_id in enumerate(all_ids()):
        save_photo(root / "images" / f"{on_disk(sample_id)}{IMAGE_SUFFIXES[index]}", index)
        masks[sample_id] = class_mask(index)
        save_png(root / "masks" / f"{on_disk(sample_id)}{'.PNG' if index % 2 else '.png'}",
                 Image.fromarray(palette[masks[sample_id]]))
    (root / "classes.txt").write_bytes(windows_text(CLASSES))
    (root / "colors.txt").write_bytes(windows_text(["# label:color_rgb:parts:actions",
                                                    *(f"{name}:{r},{g},{b}::" for name, (r, g, b) in colours.items())]))
    return masks
