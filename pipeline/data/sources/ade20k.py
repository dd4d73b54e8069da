"""Reader for ADE20K SceneParsing (`ADEChallengeData2016/`): 150 classes, 0 = "other" is ignored.

`reduce_zero_label` as in mmsegmentation: 0 -> 255, 1..150 -> 0..149. A split whose image folder is
missing contributes no samples (the merge stage then names the empty split).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.files import files_by_stem, read_lines
from pipeline.data.imageio import BadSampleError
from pipeline.data.interim import RawSample, SourceDataset
from pipeline.data.labels import IGNORE_INDEX
from pipeline.data.sources.voc import decode_index_mask

ADE_SUBDIR = "ADEChallengeData2016"
NUM_CLASSES = 150
SPLIT_FOLDERS = {"train": "training", "val": "validation"}


def read_class_table(path: Path) -> list[str]:
    """The 150 names of `objectInfo150.txt` (tab-separated, header row); 'building, edifice' -> 'building'."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: class table missing (ADEChallengeData2016 ships objectInfo150.txt)")
    header, *rows = [line.split("\t") for line in read_lines(path) if line]
    column = header.index("Name") if "Name" in header else -1
    names = [row[column].split(",")[0].strip() for row in rows]
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} classes, found {len(names)}")
    return names


def decode_ade_mask(sample: RawSample) -> np.ndarray:
    raw = decode_index_mask(sample)
    if raw.max() > NUM_CLASSES:
        raise BadSampleError(f"{sample.mask_path}: annotation value {int(raw.max())} is outside 0..{NUM_CLASSES}")
    return np.where(raw == 0, IGNORE_INDEX, raw - 1).astype(np.uint8)


def read_ade20k(root: Path) -> SourceDataset:
    """`root` is `ADEChallengeData2016/` or the folder holding it; annotations pair with images by stem."""
    root = Path(root)
    root = root / ADE_SUBDIR if (root / ADE_SUBDIR).is_dir() else root
    samples = [sample for split, folder in SPLIT_FOLDERS.items() for sample in split_samples(root, split, folder)]
    if not samples:
        raise FileNotFoundError(f"{root}: no images in images/training or images/validation "
                                f"(expected the ADEChallengeData2016 layout)")
    return SourceDataset(classes=read_class_table(root / "objectInfo150.txt"), samples=samples,
                         decode_mask=decode_ade_mask)


def split_samples(root: Path, split: str, folder: str) -> list[RawSample]:
    """Images of one split folder with the annotation of the same stem (any extension, in any case)."""
    annotations = files_by_stem(root / "annotations" / folder)
    return [RawSample(id=stem, split=split, image_path=image,
                      mask_path=annotations.get(stem, root / "annotations" / folder / f"{stem}.png"))
            for stem, image in files_by_stem(root / "images" / folder).items()]
