"""Score the trained model on the val split at each mask's original size.

These numbers follow the VOC/ADE20K protocol (logits resized back to each mask). When the data has a
test split (VOC layout: ImageSets/Segmentation/test.txt) it is scored too, as `test_*`; the checkpoint
was chosen on val alone. The same scores at
the processed `image_size` squared are the train stage's `val_*` metrics of the best epoch, so they
are not repeated here. For partially labelled data (single-class sets) mIoU and per-class IoU score
every class only on the images labelled for it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.atomic import atomic_path, write_text
from pipeline.data.dataset import read_manifest
from pipeline.data.imageio import read_rgb
from pipeline.data.interim import TEST_SPLIT, read_samples
from pipeline.data.labels import is_partially_labelled, labelled_matrix
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.inference import predict_logits_many
from pipeline.scoring.metrics import SplitScores
from pipeline.training.device import memory_format, pick_device
from pipeline.training.losses import build_loss

HEADLINE = ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou", "loss")


def score_original(model, interim_dir: Path, split: str, image_size: int, batch_size: int, tta: dict,
                   partial: bool) -> dict:
    """Scores of one split at each mask's own size, `batch_size` images through the model at a time."""
    samples = read_samples(interim_dir)
    samples = samples[samples["split"] == split].reset_index(drop=True)
    labelled = torch.from_numpy(labelled_matrix(samples["labelled"].tolist(), len(model.class_names)))
    scores = SplitScores(len(model.class_names), partial, build_loss("ce", len(model.class_names), partial=partial))
    starts = range(0, len(samples), batch_size)
    for start in tqdm(starts, desc="evaluate (original size)", unit="batch", disable=None):
        rows = samples.iloc[start:start + batch_size]
        images = [read_rgb(interim_dir / name) for name in rows["image"]]
        predictions = predict_logits_many(model, images, image_size=image_size, **tta)
        for offset, (name, log_probabilities) in enumerate(zip(rows["mask"], predictions)):
            mask = torch.from_numpy(np.asarray(Image.open(interim_dir / name), dtype=np.int64))
            index = start + offset
            scores.update(log_probabilities[None], mask[None].to(log_probabilities.device),
                          labelled[index:index + 1].to(log_probabilities.device))
    return scores.compute()


def reported(scores: dict) -> dict:
    """The headline scores, every digit: the thread count they were computed with is fixed by the machine, not its
    load (training/threads.py), so a re-run writes the same bytes."""
    return {name: scores[name] for name in HEADLINE}


def evaluate(processed_dir: Path, interim_dir: Path, model_path: Path, out_dir: Path, settings) -> dict:
    """Write metrics.json (numbers only, for `dvc exp show`), per_class_iou.json and confusion_matrix.csv.

    `settings` is the `evaluate` params block: batch_size, device, tta_hflip, tta_scales."""
    device = pick_device(settings.device)
    model = load_checkpoint(model_path).to(device, memory_format=memory_format(device, "fp32"))
    tta = {"hflip": settings.tta_hflip, "scales": settings.tta_scales}
    partial = is_partially_labelled(processed_dir, ("val",))
    image_size = read_manifest(processed_dir)["image_size"]
    original = score_original(model, interim_dir, "val", image_size, settings.batch_size, tta, partial)
    metrics = reported(original)
    if TEST_SPLIT in set(read_samples(interim_dir)["split"]):
        test = score_original(model, interim_dir, TEST_SPLIT, image_size, settings.batch_size, tta, partial)
        metrics.update({f"test_{name}": value for name, value in reported(test).items()})
    per_class = {name: None if np.isnan(iou) else iou
                 for name, iou in zip(model.class_names, original["per_class_iou"])}
    out_dir = Path(out_dir)
    write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_text(out_dir / "per_class_iou.json", json.dumps(per_class, indent=2) + "\n")
    with atomic_path(out_dir / "confusion_matrix.csv") as tmp:
        pd.DataFrame(original["confusion_matrix"], index=model.class_names, columns=model.class_names).to_csv(tmp)
    return metrics
