"""Build what a training needs from params, one object per params group: data, model, loss, optimizer."""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset, get_worker_info

from pipeline.config import ConfigError, Params, quote
from pipeline.data.dataset import SegmentationArrays, build_augmentation, read_manifest
from pipeline.data.labels import IGNORE_INDEX
from pipeline.models.registry import build_model
from pipeline.models.segmenter import SegmentationModel
from pipeline.training.finetune import initial_weights, load_matching_weights
from pipeline.training.losses import build_loss
from pipeline.training.optim import build_optimizer, build_scheduler
from pipeline.training.threads import use_threads

log = logging.getLogger(__name__)

CPU = torch.device("cpu")
PROGRESS_IMAGES = 4  # fixed val images whose predictions are kept for the progress GIF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_torch(recipe) -> None:
    """Threads and determinism, before anything random or parallel happens."""
    seed_everything(recipe.seed)
    use_threads(recipe.num_threads)
    if recipe.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; read when CUDA starts
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not recipe.deterministic  # fixed input sizes: let cuDNN pick its fastest kernels


def subset_indices(size: int, limit: int | None, seed: int) -> np.ndarray | None:
    """A seeded random subset of `limit` samples (all of them when limit is None or not smaller)."""
    if limit is None or limit >= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(size, limit, replace=False))


def split_dataset(params: Params, processed_dir: Path, manifest: dict, split: str, transform) -> SegmentationArrays:
    """One split, restricted to `data.subset.<split>` seeded random samples when that is set; the training
    split lists every image `augment.crops_per_image` times (each draw a new random crop and flip)."""
    size = len(manifest["splits"][split]["ids"])
    indices = subset_indices(size, getattr(params.data.subset, split), params.train.seed)
    if split == "train" and params.augment.crops_per_image > 1:
        indices = np.repeat(np.arange(size) if indices is None else indices, params.augment.crops_per_image)
    return SegmentationArrays(processed_dir, split, transform, indices)


@dataclass
class TrainData:
    train_loader: DataLoader         # this process's share of the training split (DistributedSampler)
    val_loader: DataLoader           # this process's shard of the val split, every image in exactly one shard
    generator: torch.Generator       # reseeded every epoch: the loader workers' seeds survive a resume
    augmentation: object             # albumentations Compose, reseeded every epoch likewise
    progress_images: torch.Tensor    # (PROGRESS_IMAGES, 3, S, S)
    partial: bool                    # some images labelled for some classes only

    @property
    def num_train(self) -> int:
        """Images, not draws: with several crops per image an image is listed several times."""
        return len(np.unique(self.train_loader.dataset.indices))

    @property
    def num_val(self) -> int:
        return len(self.val_loader.dataset.dataset)  # the whole split, not this process's shard

    def start_epoch(self, epoch: int, seed: int) -> None:
        """The epoch's shuffle (the same in every process, from train.seed and the epoch), and this process's
        augmentation and worker seeds from `seed`."""
        self.train_loader.sampler.set_epoch(epoch)
        self.generator.manual_seed(seed)
        self.augmentation.set_random_seed(seed)


def loader_workers(setting: int | str, device: torch.device) -> int:
    """`train.num_workers`: auto = 0 on a CPU (workers would compete with the training threads for the cores),
    else up to 8 per training process on this node, so decoding and augmentation keep a GPU busy."""
    if setting != "auto":
        return setting
    if device.type == "cpu":
        return 0
    processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, min(8, (os.cpu_count() or 1) // processes_here - 1))


def seed_worker(worker_id: int) -> None:
    """Each training loader worker augments with its own seed (torch gives each a distinct one, derived from
    the loader's generator), not with a copy of the same random state as its siblings."""
    get_worker_info().dataset.transform.set_random_seed(torch.initial_seed() % 2**32)


def build_data(params: Params, processed_dir: Path, manifest: dict, device: torch.device = CPU, rank: int = 0,
               world_size: int = 1) -> TrainData:
    """Loaders for process `rank` of `world_size`: its share of every epoch's shuffle of the training split
    (DistributedSampler; with one process, the whole shuffle) and its shard of the val split."""
    recipe = params.train
    augmentation = build_augmentation(params.augment, recipe.seed, manifest["image_size"])
    train_set = split_dataset(params, processed_dir, manifest, "train", augmentation)
    val_set = split_dataset(params, processed_dir, manifest, "val", None)
    generator = torch.Generator()
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=recipe.seed)
    workers = loader_workers(recipe.num_workers, device)
    loading = {"batch_size": recipe.batch_size, "num_workers": workers, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(train_set, sampler=sampler, generator=generator, worker_init_fn=seed_worker,
                              drop_last=len(sampler) > recipe.batch_size, **loading)
    val_loader = DataLoader(Subset(val_set, range(rank, len(val_set), world_size)), **loading)
    progress_images = torch.stack([val_set[i][0] for i in range(min(PROGRESS_IMAGES, len(val_set)))])
    partial = not (train_set.labelled.all() and val_set.labelled.all())
    return TrainData(train_loader, val_loader, generator, augmentation, progress_images, partial)


def build_segmentation_model(params: Params, class_names: list[str], image_size: int,
                             load_initial_weights: bool = True) -> SegmentationModel:
    """The architecture `model` configured by `models.<model>`, started from `train.init_from` if set and
    `load_initial_weights` (only rank 0 reads them: DistributedDataParallel copies its weights to the others)."""
    model = build_model(params.model, class_names, params.model_params().architecture(), image_size)
    if params.train.init_from and load_initial_weights:
        load_matching_weights(model, initial_weights(params.train.init_from), params.train.init_from)
    return model


def read_checked_manifest(params: Params, processed_dir: Path) -> dict:
    """The processed data's manifest, and what params.yaml cannot be checked for alone checked against it before any
    work (a failure later would leave a FAILED MLflow run behind): one class weight per class of the data."""
    manifest = read_manifest(processed_dir)
    weights, classes = params.train.class_weights, manifest["classes"]
    if isinstance(weights, list) and len(weights) != len(classes):
        raise ConfigError(f"train.class_weights: {len(weights)} values for the {len(classes)} classes of "
                          f"{processed_dir} ({quote(classes)}); give one weight per class, in that order, or balanced")
    return manifest


def build_training_loss(params: Params, data: TrainData, num_classes: int) -> torch.nn.Module:
    recipe = params.train
    weights = recipe.class_weights
    if weights == "balanced":
        weights = balanced_class_weights(data.train_loader.dataset, num_classes)
        log.info("class weights (balanced): " + ", ".join(f"{w:.2f}" for w in weights))
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
