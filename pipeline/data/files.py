"""Data files as people name them: phones, scanners and Windows give spaces, non-ASCII letters, upper-case
extensions (IMG_1.JPG beside IMG_1.png), CRLF line ends and a UTF-8 byte-order mark; macOS writes "é" as e +
combining accent (NFD) where a list typed elsewhere has one character (NFC). Every reader finds files and reads
list files through here, so they all match names the same way."""
from __future__ import annotations

import random
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from pipeline.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")  # compared lower-cased

Sample = TypeVar("Sample")


def same_name(name: str) -> str:
    """The form names are compared in: NFC, so a file saved on macOS matches the id a list or a user typed."""
    return unicodedata.normalize("NFC", name)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, by extension in any case, sorted; hidden files (macOS `._IMG_1.JPG`
    resource forks, `.DS_Store`) and others (`Thumbs.db`, `notes.txt`) are not images."""
    return sorted(path for path in Path(folder).iterdir()
                  if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file())


def files_by_stem(folder: Path) -> dict[str, Path]:
    """{stem: path} of the image files in `folder` (none if it is missing); two files with one stem are an error,
    since which of them is meant cannot be told."""
    found: dict[str, Path] = {}
    for path in image_files(folder) if Path(folder).is_dir() else []:
        stem = same_name(path.stem)
        if stem in found:
            raise UserError(f"{found[stem]} and {path.name}: two images named {stem!r} in one folder; "
                            f"keep one, or rename the other")
        found[stem] = path
    return found


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file with or without a byte-order mark, any line ends, stripped."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    return [same_name(line.strip()) for line in text.splitlines()]


def seeded_val_split(samples: list[Sample], val_fraction: float, seed: str) -> list[Sample]:
    """`samples` (split "train") with a `val_fraction` share, at least one and never all, moved to "val"; which
    ones depends only on `seed` and the samples' order."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    num_val = min(len(samples) - 1, max(1, round(val_fraction * len(samples)))) if val_fraction > 0 else 0
    val = set(order[:num_val])
    return [replace(sample, split="val") if i in val else sample for i, sample in enumerate(samples)]
