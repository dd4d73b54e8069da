"""Reader for the Pascal VOC 2012 layout: real VOC, the built-in synthetic set, and users' own data."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.imageio import BadSampleError, open_image
from pipeline.data.interim import SPLITS, RawSample, SourceDataset

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
INDEX_MODES = ("P", "L")


def decode_index_mask(sample: RawSample) -> np.ndarray:
    """A palette or greyscale PNG whose pixel values are class indices."""
    image = open_image(sample.mask_path)
    if image.mode not in INDEX_MODES:
        raise BadSampleError(
            f"{sample.mask_path}: mask mode {image.mode} cannot hold class indices (expected one of {INDEX_MODES})"
        )
    return np.asarray(image, dtype=np.uint8)


def read_voc_layout(root: Path, classes: list[str], mask_dir: str = "SegmentationClass",
                    split_files: dict[str, str] | None = None) -> SourceDataset:
    """Samples of a `VOCdevkit/VOC2012`-style folder: JPEGImages, a mask folder, ImageSets/Segmentation lists."""
    root = Path(root)
    split_files = split_files or {split: f"{split}.txt" for split in SPLITS}
    samples = []
    for split, list_name in split_files.items():
        list_path = root / "ImageSets" / "Segmentation" / list_name
        if not list_path.exists():
            raise FileNotFoundError(f"{list_path}: split list missing (a VOC-layout root needs train.txt and val.txt)")
        for sample_id in list_path.read_text().split():
            samples.append(RawSample(id=sample_id, split=split, image_path=root / "JPEGImages" / f"{sample_id}.jpg",
                                     mask_path=root / mask_dir / f"{sample_id}.png"))
    return SourceDataset(classes=list(classes), samples=samples, decode_mask=decode_index_mask)
