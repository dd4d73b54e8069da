"""Resize the interim form to a fixed square size and store it as uint8 arrays a Dataset can memory-map.

Layout of `data/processed/<dataset>/`:
  <split>_images.npy    (N, S, S, 3) uint8, resized bilinearly
  <split>_masks.npy     (N, S, S) uint8 class indices, resized with nearest neighbour (255 = ignore)
  <split>_labelled.npy  (N, C) bool: which classes are annotated in each image
  manifest.json         classes, image size, per split the ids and original (height, width), and the
                        val classes no training mask shows (their IoU can only be 0)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.atomic import atomic_dir
from pipeline.data.imageio import read_rgb
from pipeline.data.interim import SPLITS, read_classes, read_samples
from pipeline.data.labels import labelled_file, labelled_matrix


def preprocess(interim_dir: Path, out_dir: Path, image_size: int) -> None:
    interim_dir = Path(interim_dir)
    classes = read_classes(interim_dir)
    samples = read_samples(interim_dir)
    manifest = {"classes": classes, "image_size": image_size, "splits": {}}
    shown = {}  # split -> which mask values its resized masks hold
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            shown[split] = np.zeros(256, dtype=bool)
            rows = samples[samples["split"] == split].reset_index(drop=True)
            images = np.lib.format.open_memmap(tmp / f"{split}_images.npy", mode="w+", dtype=np.uint8,
                                               shape=(len(rows), image_size, image_size, 3))
            masks = np.lib.format.open_memmap(tmp / f"{split}_masks.npy", mode="w+", dtype=np.uint8,
                                              shape=(len(rows), image_size, image_size))
            for index, row in tqdm(rows.iterrows(), total=len(rows), desc=f"preprocess {split}", unit="img",
                                   disable=None):
                image = Image.fromarray(read_rgb(interim_dir / row["image"]))
                images[index] = np.asarray(image.resize((image_size, image_size), Image.BILINEAR))
                mask = Image.open(interim_dir / row["mask"])
                masks[index] = np.asarray(mask.resize((image_size, image_size), Image.NEAREST))
                shown[split] |= np.bincount(masks[index].ravel(), minlength=256) > 0
            images.flush()
            masks.flush()
            del images, masks
            np.save(labelled_file(tmp, split), labelled_matrix(rows["labelled"].tolist(), len(classes)))
            manifest["splits"][split] = {"ids": rows["id"].tolist(),
                                         "original_sizes": rows[["height", "width"]].values.tolist()}
        manifest["val_classes_not_in_train"] = [name for index, name in enumerate(classes)
                                                if shown["val"][index] and not shown["train"][index]]
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
