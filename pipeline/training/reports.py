"""What a training leaves for DVC and the plot stage: the per-epoch history, the best epoch's numbers,
and predictions on fixed val images after some epochs (for the progress GIF)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.atomic import atomic_path, write_text

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_miou", "val_pixel_accuracy", "lr")


def write_history(history: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(tmp, index=False)


def write_metrics(values: dict, path: Path) -> None:
    """A flat DVC metrics file: the best epoch's numbers (numbers only: `dvc exp show` prefixes columns of mixed
    files), or apart from them the settings resolved on this machine."""
    write_text(path, json.dumps(values, indent=2) + "\n")


def save_progress(images: torch.Tensor, snapshots: list[tuple[int, torch.Tensor]], path: Path) -> None:
    """The fixed val images and their predictions after every kept epoch, for the progress GIF."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, images=(images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
                            epochs=np.array([epoch for epoch, _ in snapshots]),
                            predictions=np.stack([np.asarray(prediction) for _, prediction in snapshots]))
