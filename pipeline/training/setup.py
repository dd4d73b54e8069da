"""Build what a training needs from params, one object per params group: data, model, loss, optimizer."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.config import Params, as_dict
from pipeline.data.dataset import SegmentationArrays, build_augmentation
from pipeline.data.labels import IGNORE_INDEX
from pipeline.models.registry import build_model
from pipeline.models.segmenter import SegmentationModel
from pipeline.training.finetune import initial_weights, load_matching_weights
from pipeline.training.losses import build_loss
from pipeline.training.optim import build_optimizer, build_scheduler

PROGRESS_IMAGES = 4  # fixed val images whose predictions are kept for the progress GIF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_torch(recipe) -> None:
    """Threads and determinism, before anything random or parallel happens."""
    seed_everything(recipe.seed)
    if recipe.num_threads:
        torch.set_num_threads(recipe.num_threads)
    if recipe.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def subset_indices(size: int, limit: int | None, seed: int) -> np.ndarray | None:
    """A seeded random subset of `limit` samples (all of them when limit is None or not smaller)."""
    if limit is None or limit >= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(size, limit, replace=False))


def split_dataset(params: Params, processed_dir: Path, manifest: dict, split: str, transform) -> SegmentationArrays:
    """One split, restricted to `data.subset.<split>` seeded random samples when that is set; the training
    split lists every image `augment.crops_per_image` times (each draw is a new random crop)."""
    size = len(manifest["splits"][split]["ids"])
    indices = subset_indices(size, getattr(params.data.subset, split), params.train.seed)
    if split == "train" and params.augment.crops_per_image > 1:
        indices = np.repeat(np.arange(size) if indices is None else indices, params.augment.crops_per_image)
    return SegmentationArrays(processed_dir, split, transform, indices)


@dataclass
class TrainData:
    train_loader: DataLoader
    val_loader: DataLoader
    generator: torch.Generator       # reseeded every epoch, so the shuffle order survives a resume
    augmentation: object             # albumentations Compose, reseeded every epoch likewise
    progress_images: torch.Tensor    # (PROGRESS_IMAGES, 3, S, S)
    partial: bool                    # some images labelled for some classes only

    @property
    def num_train(self) -> int:
        """Images, not draws: with several crops per image an image is listed several times."""
        return len(np.unique(self.train_loader.dataset.indices))

    @property
    def num_val(self) -> int:
        return len(self.val_loader.dataset)


def build_data(params: Params, processed_dir: Path, manifest: dict) -> TrainData:
    recipe = params.train
    augmentation = build_augmentation(params.augment, recipe.seed)
    train_set = split_dataset(params, processed_dir, manifest, "train", augmentation)
    val_set = split_dataset(params, processed_dir, manifest, "val", None)
    generator = torch.Generator()
    train_loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, generator=generator,
                              drop_last=len(train_set) > recipe.batch_size, num_workers=recipe.num_workers)
    val_loader = DataLoader(val_set, batch_size=recipe.batch_size, num_workers=recipe.num_workers)
    progress_images = torch.stack([val_set[i][0] for i in range(min(PROGRESS_IMAGES, len(val_set)))])
    partial = not (train_set.labelled.all() and val_set.labelled.all())
    return TrainData(train_loader, val_loader, generator, augmentation, progress_images, partial)


def build_segmentation_model(params: Params, class_names: list[str], image_size: int) -> SegmentationModel:
    """The architecture `model` configured by `models.<model>`, started from `train.init_from` if set."""
    model = build_model(params.model, class_names, as_dict(params.model_params()), image_size)
    if params.train.init_from:
        load_matching_weights(model, initial_weights(params.train.init_from), params.train.init_from)
    return model


def build_training_loss(params: Params, data: TrainData, num_classes: int) -> torch.nn.Module:
    recipe = params.train
    weights = recipe.class_weights
    if weights == "balanced":
        weights = balanced_class_weights(data.train_loader.dataset, num_classes)
        print("class weights (balanced): " + ", ".join(f"{w:.2f}" for w in weights))
    return build_loss(recipe.loss, num_classes, IGNORE_INDEX, weights, recipe.focal_gamma, data.partial)


def balanced_class_weights(dataset: SegmentationArrays, num_classes: int, limit: float = 10.0) -> list[float]:
    """Median-frequency balancing (Eigen & Fergus, 2015): weight_c = median(f) / f_c, where f_c is class c's
    share of the labelled pixels in the training images labelled for c, capped at `limit` so a class seen
    in a handful of pixels cannot dominate. Thin structures (vessels, membranes) need it to be predicted."""
    pixels, labelled_pixels = np.zeros(num_classes), np.zeros(num_classes)
    for index in dataset.indices:
        mask = np.asarray(dataset.masks[index])
        counts = np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
        pixels += counts
        labelled_pixels += counts.sum() * dataset.labelled[index]
    frequency = np.divide(pixels, labelled_pixels, out=np.zeros(num_classes), where=labelled_pixels > 0)
    seen = frequency > 0
    weights = np.ones(num_classes)
    weights[seen] = np.minimum(np.median(frequency[seen]) / frequency[seen], limit)
    return weights.round(4).tolist()


def build_optimization(params: Params, model: torch.nn.Module, steps_per_epoch: int):
    """The optimizer over every parameter (frozen ones included: they train once unfrozen) and its schedule."""
    recipe = params.train
    optimizer = build_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.weight_decay, recipe.momentum)
    scheduler = build_scheduler(recipe.scheduler, optimizer, recipe.epochs, steps_per_epoch, recipe.warmup_epochs,
                                poly_power=recipe.poly_power, plateau_patience=recipe.plateau_patience,
                                plateau_factor=recipe.plateau_factor)
    return optimizer, scheduler
