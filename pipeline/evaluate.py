"""Score the trained model on the val split: dataset-level metrics, per-class IoU, confusion matrix."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from pipeline.atomic import atomic_path, write_text
from pipeline.checkpoint import load_checkpoint, read_checkpoint
from pipeline.data.dataset import SegmentationArrays
from pipeline.data.palette import IGNORE_INDEX
from pipeline.train import validate


def evaluate(processed_dir: Path, model_path: Path, out_dir: Path, batch_size: int) -> dict:
    """Write metrics.json (numbers only, for `dvc exp show`), per_class_iou.json and confusion_matrix.csv."""
    model = load_checkpoint(model_path)
    loader = DataLoader(SegmentationArrays(processed_dir, "val"), batch_size=batch_size)
    loss, scores = validate(model, loader, nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX), torch.device("cpu"),
                            len(model.class_names))
    metrics = {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
               "mean_accuracy": scores["mean_accuracy"], "fw_iou": scores["fw_iou"], "loss": loss}
    per_class = {name: None if np.isnan(iou) else iou for name, iou in zip(model.class_names, scores["per_class_iou"])}
    out_dir = Path(out_dir)
    write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_text(out_dir / "per_class_iou.json", json.dumps(per_class, indent=2) + "\n")
    with atomic_path(out_dir / "confusion_matrix.csv") as tmp:
        pd.DataFrame(scores["confusion_matrix"], index=model.class_names, columns=model.class_names).to_csv(tmp)
    return {"metrics": metrics, "run_id": read_checkpoint(model_path)["mlflow_run_id"]}
