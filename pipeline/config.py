"""params.yaml as frozen pydantic models, checked in full before any stage does work.

Pydantic gives the schema in one place (types, ranges, and the default of every key: params.yaml holds only what
experiments change, so `dvc exp show` stays legible) and validates the nested blocks; this module only words its
errors and prints every value a run uses (`python -m pipeline.config --show`). Checked: unknown keys (with a
did-you-mean), strict types (no "8" for 8; ints and float-like strings such as YAML's 1e-3 are accepted for
floats), the allowed names, value ranges and cross-field rules (warmup vs epochs, freezing needs a pretrained
encoder).
Every problem found becomes one ConfigError whose lines each name the dotted key, e.g. `train.lr: must be > 0`.
Nothing in the file can exhaust the machine: YAML aliases that would repeat thousands of values are refused
before anything walks them, and a message quotes at most QUOTE_LIMIT characters of a value. DVC reads all of
params.yaml itself before any stage runs, with no such limit: `python -m pipeline.config FILE` checks a file first.
"""
from __future__ import annotations

import argparse
import difflib
import math
import re
import reprlib
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.errors import UserError

DatasetName = Literal["synthetic", "voc2012", "ade20k", "voc_layout", "single_class", "folder"]
ModelName = Literal["unet", "resnet34_unet", "multiscale_unet", "smp"]
OptimizerName = Literal["adam", "adamw", "sgd"]
SchedulerName = Literal["plateau", "cosine", "poly", "none"]
LossName = Literal["ce", "dice", "focal", "ce+dice"]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
BadSamplePolicy = Literal["error", "skip"]

DATASETS = typing.get_args(DatasetName)
MODELS = typing.get_args(ModelName)
OPTIMIZERS = typing.get_args(OptimizerName)
SCHEDULERS = typing.get_args(SchedulerName)
LOSSES = typing.get_args(LossName)
PRECISIONS = typing.get_args(PrecisionName)
DEVICES = typing.get_args(DeviceName)


class ConfigError(UserError, ValueError):
    """A parameter in params.yaml is missing, misspelt, of the wrong type or not an allowed value."""


QUOTE_LIMIT = 200  # characters of a value a message quotes: a value may be a megabyte of text or a huge list
MAX_ERROR_LINES = 10  # one per problem: a list of a million bad items would give a million
_SHORT_REPR = reprlib.Repr()  # a few items of each container, without writing out the whole value first
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 2, QUOTE_LIMIT, QUOTE_LIMIT


def quote(value: Any) -> str:
    """repr(value) for a message, at most QUOTE_LIMIT characters."""
    return _cut(_SHORT_REPR.repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT - 3] + "..."


def _float_from_text(value: Any) -> Any:
    """PyYAML reads `1e-3` (no dot) as the string '1e-3': accept any string that parses as a float."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


Int = Annotated[int, Strict()]  # no bools, no "8", no 8.0
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Float = Annotated[float, Strict(), BeforeValidator(_float_from_text)]  # ints become floats; bools are refused
Count = Annotated[Int, Field(ge=1)]
NonNegativeInt = Annotated[Int, Field(ge=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
Probability = Annotated[Float, Field(ge=0, le=1)]
BelowOne = Annotated[Float, Field(ge=0, lt=1)]  # [0, 1): dropout, momentum, scale_limit
# Sides in pixels a model is trained and run at: data.image_size, a checkpoint's or MLflow model's image_size and
# predict's --image-size alike. 4096 squared is already a 200 MB input tensor; a file claiming 100000 would make
# torch ask for 120 GB.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 4096


def image_size_problem(size: Any) -> str | None:
    """What is wrong with an image side read from a file or a flag, checked like data.image_size before anything
    is allocated for it; None if nothing is."""
    if isinstance(size, int) and not isinstance(size, bool) and MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        return None
    return f"{quote(size)} is not a side in pixels within {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} (as data.image_size)"


def _invalid(field: str, detail: str, *related: str) -> PydanticCustomError:
    """An error for key `field` (relative to the model raising it; "" for the field being validated).
    `detail` may name sibling keys as {0}, {1}...: they are written out as dotted keys from `related`."""
    return PydanticCustomError("config", "{detail}", {"field": field, "detail": detail, "related": related})


def _or_auto(expected: str) -> WrapValidator:
    """One error for a value that is neither `expected` nor "auto" (pydantic would report each union member)."""
    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise _invalid("", f"expected {expected} or auto, got {quote(value)}") from None

    return WrapValidator(validate)


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SyntheticParams(_Block):
    num_train: Count = 90  # small enough for a CPU run of a few minutes
    num_val: Count = 60
    seed: Int = 0


class Voc2012Params(_Block):
    # tried in order, each checked against the MD5: add mirrors here
    urls: list[Str] = ["http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"]
    trainaug: Bool = False  # train on the 10582-image SBD set (needs SegmentationClassAug + trainaug.txt)


class Ade20kParams(_Block):
    urls: list[Str] = ["http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"]


class VocLayoutParams(_Block):
    classes: list[Str] | None = None  # class names when the root has no classes.txt


class SingleClassParams(_Block):
    val_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.2  # per class, for folders without train/ and val/
    split_seed: Int = 0


Byte = Annotated[Int, Field(ge=0, le=255)]

DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
# A week: a probe of a few seconds says nothing reliable about a machine's load over longer, and a larger value is
# more likely a slipped unit (300h for 300s); plan longer trainings in epochs.
MAX_TIME_BUDGET = 7 * 24 * 3600


def _seconds_from_duration(value: Any) -> Any:
    """train.time_budget: seconds as a number, or a string with a unit: 600, 90s, 10m, 1.5h."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)  # '600', '1e3' (a number YAML reads as text), '-5' (refused by the bound, naming it)
    except ValueError:
        pass
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", value)
    if match is None:
        raise _invalid("", f"expected seconds or a duration such as 600, 90s, 10m or 2h, got {quote(value)}")
    return float(match[1]) * DURATION_UNITS[match[2]]


def _at_most_a_week(seconds: float) -> float:
    if seconds > MAX_TIME_BUDGET:
        raise _invalid("", f"at most a week ({MAX_TIME_BUDGET} s), got {seconds:g} s: plan longer trainings in epochs")
    return seconds


Duration = Annotated[Float, Field(gt=0), AfterValidator(_at_most_a_week), BeforeValidator(_seconds_from_duration)]


class FolderParams(_Block):
    """data.root/images/* + data.root/masks/*, paired by file stem (pipeline/data/sources/folder.py)."""
    classes: list[Str] | None = None  # class names, when data.root has no classes.txt
    colors: dict[Str, tuple[Byte, Byte, Byte]] | None = None  # RGB-coded masks: class name -> [R, G, B]
    val_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.2  # without train/ and val/ subfolders
    split_seed: Int = 0


# the repository's own empty datasets/ folder: the default data.root, which DVC needs to be a path it can hash
# (a templated dependency cannot be empty) and which means "no folder of yours"
NO_ROOT = "datasets"


class SubsetParams(_Block):
    train: Count | None = None  # a seeded random subset of this many training images; null: all
    val: Count | None = None


class DataParams(_Block):
    dataset: DatasetName = "synthetic"
    # your dataset folder (voc_layout, single_class, folder), an unpacked VOC/ADE20K copy or an s3:// prefix; a path is
    # absolute or relative to the repository. A dependency of download: DVC sees its files change. The default,
    # datasets (an empty folder of this repository), means none: synthetic is generated, voc2012 and ade20k downloaded
    root: Str = NO_ROOT
    download_dir: Str = "data/downloads"  # archives land here; an archive downloaded by hand and put here is used
    image_size: Annotated[Int, Field(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)] = 256
    on_bad_sample: BadSamplePolicy = "error"
    subset: SubsetParams = Field(default_factory=SubsetParams)
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    voc2012: Voc2012Params = Field(default_factory=Voc2012Params)
    ade20k: Ade20kParams = Field(default_factory=Ade20kParams)
    voc_layout: VocLayoutParams = Field(default_factory=VocLayoutParams)
    single_class: SingleClassParams = Field(default_factory=SingleClassParams)
    folder: FolderParams = Field(default_factory=FolderParams)

    @field_validator("root", mode="before")
    @classmethod
    def _empty_root_is_none(cls, root: Any) -> Any:
        """`root:` left empty (as params.yaml had it) means no folder of yours, as NO_ROOT does."""
        return NO_ROOT if root is None else root

    @property
    def own_root(self) -> str | None:
        """`root` when it names a folder of the user's; None for NO_ROOT."""
        return None if Path(self.root) == Path(NO_ROOT) else self.root


class _ModelBlock(_Block):
    """A `models.<name>` block: the architecture's params plus the recipe values this model trains best with
    (RECIPE_KEYS), used where train.lr, train.epochs or augment.crops_per_image says `auto`, so `-S model=<name>`
    alone brings the model's recipe; the values used are in reports/train/resolved.json, columns of `dvc exp show`."""
    lr: PositiveFloat = 0.001  # train.lr when that is auto
    epochs: Count = 4  # train.epochs when that is auto: a schedule that ends within ten minutes on MSRC-v2 in fp32
    # (and a complete one on the synthetic default, which peaks by then: 0.66-0.68 over 4 seeds)
    crops_per_image: Count = 2  # augment.crops_per_image when that is auto

    def architecture(self) -> dict[str, Any]:
        """The params the architecture's builder takes (and checkpoints record): the block without its recipe."""
        return self.model_dump(exclude={key for keys in RECIPE_KEYS.values() for key in keys})


# <section>.<key>: auto takes models.<model>.<key>
RECIPE_KEYS = {"train": ("lr", "epochs"), "augment": ("crops_per_image",)}


class UNetParams(_ModelBlock):
    lr: PositiveFloat = 0.003  # small from-scratch U-Nets underfit at 1e-3 in 12 epochs (benchmarks/recipe.py)
    base_channels: Count = 16  # 8 is too narrow for photos (MSRC-v2: 0.10 against 0.14 mIoU)
    depth: Count = 5  # poolings: at 256² the deepest features see the whole image (4 missed large shapes)
    bilinear: Bool = True
    dropout: BelowOne = 0.0
    residual: Bool = True  # shortcuts around the double convolutions: 0.24 against 0.18 on MSRC-v2 (unet.py)


class ResNet34UNetParams(_ModelBlock):
    epochs: Count = 5  # 1 crop an image: 5 epochs of MSRC-v2 take about 480 s in fp32 on 2 cores
    crops_per_image: Count = 1  # a resnet34 crop costs 2x a unet one: one per image keeps 4 epochs within 10 minutes
    encoder_weights: Str = "imagenet"  # imagenet (Hugging Face cache, fetched once) | none | path to .pth/.safetensors
    decoder_channels: Annotated[tuple[Count, ...], Field(min_length=1)] = (256, 128, 64, 32, 16)


class MultiScaleUNetParams(_ModelBlock):
    lr: PositiveFloat = 0.001  # 0.003 costs it 0.035 mIoU on MSRC-v2
    epochs: Count = 5  # 85 s an epoch of MSRC-v2 in fp32 on 2 cores: 5 end within ten minutes
    # the image at these sides, each fused into the encoder
    scales: Annotated[tuple[Count, ...], Field(min_length=1)] = (256, 128, 64)
    base_channels: Count = 16
    depth: Count = 4
    stem_channels: Count = 16
    bilinear: Bool = True
    dropout: BelowOne = 0.0


class SmpParams(_ModelBlock):
    epochs: Count = 5  # the default network is resnet34_unet's: its recipe, which ends within ten minutes on MSRC-v2
    crops_per_image: Count = 1
    decoder: Literal["Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus"] = "Unet"
    encoder: Str = "resnet34"  # any name in segmentation_models_pytorch.encoders.get_encoder_names()
    encoder_weights: Str = "imagenet"  # imagenet (Hugging Face cache, fetched once) | none | path to .pth/.safetensors
    encoder_depth: Annotated[Int, Field(ge=3, le=5)] = 5  # encoder stages the decoder sees (the range all four take)


class ModelsParams(_Block):
    unet: UNetParams = Field(default_factory=UNetParams)
    resnet34_unet: ResNet34UNetParams = Field(default_factory=ResNet34UNetParams)
    multiscale_unet: MultiScaleUNetParams = Field(default_factory=MultiScaleUNetParams)
    smp: SmpParams = Field(default_factory=SmpParams)


assert set(MODELS) == set(ModelsParams.model_fields), "ModelName and the blocks of ModelsParams differ"
PRETRAINED_MODELS = tuple(name for name, info in ModelsParams.model_fields.items()
                          if "encoder_weights" in info.annotation.model_fields)
POOLING_MODELS = tuple(name for name, info in ModelsParams.model_fields.items()  # halve their input `depth` times
                       if "depth" in info.annotation.model_fields)


class DistributedParams(_Block):
    """Data parallelism (pipeline/training/distributed.py): one process per device, launched through torchrun."""
    nproc_per_node: Count = 1  # processes (devices) on this node; above 1 the train stage re-launches via torchrun
    # auto: on for several GPUs with a small per-process batch (distributed.SMALL_BATCH)
    sync_batchnorm: Annotated[Bool | Literal["auto"], _or_auto("true, false")] = "auto"


class TrainParams(_Block):
    epochs: Annotated[Count | Literal["auto"], _or_auto("an int >= 1")] = "auto"  # auto: models.<model>.epochs
    # seconds (or 10m, 2h) the whole schedule, validation included, ends within on this machine: the epochs are
    # resolved from a short timed probe (training/budget.py); null: off. Needs epochs: auto
    time_budget: Duration | None = None
    batch_size: Count = 4  # per step (2 gives more steps but trained resnet34_unet worse on MSRC-v2)
    optimizer: OptimizerName = "adamw"
    lr: Annotated[PositiveFloat | Literal["auto"], _or_auto("a float > 0")] = "auto"  # auto: models.<model>.lr
    momentum: BelowOne = 0.9  # sgd only
    weight_decay: NonNegativeFloat = 0.0001
    scheduler: SchedulerName = "poly"
    warmup_epochs: NonNegativeInt = 0  # linear warmup over this many epochs' iterations, below epochs
    poly_power: PositiveFloat = 0.9
    plateau_patience: NonNegativeInt = 2
    plateau_factor: Annotated[Float, Field(gt=0, lt=1)] = 0.5
    loss: LossName = "ce"
    class_weights: list[NonNegativeFloat] | Literal["balanced"] | None = None  # one per class, or balanced
    focal_gamma: NonNegativeFloat = 2.0
    precision: PrecisionName = "auto"
    grad_clip_norm: NonNegativeFloat = 0.0  # 0: no clipping
    early_stopping_patience: NonNegativeInt = 0  # stop after this many epochs without a better val mIoU; 0: never
    freeze_encoder_epochs: NonNegativeInt = 0  # models with a pretrained encoder: train only the decoder at first
    init_from: Str | None = None  # start from a checkpoint path or an MLflow model URI
    progress_every: Count = 2  # epochs between the val predictions kept for the progress GIF
    device: DeviceName = "auto"  # cuda, then mps, then cpu
    seed: Int = 42
    deterministic: Bool = False  # torch's deterministic algorithms (slower on GPUs)
    num_workers: Annotated[NonNegativeInt | Literal["auto"], _or_auto("an int >= 0")] = "auto"  # 0 on a CPU, 8 per GPU
    # auto: the cores shared among the trainings running on this machine (training/threads.py); 0: torch's default
    num_threads: Annotated[NonNegativeInt | Literal["auto"], _or_auto("an int >= 0")] = "auto"
    distributed: DistributedParams = Field(default_factory=DistributedParams)

    @model_validator(mode="after")
    def _budget_or_epochs(self) -> TrainParams:
        """A budget resolves the epochs on the machine, a number fixes them: both at once would leave one of them
        silently unused (checked here, before `auto` takes the model's epochs)."""
        if self.time_budget is not None and self.epochs != "auto":
            raise _invalid("time_budget", f"{self.time_budget:g} s and {{0}}: {self.epochs} both set how long the "
                           f"training runs; set {{0}} to auto to fit the budget, or {{1}} to null to train "
                           f"{self.epochs} epochs", "epochs", "time_budget")
        return self

    @field_validator("class_weights")
    @classmethod
    def _some_weight_positive(cls, weights: list[float] | str | None) -> list[float] | str | None:
        if isinstance(weights, list) and sum(weights) <= 0:
            raise _invalid("", f"expected non-negative weights, not all zero; got {quote(weights)}")
        return weights


class AugmentParams(_Block):
    crop_size: NonNegativeInt = 192  # train on random crops of this size (0 or >= data.image_size: whole images)
    # draws of each training image per epoch, each a new random crop and flip; auto: models.<model>.crops_per_image
    crops_per_image: Annotated[Count | Literal["auto"], _or_auto("an int >= 1")] = "auto"
    hflip: Probability = 0.5
    scale_limit: BelowOne = 0.2
    rotate_limit: Annotated[Float, Field(ge=0, le=180)] = 10.0
    affine: Probability = 0.0  # probability of a random scale (scale_limit) and rotation (rotate_limit)
    color_jitter: Probability = 0.0

    @field_validator("crop_size")
    @classmethod
    def _no_tiny_crops(cls, size: int) -> int:
        if 0 < size < 16:
            raise _invalid("", f"must be 0 (whole images) or at least 16, got {size}")
        return size


class EvaluateParams(_Block):
    batch_size: Count = 8
    device: DeviceName = "auto"
    tta_hflip: Bool = False  # also predict the mirrored image and average the probabilities
    tta_scales: Annotated[list[PositiveFloat], Field(min_length=1)] = [1.0]  # input scales averaged at test time


class PlotParams(_Block):
    num_samples: Count = 4


class MlflowParams(_Block):
    tracking_uri: Str = "sqlite:///mlflow.db"  # relative paths are resolved at the repository root
    experiment: Str = "segmentation"
    log_onnx: Bool = True  # the logged model also as an ONNX graph: 10-20 s of export and check per training


class Params(_Block):
    model: ModelName = "unet"
    data: DataParams = Field(default_factory=DataParams)
    models: ModelsParams = Field(default_factory=ModelsParams)
    train: TrainParams = Field(default_factory=TrainParams, validate_default=True)  # after model, models
    augment: AugmentParams = Field(default_factory=AugmentParams, validate_default=True)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    plot: PlotParams = Field(default_factory=PlotParams)
    mlflow: MlflowParams = Field(default_factory=MlflowParams)

    def model_params(self) -> UNetParams | ResNet34UNetParams | MultiScaleUNetParams | SmpParams:
        """The block `models.<model>` that configures the chosen architecture."""
        return getattr(self.models, self.model)

    def recipe(self) -> dict[str, Any]:
        """The recipe values this training uses (RECIPE_KEYS), `auto` resolved: params.yaml may say only auto."""
        return {key: getattr(getattr(self, section), key) for section, keys in RECIPE_KEYS.items() for key in keys}

    @field_validator("train", "augment")
    @classmethod
    def _model_recipe_fills_auto(cls, section: Block, info: ValidationInfo) -> Block:
        """<section>.<key>: auto becomes models.<model>.<key> (fields above the section are validated first), so
        the rest of the code sees numbers only and MLflow logs the value used."""
        if "model" not in info.data or "models" not in info.data:  # already an error there
            return section
        block = getattr(info.data["models"], info.data["model"])
        keys = RECIPE_KEYS[info.field_name]
        return section.model_copy(update={key: getattr(block, key) for key in keys if getattr(section, key) == "auto"})

    @model_validator(mode="after")
    def _smp_encoder_exists(self) -> Params:
        """Checked when model is smp only: the list comes from importing smp and timm (1.5-4 s), which every
        stage, download included, would otherwise pay for an unused block."""
        if self.model != "smp":
            return self
        from segmentation_models_pytorch.encoders import get_encoder_names

        name, names = self.models.smp.encoder, get_encoder_names()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _invalid("models.smp.encoder", f"unknown encoder {quote(name)}{hint}; segmentation_models_pytorch."
                                                 f"encoders.get_encoder_names() lists the {len(names)} allowed")
        return self

    @model_validator(mode="after")
    def _depth_fits_the_inputs(self) -> Params:
        """A U-Net pools its input `depth` times, so a side under 2**depth pixels fails in the first training step
        (or evaluation), after the MLflow run has started: said here instead, naming what makes the input small."""
        if self.model not in POOLING_MODELS:
            return self
        depth = self.model_params().depth
        size, key = self._smallest_input()
        if 2**depth > size:
            raise _invalid(f"models.{self.model}.depth", f"{depth} halves the input {depth} times, so a side needs "
                           f"at least {2**depth} pixels, but {{0}} gives {size}; use a depth of at most "
                           f"{size.bit_length() - 1}", key)
        return self

    def _smallest_input(self) -> tuple[int, str]:
        """The smallest side a model sees (training crops, test-time scales) and the key that sets it."""
        size = self.data.image_size
        smallest_scale = round(size * min(self.evaluate.tta_scales))
        inputs = [(size, "data.image_size"), (max(1, smallest_scale), "evaluate.tta_scales")]
        if 0 < self.augment.crop_size < size:
            inputs.append((self.augment.crop_size, "augment.crop_size"))
        return min(inputs)

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> Params:
        """Checked here, after `auto` took the model's epochs; with a time budget, once the epochs are resolved
        (training/budget.py)."""
        if self.train.time_budget is None and self.train.warmup_epochs >= self.train.epochs:
            raise _invalid("train.warmup_epochs", f"{self.train.warmup_epochs} must be less than {{0}} "
                           f"({self.train.epochs})", "train.epochs")
        return self

    @model_validator(mode="after")
    def _freezing_needs_a_pretrained_encoder(self) -> Params:
        if self.train.freeze_encoder_epochs > 0 and self.model not in PRETRAINED_MODELS:
            raise _invalid("train.freeze_encoder_epochs", f"{self.train.freeze_encoder_epochs} needs a model with a "
                           f"pretrained encoder ({', '.join(PRETRAINED_MODELS)}), got {{0}}: {self.model}", "model")
        return self


Block = TypeVar("Block", bound=BaseModel)


MAX_ALIAS_COPIES = 10_000  # values YAML aliases may add to a params file, which holds a few hundred in all


class AliasBomb(yaml.YAMLError):
    """A YAML document whose aliases repeat more than MAX_ALIAS_COPIES values."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses a "billion laughs": PyYAML builds an aliased value once and shares it, but
    validating or quoting the data walks every copy (nine levels of ten aliases: 10**9 values, minutes, GBs).
    A long list written out is no threat: the file's own size bounds it."""

    def compose_document(self) -> yaml.Node:
        document = super().compose_document()
        sizes: dict[int, float] = {}
        if expanded_size(document, sizes) - len(sizes) > MAX_ALIAS_COPIES:
            raise AliasBomb(f"its YAML aliases (*name) repeat more than {MAX_ALIAS_COPIES:,} values; a params file "
                            "holds a few hundred: write the values out")
        return document


def expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """The values under `node` with every alias written out (an alias counts its target's values again); a value
    that contains itself has infinitely many. `sizes` holds the count of each distinct node once known, so this
    takes the document's own size in steps, however far it expands."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = math.inf  # until counted: an alias back to a node being counted is a cycle
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = node.value if isinstance(node, yaml.SequenceNode) else []
    sizes[id(node)] = 1 + sum(expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=BoundedLoader) or {}
    except AliasBomb as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply to read") from None
    return parse(Params, raw, "")


def parse(cls: type[Block], raw: Any, key: str) -> Block:
    """Build model `cls` from a dict; `key` ("" for the whole file) prefixes the dotted keys in error messages."""
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        lines = list(dict.fromkeys(_describe(cls, _without_union_tags(e), key) for e in errors[:MAX_ERROR_LINES]))
        if len(errors) > MAX_ERROR_LINES:
            lines.append(f"... and {len(errors) - MAX_ERROR_LINES} more")
        raise ConfigError("\n".join(lines)) from None


def as_dict(block: BaseModel) -> dict[str, Any]:
    """The block as plain data (nested dicts; list fields stay lists, tuple fields tuples)."""
    return block.model_dump()


def active(params: Params, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
    """The params that shape this run: only the chosen model's block and the chosen dataset's block
    (`models.resnet34_unet.*` says nothing about a unet run, nor the ADE20K URLs about a synthetic one).
    mode "json" gives lists for tuples, for writing out."""
    values = params.model_dump(mode=mode)
    values["models"] = {params.model: values["models"][params.model]}
    values["data"] = {name: value for name, value in values["data"].items()
                      if name not in DATASETS or name == params.data.dataset}
    return values


def flatten(params: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """{'train.lr': 0.002, ...}: the form MLflow and DVC show parameters in."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(_join(prefix, name), item)
        else:
            out[prefix] = value

    walk("", params if isinstance(params, dict) else as_dict(params))
    return out


# -- error messages ---------------------------------------------------------------------------------------------

_EXPECTED = {"int_type": "int", "int_parsing": "int", "int_from_float": "int", "float_type": "float",
             "float_parsing": "float", "bool_type": "bool", "bool_parsing": "bool", "string_type": "str",
             "list_type": "a list", "tuple_type": "a list", "finite_number": "a finite number"}
_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type"}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


def _describe(cls: type[BaseModel], error: dict[str, Any], key: str) -> str:
    """One line for one pydantic error: `<dotted key>: <what is wrong and what is expected>`."""
    loc, kind, value, ctx = error["loc"], error["type"], error.get("input"), error.get("ctx", {})
    where = _dotted(key, loc) or "params.yaml"
    if kind in ("extra_forbidden", "invalid_key"):
        return _unknown_key(_annotation_at(cls, loc[:-1]), _join(_dotted(key, loc[:-1]), str(loc[-1])))
    if kind == "config":
        prefix = _dotted(key, loc)
        detail = ctx["detail"]  # not str.format: a quoted value may hold braces
        for index, name in enumerate(ctx["related"]):
            detail = detail.replace(f"{{{index}}}", _join(prefix, name))
        return f"{_join(prefix, ctx['field']) or 'params.yaml'}: {detail}"
    if kind == "literal_error" and (allowed := _literal_values(_annotation_at(cls, loc))):
        return f"{where}: {quote(value)} is not allowed; choose one of {', '.join(map(str, allowed))}"
    if kind in _MAPPING_ERRORS:
        names = ", ".join(getattr(_annotation_at(cls, loc), "model_fields", ()))
        return f"{where}: expected a mapping with keys {names}, got {quote(value)}"
    if kind in _EXPECTED:
        return f"{where}: expected {_EXPECTED[kind]}, got {quote(value)}"
    if kind in _BOUNDS:
        name, sign = _BOUNDS[kind]
        return f"{where}: must be {sign} {ctx[name]}, got {quote(value)}"
    if kind == "too_short":
        need = "must not be empty" if ctx["min_length"] == 1 else f"needs at least {ctx['min_length']} items"
        return f"{where}: {need}, got {quote(value)}"
    return f"{where}: {error['msg']}, got {quote(value)}"


def _without_union_tags(error: dict[str, Any]) -> dict[str, Any]:
    """Pydantic names the union member in the location (`list[...]`, `literal['balanced']`): not a key."""
    return {**error, "loc": tuple(part for part in error["loc"] if isinstance(part, int) or "[" not in part)}


def _unknown_key(model: Any, key: str) -> str:
    names = list(getattr(model, "model_fields", ()))
    close = difflib.get_close_matches(key.rpartition(".")[2], names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{_cut(key)}: unknown key{hint}; allowed keys: {', '.join(names)}"


def _annotation_at(cls: type[BaseModel], loc: tuple[str | int, ...]) -> Any:
    """The type at `loc` inside model `cls` (cls itself for ()), or None once the path leaves the models."""
    annotation: Any = cls
    for part in loc:
        fields = annotation.model_fields if isinstance(annotation, type) and issubclass(annotation, BaseModel) else {}
        if part not in fields:
            return None
        annotation = fields[part].annotation
    return annotation


def _literal_values(annotation: Any) -> tuple:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return next((found for arg in typing.get_args(annotation) if (found := _literal_values(arg))), ())


def _dotted(key: str, loc: tuple[str | int, ...]) -> str:
    out = key
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key and name != "" else str(name or key)


def load_params_or_exit(path: Path | str) -> Params:
    """The params in `path`, or the process ends with one line naming the file and what is wrong (every stage, and
    the check below)."""
    if not Path(path).is_file():
        sys.exit(f"error: {path}: no such file")
    try:
        return load_params(path)
    except ConfigError as error:
        sys.exit(f"error in {path}: {error}")


def main(argv: list[str] | None = None) -> None:
    """Check a params file, e.g. one you were sent, before `dvc repro` reads it: one line either way. With --show,
    print every value a run with it uses instead, the defaults of the keys the file leaves out included."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.config", description=main.__doc__)
    parser.add_argument("file", nargs="?", default="params.yaml", type=Path, help="default: params.yaml")
    parser.add_argument("--show", action="store_true",
                        help="print the chosen model's and dataset's settings and all others, as YAML")
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.file)
    if args.show:
        print(yaml.safe_dump(active(params, mode="json"), sort_keys=False), end="")
    else:
        print(f"{args.file}: valid")


if __name__ == "__main__":
    main()
