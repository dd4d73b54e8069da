"""The plain reference of benchmarks/recipe.py: the 40-line PyTorch script a newcomer would write.

segmentation_models_pytorch's Unet('resnet34', encoder_weights=None), whole images resized to 256²,
batch 8, Adam lr 1e-3, horizontal flip only, CrossEntropy(ignore_index=255), fp32. It shares nothing
with the pipeline but the VOC layout on disk, so it cannot inherit the pipeline's mistakes.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image

SIZE = 256


def load_split(voc: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    images = [np.asarray(Image.open(voc / "JPEGImages" / f"{i}.jpg").convert("RGB").resize((SIZE, SIZE),
                                                                                           Image.BILINEAR))
              for i in ids]
    masks = [np.asarray(Image.open(voc / "SegmentationClass" / f"{i}.png").resize((SIZE, SIZE), Image.NEAREST))
             for i in ids]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(masks)).long()


def dataset_miou(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, num_classes: int) -> float:
    """Dataset-level mIoU: one confusion matrix over the split, 255 ignored, mean over classes seen."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, len(images), 8):
            prediction = model(images[start:start + 8].float() / 255).argmax(1)
            target = masks[start:start + 8]
            valid = target != 255
            confusion += torch.bincount(target[valid] * num_classes + prediction[valid],
                                        minlength=num_classes ** 2).view(num_classes, num_classes)
    hits = confusion.diag().double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    return float((hits[union > 0] / union[union > 0]).mean())


def train_reference(voc: Path, num_classes: int, epochs: int, seed: int,
                    report: Callable[[int, float, float], None], time_budget: float | None = None) -> None:
    """Train the reference; `report(epoch, val_miou, elapsed_seconds)` after every epoch. No epoch starts once
    `time_budget` seconds have passed, as in the pipeline's loop."""
    torch.manual_seed(seed)
    train_images, train_masks = load_split(voc, "train")
    val_images, val_masks = load_split(voc, "val")
    model = smp.Unet("resnet34", encoder_weights=None, classes=num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(train_images)).split(8):
            images, masks = train_images[batch].float() / 255, train_masks[batch]
            flip = torch.rand(len(batch)) < 0.5
            images[flip], masks[flip] = images[flip].flip(-1), masks[flip].flip(-1)
            loss = F.cross_entropy(model(images), masks, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        miou = dataset_miou(model, val_images, val_masks, num_classes)
        elapsed = time.perf_counter() - start  # validation included, as in the pipeline's epochs
        report(epoch, miou, elapsed)
        if time_budget is not None and elapsed >= time_budget:
            break
