"""The torch Dataset over preprocessed arrays, memory-mapped so start-up is instant at any size."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network at import

import albumentations as A  # noqa: E402
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.labels import IGNORE_INDEX, labelled_file


def build_augmentation(augment, seed: int, image_size: int) -> A.Compose:
    """Training augmentation from the `augment` params for image_size² arrays; masks use nearest neighbour and
    255 fill. A crop as large as the image is no crop: one recipe serves every `data.image_size`."""
    crop = [A.RandomCrop(augment.crop_size, augment.crop_size)] if 0 < augment.crop_size < image_size else []
    return A.Compose([
        *crop,
        A.HorizontalFlip(p=augment.hflip),
        A.Affine(scale=(1 - augment.scale_limit, 1 + augment.scale_limit),
                 rotate=(-augment.rotate_limit, augment.rotate_limit),
                 interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                 fill=0, fill_mask=IGNORE_INDEX, p=augment.affine),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=augment.color_jitter),
    ], seed=seed)


def read_manifest(processed_dir: Path) -> dict:
    return json.loads((Path(processed_dir) / "manifest.json").read_text())


class SegmentationArrays(Dataset):
    """Samples of one split: (image (3,S,S) float in [0,1], mask (S,S) long, labelled (C,) bool)."""

    def __init__(self, processed_dir: Path, split: str, transform: A.Compose | None = None,
                 indices: np.ndarray | None = None):
        processed_dir = Path(processed_dir)
        self.images = np.load(processed_dir / f"{split}_images.npy", mmap_mode="r")
        self.masks = np.load(processed_dir / f"{split}_masks.npy", mmap_mode="r")
        self.labelled = np.load(labelled_file(processed_dir, split))
        self.indices = np.arange(len(self.images)) if indices is None else np.asarray(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        index = self.indices[item]
        image, mask = np.array(self.images[index]), np.array(self.masks[index])  # writable copies of the map
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image_tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
        return image_tensor, torch.from_numpy(np.ascontiguousarray(mask)).long(), torch.from_numpy(self.labelled[index])
