"""Score the trained model on the val split, at the processed size and at each mask's original size.

The original-resolution numbers follow the VOC/ADE20K protocol (logits resized back to each mask)
and are the headline `miou`, `pixel_accuracy`, ...; the same scores on the processed
`image_size` squared arrays are reported with the suffix `_processed`. For partially labelled data
(single-class sets) mIoU and per-class IoU score every class only on the images labelled for it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.atomic import atomic_path, write_text
from pipeline.data.dataset import SegmentationArrays, read_manifest
from pipeline.data.imageio import read_rgb
from pipeline.data.interim import read_samples
from pipeline.data.labels import is_partially_labelled, labelled_matrix
from pipeline.evaluation.metrics import SplitScores
from pipeline.evaluation.scoring import score_loader
from pipeline.inference import predict_logits
from pipeline.models.checkpoint import load_checkpoint
from pipeline.training.device import pick_device

HEADLINE = ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou")


def score_processed(model, processed_dir: Path, batch_size: int, device: torch.device, tta: dict,
                    partial: bool) -> dict:
    loader = DataLoader(SegmentationArrays(processed_dir, "val"), batch_size=batch_size)
    return score_loader(model, loader, device, len(model.class_names), partial, **tta)


def score_original(model, interim_dir: Path, image_size: int, tta: dict, partial: bool) -> dict:
    samples = read_samples(interim_dir)
    samples = samples[samples["split"] == "val"].reset_index(drop=True)
    labelled = torch.from_numpy(labelled_matrix(samples["labelled"].tolist(), len(model.class_names)))
    scores = SplitScores(len(model.class_names), partial)
    rows = tqdm(samples.iterrows(), total=len(samples), desc="evaluate (original size)", unit="img", disable=None)
    for index, row in rows:
        image = read_rgb(interim_dir / row["image"])
        mask = torch.from_numpy(np.asarray(Image.open(interim_dir / row["mask"]), dtype=np.int64))
        log_probabilities = predict_logits(model, image, image_size=image_size, **tta)
        scores.update(log_probabilities[None], mask[None].to(log_probabilities.device), labelled[index : index + 1])
    return scores.compute()


def evaluate(processed_dir: Path, interim_dir: Path, model_path: Path, out_dir: Path, settings) -> dict:
    """Write metrics.json (numbers only, for `dvc exp show`), per_class_iou.json and confusion_matrix.csv.

    `settings` is the `evaluate` params block: batch_size, device, tta_hflip, tta_scales."""
    device = pick_device(settings.device)
    model = load_checkpoint(model_path).to(device)
    tta = {"hflip": settings.tta_hflip, "scales": settings.tta_scales}
    partial = is_partially_labelled(processed_dir, ("val",))
    image_size = read_manifest(processed_dir)["image_size"]
    processed = score_processed(model, processed_dir, settings.batch_size, device, tta, partial)
    original = score_original(model, interim_dir, image_size, tta, partial)
    metrics = {name: original[name] for name in (*HEADLINE, "loss")}
    metrics.update({f"{name}_processed": processed[name] for name in (*HEADLINE, "loss")})
    per_class = {name: None if np.isnan(iou) else iou
                 for name, iou in zip(model.class_names, original["per_class_iou"])}
    out_dir = Path(out_dir)
    write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_text(out_dir / "per_class_iou.json", json.dumps(per_class, indent=2) + "\n")
    with atomic_path(out_dir / "confusion_matrix.csv") as tmp:
        pd.DataFrame(original["confusion_matrix"], index=model.class_names, columns=model.class_names).to_csv(tmp)
    return metrics
