"""Every figure of the plot stage, drawn from what train and evaluate wrote."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.data.dataset import SegmentationArrays
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.inference import class_indices, predict_batch
from pipeline.reporting import plots

FIGURES = ("per_class_iou.png", "sample_predictions.png", "training_history.png", "confusion_matrix.png",
           "model_progress.gif")


def sample_predictions(model, processed_dir: Path, num_samples: int) -> tuple[list, list, list]:
    """The first `num_samples` val images at the processed size, their masks and the model's predictions."""
    dataset = SegmentationArrays(processed_dir, "val")
    count = min(num_samples, len(dataset))
    images = torch.stack([dataset[i][0] for i in range(count)])
    predictions = class_indices(predict_batch(model, images)).byte().numpy()
    return ([np.asarray(dataset.images[i]) for i in range(count)], [np.asarray(dataset.masks[i]) for i in range(count)],
            list(predictions))


def make_figures(model_path: Path, processed_dir: Path, train_dir: Path, eval_dir: Path, out_dir: Path,
                 num_samples: int) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(model_path)
    names = model.class_names
    per_class = {name: np.nan if iou is None else iou
                 for name, iou in json.loads((Path(eval_dir) / "per_class_iou.json").read_text()).items()}
    plots.plot_per_class_iou(per_class, out_dir / "per_class_iou.png")
    plots.plot_sample_predictions(*sample_predictions(model, processed_dir, num_samples), names,
                                  out_dir / "sample_predictions.png")
    plots.plot_training_history(pd.read_csv(Path(train_dir) / "history.csv"), out_dir / "training_history.png")
    confusion = pd.read_csv(Path(eval_dir) / "confusion_matrix.csv", index_col=0).to_numpy()
    plots.plot_confusion_matrix(confusion, names, out_dir / "confusion_matrix.png")
    progress = np.load(Path(train_dir) / "progress.npz")
    snapshots = [(int(epoch), list(predictions))
                 for epoch, predictions in zip(progress["epochs"], progress["predictions"])]
    plots.save_progress_gif(list(progress["images"]), snapshots, names, out_dir / "model_progress.gif")
    return [out_dir / name for name in FIGURES]
