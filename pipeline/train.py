"""Train a segmentation model on the preprocessed arrays, keeping the best epoch by val mIoU.

Everything comes from params.yaml: architecture, loss, optimizer, schedule, precision, augmentation.
The training state is saved after every epoch, so a killed run continues where it stopped, in the
same MLflow run (see resume.py).
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import resume, tracking
from pipeline.atomic import atomic_path, write_text
from pipeline.checkpoint import read_checkpoint, save_checkpoint
from pipeline.config import Params, flatten
from pipeline.data.dataset import SegmentationArrays, build_augmentation, read_manifest
from pipeline.data.palette import IGNORE_INDEX
from pipeline.device import autocast, pick_device, pick_precision
from pipeline.inference import predict_batch
from pipeline.losses import build_loss
from pipeline.metrics import score_loader
from pipeline.models import SegmentationModel, build_model, count_parameters, rebuild_params
from pipeline.optim import build_optimizer, build_scheduler
from pipeline.partial_labels import marginal_cross_entropy

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_miou", "val_pixel_accuracy", "lr"]
PROGRESS_IMAGES = 4


@dataclass(frozen=True)
class TrainOutputs:
    model: Path      # best checkpoint by val mIoU
    state: Path      # full state after the last epoch, for resuming
    history: Path    # per-epoch CSV
    metrics: Path    # best epoch's numbers, for `dvc exp show`
    progress: Path   # predictions on fixed val images after every epoch, for the progress GIF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def subset_indices(size: int, limit: int | None, seed: int) -> np.ndarray | None:
    """A seeded random subset of `limit` samples (all of them when limit is None or not smaller)."""
    if limit is None or limit >= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(size, limit, replace=False))


def split_dataset(params: Params, processed_dir: Path, manifest: dict, split: str, transform) -> SegmentationArrays:
    """One split, restricted to `data.subset.<split>` seeded random samples when that is set."""
    limit = getattr(params.data.subset, split)
    indices = subset_indices(len(manifest["splits"][split]["ids"]), limit, params.train.seed)
    return SegmentationArrays(processed_dir, split, transform, indices)


def training_loss(params: Params, num_classes: int, partial: bool):
    """(logits, target, labelled) -> loss; partially labelled data needs the marginal cross-entropy."""
    if partial:
        return marginal_cross_entropy
    loss = build_loss(params.train.loss, num_classes, IGNORE_INDEX, params.train.class_weights,
                      params.train.focal_gamma)
    return lambda logits, target, labelled: loss(logits, target)


def initial_weights(source: str) -> dict:
    """A state dict from a checkpoint path or an MLflow model URI (`runs:/...`, `models:/name@champion`)."""
    if Path(source).exists():
        return read_checkpoint(Path(source))["state_dict"]
    try:
        return mlflow.pytorch.load_model(source, map_location="cpu").state_dict()
    except Exception as error:  # MLflow raises several types for a bad URI
        raise ValueError(f"train.init_from: {source!r} is neither a checkpoint file nor a loadable MLflow "
                         f"model URI ({error})") from error


def load_matching_weights(model: SegmentationModel, weights: dict, source: str) -> None:
    """Copy every tensor whose name and shape match; a new head for other classes starts fresh."""
    own = model.state_dict()
    matching = {name: value for name, value in weights.items() if name in own and own[name].shape == value.shape}
    if not matching:
        raise ValueError(f"train.init_from: no weights in {source} match the {type(model.network).__name__} "
                         f"being trained; is it the same architecture (model and models.<model>)?")
    model.load_state_dict(matching, strict=False)
    skipped = sorted(set(own) - set(matching))
    print(f"init_from {source}: loaded {len(matching)} tensors" + (f", kept fresh: {skipped}" if skipped else ""))


def set_encoder_frozen(model: SegmentationModel, frozen: bool) -> None:
    if hasattr(model.network, "freeze_encoder"):
        model.network.freeze_encoder(frozen)


def train_one_epoch(model: nn.Module, loader: DataLoader, loss_fn, optimizer: torch.optim.Optimizer,
                    device: torch.device, precision: str, grad_clip_norm: float, scaler, description: str) -> float:
    model.train()
    total, count = 0.0, 0
    for images, masks, labelled in tqdm(loader, desc=description, unit="batch", leave=False):
        images, masks, labelled = images.to(device), masks.to(device), labelled.to(device)
        if precision != "fp32":
            images = images.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(images)
        loss = loss_fn(logits.float(), masks, labelled)
        scaler.scale(loss).backward()
        if grad_clip_norm > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(images)
        count += len(images)
    return total / max(count, 1)


def train(params: Params, processed_dir: Path, outputs: TrainOutputs) -> dict:
    """Run (or resume) the training loop with MLflow tracking; returns the best epoch's numbers."""
    recipe = params.train
    seed_everything(recipe.seed)
    if recipe.num_threads:
        torch.set_num_threads(recipe.num_threads)
    if recipe.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    device = pick_device(recipe.device)
    precision = pick_precision(recipe.precision, device)
    manifest = read_manifest(processed_dir)
    class_names = manifest["classes"]

    augmentation = build_augmentation(params.augment, recipe.seed)
    train_set = split_dataset(params, processed_dir, manifest, "train", augmentation)
    val_set = split_dataset(params, processed_dir, manifest, "val", None)
    generator = torch.Generator()
    train_loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, generator=generator,
                              drop_last=len(train_set) > recipe.batch_size, num_workers=recipe.num_workers)
    val_loader = DataLoader(val_set, batch_size=recipe.batch_size, num_workers=recipe.num_workers)
    progress_images = torch.stack([val_set[i][0] for i in range(min(PROGRESS_IMAGES, len(val_set)))])
    partial = not (train_set.labelled.all() and val_set.labelled.all())

    experiment_id = tracking.setup_experiment(params.mlflow)  # before init_from, which may name a model in the store
    model_params = dataclasses.asdict(params.model_params())
    model = build_model(params.model, class_names, model_params)
    if recipe.init_from:
        load_matching_weights(model, initial_weights(recipe.init_from), recipe.init_from)
    model = model.to(device)
    if precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = training_loss(params, len(class_names), partial)
    optimizer = build_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.weight_decay, recipe.momentum)
    scheduler = build_scheduler(recipe.scheduler, optimizer, recipe.epochs, recipe.warmup_epochs,
                                poly_power=recipe.poly_power, plateau_patience=recipe.plateau_patience,
                                plateau_factor=recipe.plateau_factor)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    flat_params = flatten(params)
    identity = resume.fingerprint(flat_params, manifest)
    state = resume.load_unfinished(outputs.state, identity)
    if state is None:
        state = {"fingerprint": identity, "epoch": 0, "completed": False, "run_id": None, "history": [],
                 "snapshots": [], "best": {"val_miou": -1.0}, "epochs_without_improvement": 0}
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        print(f"resuming after epoch {state['epoch']} in MLflow run {state['run_id']}")

    with tracking.start_training_run(experiment_id, state["run_id"], params) as run:
        if state["run_id"] is None:
            state["run_id"] = run.info.run_id
            mlflow.log_params(flat_params)
            mlflow.log_params({"model.num_parameters": count_parameters(model), "data.num_train": len(train_set),
                               "data.num_val": len(val_set), "device": device.type, "precision": precision})
        tracking.log_missing_epochs(run.info.run_id, state["history"])
        first_epoch = state["epoch"] + 1
        for epoch in tqdm(range(first_epoch, recipe.epochs + 1), desc="epochs", unit="epoch",
                          initial=first_epoch - 1, total=recipe.epochs):
            if state["epochs_without_improvement"] >= recipe.early_stopping_patience > 0:
                print(f"early stopping: val mIoU has not improved for {recipe.early_stopping_patience} epochs")
                break
            seed_everything(recipe.seed + epoch)
            generator.manual_seed(recipe.seed + epoch)
            augmentation.set_random_seed(recipe.seed + epoch)
            set_encoder_frozen(model, epoch <= recipe.freeze_encoder_epochs)
            lr = scheduler.lr
            train_loss = train_one_epoch(model, train_loader, loss_fn, optimizer, device, precision,
                                         recipe.grad_clip_norm, scaler, f"epoch {epoch}")
            scores = score_loader(model, val_loader, device, len(class_names), partial)
            val_miou = scores["miou"]
            scheduler.step(val_miou)
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": scores["loss"], "val_miou": val_miou,
                   "val_pixel_accuracy": scores["pixel_accuracy"], "lr": lr}
            tqdm.write(f"epoch {epoch}: train_loss {train_loss:.4f} val_loss {row['val_loss']:.4f} val_miou {val_miou:.4f}")
            state["history"].append(row)
            if epoch == 1 or epoch % recipe.progress_every == 0:
                predictions = predict_batch(model, progress_images.to(device)).argmax(1).byte().cpu().numpy()
                state["snapshots"].append((epoch, predictions))
            if val_miou > state["best"]["val_miou"]:
                state["best"] = {"val_miou": val_miou, "val_pixel_accuracy": scores["pixel_accuracy"],
                                 "val_loss": scores["loss"], "best_epoch": epoch}
                state["epochs_without_improvement"] = 0
                state["best_weights"] = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
            else:
                state["epochs_without_improvement"] += 1
            state.update(epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                         scheduler=scheduler.state_dict())
            resume.save_state(outputs.state, state)
            tracking.log_epoch(row)

        finish(params, outputs, state, progress_images, class_names, manifest["image_size"])
    return state["best"]


def finish(params: Params, outputs: TrainOutputs, state: dict, progress_images: torch.Tensor,
           class_names: list[str], image_size: int) -> None:
    """Write the best checkpoint and the reports, log them and the model to MLflow, mark the state completed."""
    best = state["best"]
    model_params = dataclasses.asdict(params.model_params())
    best_model = build_model(params.model, class_names, rebuild_params(params.model, model_params))
    best_model.load_state_dict(state["best_weights"])
    save_checkpoint(outputs.model, best_model, params.model, model_params, epoch=best["best_epoch"],
                    mlflow_run_id=state["run_id"], image_size=image_size)
    write_history(state["history"], outputs.history)
    write_text(outputs.metrics, json.dumps(best, indent=2) + "\n")
    save_progress(progress_images, state["snapshots"], outputs.progress)
    mlflow.log_metrics({name if name.startswith("best") else f"best_{name}": value for name, value in best.items()})
    mlflow.log_artifact(str(outputs.history), "reports/train")
    mlflow.log_artifact(str(outputs.metrics), "reports/train")
    tracking.log_and_promote_model(best_model.eval(), params.mlflow.experiment, best["val_miou"])
    state["completed"] = True
    resume.save_state(outputs.state, state)


def write_history(history: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)


def save_progress(images: torch.Tensor, snapshots: list[tuple[int, np.ndarray]], path: Path) -> None:
    """The fixed val images and their predictions after every epoch, for the progress GIF."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, images=(images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
                            epochs=np.array([epoch for epoch, _ in snapshots]),
                            predictions=np.stack([prediction for _, prediction in snapshots]))
