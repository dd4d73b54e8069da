"""The common interim form every source reaches: image/mask pairs, a split, and class names.

Layout of `data/interim/<dataset>/`:
  images/<id>.<ext>   the source image, copied byte for byte
  masks/<id>.png      palette PNG of class indices (255 = ignore), same size as the image
  samples.csv         id, split, image, mask, height, width, labelled (classes annotated, ';'-joined or 'all')
  classes.json        {"classes": [name, ...]}
  skipped.json        samples left out under `on_bad_sample: skip`, with the reason
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.atomic import atomic_dir
from pipeline.data.imageio import BadSampleError, open_displayed, write_mask_png
from pipeline.data.labels import ALL_LABELLED, IGNORE_INDEX

SPLITS = ("train", "val")  # every source has both; training reads only these
TEST_SPLIT = "test"  # optional: scored by evaluate, never used to choose a checkpoint


@dataclass(frozen=True)
class RawSample:
    """One image/mask pair as a source reader finds it."""

    id: str
    split: str
    image_path: Path
    mask_path: Path
    labelled: tuple[int, ...] | None = None  # classes annotated in this image; None means all of them


@dataclass
class SourceDataset:
    """What a reader returns: class names, samples, and how to turn a sample's mask file into indices."""

    classes: list[str]
    samples: list[RawSample]
    decode_mask: Callable[[RawSample], np.ndarray]  # -> HxW uint8 class indices, 255 = ignore


def check_mask(mask: np.ndarray, sample: RawSample, num_classes: int, image_size: tuple[int, int]) -> None:
    if mask.shape != image_size:
        raise BadSampleError(
            f"{sample.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
            f"{sample.image_path} is {image_size[1]}x{image_size[0]}"
        )
    bad = np.setdiff1d(np.unique(mask), [*range(num_classes), IGNORE_INDEX])
    if bad.size:
        raise BadSampleError(
            f"{sample.mask_path}: mask value {int(bad[0])} is outside the {num_classes} classes "
            f"(allowed 0..{num_classes - 1} and {IGNORE_INDEX} for ignore)"
        )


def write_interim(source: SourceDataset, out_dir: Path, on_bad_sample: str = "error") -> pd.DataFrame:
    """Validate every sample and write the interim form atomically; returns the samples table."""
    rows, skipped = [], []
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for sample in tqdm(source.samples, desc="merge", unit="img", disable=None):
            try:
                rows.append(_write_sample(source, sample, tmp))
            except BadSampleError as error:
                if on_bad_sample != "skip":
                    raise
                skipped.append({"id": sample.id, "reason": str(error)})
        if not rows:
            raise BadSampleError(f"no usable samples in the source for {out_dir}")
        table = pd.DataFrame(rows)
        missing = [split for split in SPLITS if split not in set(table["split"])]
        if missing:
            raise BadSampleError(f"the source has no samples in split(s) {missing}; both train and val are needed")
        table.to_csv(tmp / "samples.csv", index=False)
        (tmp / "classes.json").write_text(json.dumps({"classes": source.classes}, indent=2) + "\n")
        (tmp / "skipped.json").write_text(json.dumps({"count": len(skipped), "samples": skipped}, indent=2) + "\n")
    return table


def _write_sample(source: SourceDataset, sample: RawSample, out_dir: Path) -> dict:
    if not sample.mask_path.exists():
        raise BadSampleError(f"{sample.image_path}: no mask found (expected {sample.mask_path})")
    width, height = open_displayed(sample.image_path).size
    mask = source.decode_mask(sample)
    check_mask(mask, sample, len(source.classes), (height, width))
    image_name = f"images/{sample.id}{sample.image_path.suffix.lower()}"
    shutil.copyfile(sample.image_path, out_dir / image_name)
    mask_name = f"masks/{sample.id}.png"
    write_mask_png(mask, out_dir / mask_name)
    labelled = ALL_LABELLED if sample.labelled is None else ";".join(map(str, sample.labelled))
    return {"id": sample.id, "split": sample.split, "image": image_name, "mask": mask_name,
            "height": height, "width": width, "labelled": labelled}


def read_classes(interim_dir: Path) -> list[str]:
    return json.loads((Path(interim_dir) / "classes.json").read_text())["classes"]


def read_samples(interim_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(interim_dir) / "samples.csv", dtype={"id": str, "labelled": str})
