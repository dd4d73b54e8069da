"""What the label values mean, everywhere: 255 is ignored, 0 is background, and which classes an image is labelled for.

Single-class sets label each image for one class only: a pixel marked background there means "not
this class", and may belong to a class the image is not labelled for (see training/losses.py's
marginal cross-entropy and scoring/metrics.py's PartialLabelIoU).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IGNORE_INDEX = 255
BACKGROUND = 0
ALL_LABELLED = "all"


def labelled_file(processed_dir: Path, split: str) -> Path:
    """(N, C) bool array: which classes are annotated in each image of the split."""
    return Path(processed_dir) / f"{split}_labelled.npy"


def labelled_matrix(labelled: list[str], num_classes: int) -> np.ndarray:
    """'all' or '0;3' per sample (the interim samples.csv form) -> (N, C) bool."""
    matrix = np.zeros((len(labelled), num_classes), dtype=bool)
    for row, value in enumerate(labelled):
        if value == ALL_LABELLED:
            matrix[row] = True
        else:
            matrix[row, [int(index) for index in value.split(";")]] = True
    return matrix


def is_partially_labelled(processed_dir: Path, splits: tuple[str, ...] = ("train", "val")) -> bool:
    """True when some image is not labelled for every class (merged single-class sets)."""
    return not all(np.load(labelled_file(processed_dir, split)).all() for split in splits)


def merged_background(labelled: torch.Tensor) -> torch.Tensor:
    """(B, C) bool: the classes a background pixel stands for in each image (background + the unlabelled ones)."""
    merged = ~labelled.bool()
    merged[:, BACKGROUND] = True
    return merged
