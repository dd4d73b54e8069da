"""The sections that shape a training: `train` (with `train.distributed`) and `augment`. `auto` values stay `auto`
here; the root Params fills them from the chosen model's recipe."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.problems import invalid, quote
from pipeline.config.types import (
    MAX_CLASSES,
    MAX_DRAWS,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_LR,
    MAX_NORM,
    MAX_PROCESSES,
    MAX_THREADS,
    Batch,
    BelowOne,
    Block,
    Bool,
    DeviceName,
    Draws,
    Duration,
    EpochCount,
    Epochs,
    Factor,
    Float,
    Int,
    LearningRate,
    LossName,
    OptimizerName,
    PrecisionName,
    Probability,
    SchedulerName,
    Seed,
    Str,
    Threads,
    or_auto,
)


class DistributedParams(Block):
    """Data parallelism (pipeline/training/distributed.py): one process per device, launched through torchrun."""
    # processes (devices) on this node; above 1 the train stage re-launches via torchrun
    nproc_per_node: Annotated[Int, Field(ge=1, le=MAX_PROCESSES)] = 1
    # auto: on for several GPUs with a small per-process batch (distributed.SMALL_BATCH)
    sync_batchnorm: Annotated[Bool | Literal["auto"], or_auto("true, false")] = "auto"


class TrainParams(Block):
    # auto: models.<model>.epochs
    epochs: Annotated[Epochs | Literal["auto"], or_auto(f"an int in 1..{MAX_EPOCHS}")] = "auto"
    # seconds (or 10m, 2h) the whole schedule, validation included, ends within on this machine: the epochs are
    # resolved from a short timed probe (training/budget.py); null: off. Needs epochs: auto
    time_budget: Duration | None = None
    batch_size: Batch = 4  # per step (2 gives more steps but trained resnet34_unet worse on MSRC-v2)
    optimizer: OptimizerName = "adamw"
    lr: Annotated[LearningRate | Literal["auto"], or_auto(f"a float in (0, {MAX_LR:g}]")] = "auto"  # auto: models.*.lr
    momentum: BelowOne = 0.9  # sgd only
    weight_decay: Factor = 0.0001
    scheduler: SchedulerName = "poly"
    warmup_epochs: EpochCount = 0  # linear warmup over this many epochs' iterations, below epochs
    poly_power: Annotated[Factor, Field(gt=0)] = 0.9
    plateau_patience: EpochCount = 2
    plateau_factor: Annotated[Float, Field(gt=0, lt=1)] = 0.5
    loss: LossName = "ce"
    # one per class (at most MAX_CLASSES), or balanced
    class_weights: list[Factor] | Literal["balanced"] | None = None
    focal_gamma: Factor = 2.0
    precision: PrecisionName = "auto"
    grad_clip_norm: Annotated[Float, Field(ge=0, le=MAX_NORM)] = 0.0  # 0: no clipping
    early_stopping_patience: EpochCount = 0  # stop after this many epochs without a better val mIoU; 0: never
    freeze_encoder_epochs: EpochCount = 0  # models with a pretrained encoder: train only the decoder at first
    init_from: Str | None = None  # start from a checkpoint path or an MLflow model URI
    progress_every: Annotated[EpochCount, Field(ge=1)] = 2  # epochs between the val predictions kept for the GIF
    device: DeviceName = "auto"  # cuda, then mps, then cpu
    seed: Seed = 42
    deterministic: Bool = False  # torch's deterministic algorithms (slower on GPUs)
    # auto: 0 on a CPU, 8 per GPU
    num_workers: Annotated[Threads | Literal["auto"], or_auto(f"an int in 0..{MAX_THREADS}")] = "auto"
    # auto: the cores shared among the trainings running on this machine (training/threads.py); 0: torch's default
    num_threads: Annotated[Threads | Literal["auto"], or_auto(f"an int in 0..{MAX_THREADS}")] = "auto"
    distributed: DistributedParams = Field(default_factory=DistributedParams)

    @model_validator(mode="after")
    def _budget_or_epochs(self) -> TrainParams:
        """A budget resolves the epochs on the machine, a number fixes them: both at once would leave one of them
        silently unused (checked here, before `auto` takes the model's epochs)."""
        if self.time_budget is not None and self.epochs != "auto":
            raise invalid("time_budget", f"{self.time_budget:g} s and {{0}}: {self.epochs} both set how long the "
                          f"training runs; set {{0}} to auto to fit the budget, or {{1}} to null to train "
                          f"{self.epochs} epochs", "epochs", "time_budget")
        return self

    @field_validator("class_weights")
    @classmethod
    def _some_weight_positive(cls, weights: list[float] | str | None) -> list[float] | str | None:
        if isinstance(weights, list) and len(weights) > MAX_CLASSES:
            raise invalid("", f"expected one weight per class, at most {MAX_CLASSES}; got {len(weights)}")
        if isinstance(weights, list) and sum(weights) <= 0:
            raise invalid("", f"expected non-negative weights, not all zero; got {quote(weights)}")
        return weights


class AugmentParams(Block):
    # train on random crops of this size (0 or >= data.image_size: whole images)
    crop_size: Annotated[Int, Field(ge=0, le=MAX_IMAGE_SIZE)] = 192
    # draws of each training image per epoch, each a new random crop and flip; auto: models.<model>.crops_per_image
    crops_per_image: Annotated[Draws | Literal["auto"], or_auto(f"an int in 1..{MAX_DRAWS}")] = "auto"
    hflip: Probability = 0.5
    scale_limit: BelowOne = 0.2
    rotate_limit: Annotated[Float, Field(ge=0, le=180)] = 10.0
    affine: Probability = 0.0  # probability of a random scale (scale_limit) and rotation (rotate_limit)
    color_jitter: Probability = 0.0

    @field_validator("crop_size")
    @classmethod
    def _no_tiny_crops(cls, size: int) -> int:
        if 0 < size < 16:
            raise invalid("", f"must be 0 (whole images) or at least 16, got {size}")
        return size
