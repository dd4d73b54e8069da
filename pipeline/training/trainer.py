"""One training process's trainer: the model, data, loss, optimizer and schedule built once from params, and what
one epoch does with them (train, validate, step the schedule)."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import Params
from pipeline.models.inference import class_indices, predict_batch
from pipeline.models.segmenter import SegmentationModel
from pipeline.scoring.loader import score_loader
from pipeline.scoring.metrics import majority_class_miou
from pipeline.training import distributed, pruning
from pipeline.training.device import autocast, memory_format, pick_precision
from pipeline.training.graceful_stop import GracefulStop
from pipeline.training.health import check_finite, check_not_exploded
from pipeline.training.optim import Schedule
from pipeline.training.setup import (
    TrainData,
    build_data,
    build_optimization,
    build_segmentation_model,
    build_training_loss,
    seed_everything,
)
from pipeline.training.state import TrainState

RANK_SEED_STRIDE = 100_000  # more epochs than any training runs: no two (epoch, rank) pairs share a seed


@dataclass
class Trainer:
    """Everything one epoch needs, built once from params, in each training process."""
    params: Params
    data: TrainData
    model: SegmentationModel         # the weights: state dicts, snapshots, checkpoints, validation
    network: nn.Module               # the same model as trained: DistributedDataParallel around it, or itself
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Schedule
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    sync_batchnorm: bool
    class_names: list[str]
    image_size: int
    majority_val_miou: float | None = None  # the val split's majority-class predictor's (health.py)
    stop: GracefulStop = dataclasses.field(default_factory=GracefulStop)  # Ctrl-C and SIGTERM, at batch boundaries
    trial: pruning.TrialLink | None = None  # the Optuna trial this training runs as, if any (pruning.py)


    def run_epoch(self, epoch: int) -> tuple[dict, float]:
        """Train one epoch, score the val split, step the schedule; returns the history row (the same in
        every process: losses and scores are summed over the processes) and the training speed, in samples
        (images, or crops of them) per second over all processes."""
        recipe = self.params.train
        seed = epoch_seed(recipe.seed, epoch, distributed.rank())
        seed_everything(seed)
        self.data.start_epoch(epoch, seed)
        if recipe.freeze_encoder_epochs:
            self.model.freeze_encoder(epoch <= recipe.freeze_encoder_epochs)
        lr = self.scheduler.lr
        started = time.perf_counter()
        train_loss, samples = self.train_one_epoch(f"epoch {epoch}")
        speed = samples / (time.perf_counter() - started)
        check_finite(epoch, {"train_loss": train_loss}, recipe)  # before validating weights that are lost
        check_not_exploded(epoch, train_loss, len(self.class_names), recipe)
        distributed.copy_buffers_from_main(self.model)
        scores = self.validate()
        self.stop.stop_point(f"while validating epoch {epoch}")  # before its partial scores are looked at
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": scores["loss"], "val_miou": scores["miou"],
               "val_pixel_accuracy": scores["pixel_accuracy"], "lr": lr}
        check_finite(epoch, row, recipe)
        self.majority_val_miou = majority_class_miou(scores["confusion_matrix"])
        self.scheduler.after_epoch(scores["miou"])
        return row, speed

    def train_one_epoch(self, description: str) -> tuple[float, int]:
        """One pass over this process's share of the training split, the lr schedule stepped per batch;
        returns the mean loss per image and the number of images, over all processes. A process training alone
        stops at the first batch whose loss is not finite (the mean it returns is not either); under torchrun the
        others would wait for it at the next gradient all-reduce, so every process ends the epoch and all of them
        see the same non-finite sum."""
        self.network.train()
        total, count = 0.0, 0
        for images, masks, labelled in tqdm(self.data.train_loader, desc=description, unit="batch", leave=False,
                                            disable=None if distributed.is_main() else True):
            images, masks, labelled = (part.to(self.device, non_blocking=True) for part in (images, masks, labelled))
            images = images.contiguous(memory_format=memory_format(self.device, self.precision))
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.precision):
                logits = self.network(images)
            loss = self.loss_fn(logits.float(), masks, labelled)
            self.scaler.scale(loss).backward()
            if self.params.train.grad_clip_norm > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.params.train.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.after_batch()
            total += loss.item() * len(images)
            count += len(images)
            if not math.isfinite(total) and distributed.world_size() == 1:
                break
            self.stop.stop_point(f"at a batch boundary of {description}")
        total, count = distributed.sum_over_processes(torch.tensor([total, count], dtype=torch.float64)).tolist()
        return total / max(count, 1), int(count)

    def validate(self) -> dict:
        """Loss and scores on the val split, in the precision and layout the model trains in (bf16 on a CPU
        scores 3x faster than fp32); the evaluate stage scores the chosen checkpoint in fp32."""
        with autocast(self.device, self.precision):
            return score_loader(self.model, self.stop.until_asked(self.data.val_loader), self.device,
                                len(self.class_names), self.data.partial, loss_fn=self.loss_fn,
                                total=distributed.sum_over_processes,
                                memory_format=memory_format(self.device, self.precision))

    def snapshot(self) -> torch.Tensor:
        """Predictions on the fixed progress images, for the GIF."""
        with autocast(self.device, self.precision):
            return class_indices(predict_batch(self.model, self.data.progress_images.to(self.device))).byte().cpu()

    def restore(self, state: TrainState) -> None:
        """Continue from a saved state: weights, optimizer and schedule (the schedule remapped if the number of
        processes, hence of steps per epoch, changed)."""
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)


def build_trainer(params: Params, processed_dir: Path, manifest: dict, device: torch.device) -> Trainer:
    recipe = params.train
    precision = pick_precision(recipe.precision, device)
    class_names, image_size = manifest["classes"], manifest["image_size"]
    data = build_data(params, processed_dir, manifest, device, distributed.rank(), distributed.world_size())
    model = to_device(build_segmentation_model(params, class_names, image_size, distributed.is_main()), device,
                      precision)
    sync_batchnorm = distributed.use_sync_batchnorm(recipe.distributed.sync_batchnorm, recipe.batch_size, device)
    network = distributed.data_parallel(model, device, sync_batchnorm,
                                        find_unused_parameters=recipe.freeze_encoder_epochs > 0)
    optimizer, scheduler = build_optimization(params, model, len(data.train_loader))
    return Trainer(params, data, model, network, build_training_loss(params, data, len(class_names)), optimizer,
                   scheduler, torch.amp.GradScaler(device.type, enabled=precision == "fp16"), device, precision,
                   sync_batchnorm, class_names, image_size,
                   trial=pruning.TrialLink.from_environment())


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one process's epoch: reproducible, different in every process (so their augmentations
    differ), and the plain `seed + epoch` of a single-process run."""
    return seed + epoch + RANK_SEED_STRIDE * rank


def to_device(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    return model.to(device, memory_format=memory_format(device, precision))
