"""Train a segmentation model on the preprocessed arrays, keeping the best epoch by val mIoU."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import tracking
from pipeline.atomic import atomic_path, write_text
from pipeline.checkpoint import save_checkpoint
from pipeline.config import Params, flatten
from pipeline.data.dataset import SegmentationArrays, build_augmentation, read_manifest
from pipeline.data.palette import IGNORE_INDEX
from pipeline.metrics import SegmentationMetrics
from pipeline.models import build_model, count_parameters

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_miou", "val_pixel_accuracy", "lr"]
PROGRESS_IMAGES = 4


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def train_one_epoch(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device, description: str) -> float:
    model.train()
    total, count = 0.0, 0
    for images, masks, _ in tqdm(loader, desc=description, unit="batch", leave=False):
        images, masks = images.to(device), masks.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), masks)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(images)
        count += len(images)
    return total / max(count, 1)


@torch.inference_mode()
def validate(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, device: torch.device,
             num_classes: int) -> tuple[float, dict]:
    """Mean loss and dataset-level scores over the whole split at the processed size."""
    model.eval()
    metrics = SegmentationMetrics(num_classes)
    total, count = 0.0, 0
    for images, masks, _ in loader:
        images, masks = images.to(device), masks.to(device)
        logits = model(images)
        total += loss_fn(logits, masks).item() * len(images)
        count += len(images)
        metrics.update(logits.argmax(1), masks)
    return total / max(count, 1), metrics.compute()


@torch.inference_mode()
def predict_batch(model: nn.Module, images: torch.Tensor, device: torch.device) -> np.ndarray:
    model.eval()
    return model(images.to(device)).argmax(1).byte().cpu().numpy()


def train(params: Params, processed_dir: Path, model_path: Path, history_path: Path, metrics_path: Path,
          progress_path: Path) -> dict:
    """Run the training loop with MLflow tracking; writes the best checkpoint, history, metrics and snapshots."""
    seed_everything(params.train.seed)
    if params.train.num_threads:
        torch.set_num_threads(params.train.num_threads)
    device = pick_device()
    manifest = read_manifest(processed_dir)
    class_names = manifest["classes"]
    train_set = SegmentationArrays(processed_dir, "train", build_augmentation(params.augment, params.train.seed))
    val_set = SegmentationArrays(processed_dir, "val")
    generator = torch.Generator().manual_seed(params.train.seed)
    train_loader = DataLoader(train_set, batch_size=params.train.batch_size, shuffle=True, drop_last=True,
                              num_workers=params.train.num_workers, generator=generator)
    val_loader = DataLoader(val_set, batch_size=params.train.batch_size, num_workers=params.train.num_workers)
    progress_images = torch.stack([val_set[i][0] for i in range(min(PROGRESS_IMAGES, len(val_set)))])

    model_params = dataclasses.asdict(params.model_params())
    model = build_model(params.model, class_names, model_params).to(device)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.lr, weight_decay=params.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=params.train.plateau_factor,
                                                           patience=params.train.plateau_patience)

    experiment_id = tracking.setup_experiment(params.mlflow)
    history, snapshots = [], []
    best = {"val_miou": -1.0}
    with mlflow.start_run(experiment_id=experiment_id, run_name=tracking.run_name(),
                          tags=tracking.run_tags(params.data.dataset, params.model)) as run:
        mlflow.log_params(flatten(params))
        mlflow.log_params({"model.num_parameters": count_parameters(model), "data.num_train": len(train_set),
                           "data.num_val": len(val_set), "device": device.type})
        for epoch in tqdm(range(1, params.train.epochs + 1), desc="epochs", unit="epoch"):
            lr = optimizer.param_groups[0]["lr"]
            train_loss = train_one_epoch(model, train_loader, loss_fn, optimizer, device, f"epoch {epoch}")
            val_loss, scores = validate(model, val_loader, loss_fn, device, len(class_names))
            scheduler.step(scores["miou"])
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_miou": scores["miou"],
                   "val_pixel_accuracy": scores["pixel_accuracy"], "lr": lr}
            history.append(row)
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            tqdm.write(f"epoch {epoch}: train_loss {train_loss:.4f} val_loss {val_loss:.4f} val_miou {scores['miou']:.4f}")
            snapshots.append((epoch, predict_batch(model, progress_images, device)))
            if scores["miou"] > best["val_miou"]:
                best = {"val_miou": scores["miou"], "val_pixel_accuracy": scores["pixel_accuracy"],
                        "val_loss": val_loss, "best_epoch": epoch}
                save_checkpoint(model_path, model, params.model, model_params, epoch=epoch,
                                mlflow_run_id=run.info.run_id, image_size=manifest["image_size"])

        write_history(history, history_path)
        write_text(metrics_path, json.dumps(best, indent=2) + "\n")
        save_progress(progress_images, snapshots, progress_path)
        mlflow.log_metrics({f"best_{k}" if not k.startswith("best") else k: v for k, v in best.items()})
        mlflow.log_artifact(str(history_path), "reports/train")
        mlflow.log_artifact(str(metrics_path), "reports/train")
        best_model = build_model(params.model, class_names, model_params)
        best_model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=False)["state_dict"])
        tracking.log_model(best_model.eval(), len(class_names))
    return best


def write_history(history: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)


def save_progress(images: torch.Tensor, snapshots: list[tuple[int, np.ndarray]], path: Path) -> None:
    """The fixed val images and their predictions after every epoch, for the progress GIF."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, images=(images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
                            epochs=np.array([epoch for epoch, _ in snapshots]),
                            predictions=np.stack([prediction for _, prediction in snapshots]))
