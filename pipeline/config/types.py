"""The types of params.yaml's values: the allowed names, strict scalars, and a bound for every number.

Every number has an upper bound a real run could need, so no value makes validation or the first allocation exhaust
the machine; the comment beside each bound says why it suffices. Values read from other files (a model's metadata,
a dataset's classes.txt, a flag) are checked against the same bounds with the `*_problem` functions.
"""
from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WrapValidator,
)

from pipeline.config.problems import invalid, quote

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


class Block(BaseModel):
    """A block of params: unknown keys refused, values frozen once checked, no inf or nan."""
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
# Every number has an upper bound a real run could need, so no value makes validation or the first allocation
# exhaust the machine (a depth of 10**12 made 2**depth a 23 GB integer). The bounds, and why each suffices:
MAX_EPOCHS = 10_000  # ImageNet-scale schedules run a few hundred; also below loop.RANK_SEED_STRIDE
MAX_IMAGES = 10_000_000  # images in a split: ADE20K has 20210, the largest public segmentation sets a few million
MAX_BATCH = 4096  # images a step: large-batch segmentation runs use a few hundred across many GPUs
MAX_CHANNELS = 1024  # a layer's width: U-Nets start at 16-64, smp's widest decoder stage has 256
MAX_DEPTH = 12  # poolings: 2**12 = MAX_IMAGE_SIZE, the largest side a model is trained at
MAX_DRAWS = 64  # crops of one image an epoch, samples a figure shows: more repeats the same pixels
MAX_PATIENCE = MAX_EPOCHS  # epochs counted by patience, warmup, freezing, progress snapshots
MAX_SEED = 2**31 - 1  # numpy takes seeds below 2**32; the seed of an epoch adds the epoch and 100000 per rank
MAX_PROCESSES = 64  # processes on one node: a node holds 8-16 GPUs
MAX_THREADS = 1024  # CPU threads or loader workers: the largest servers have a few hundred cores
MAX_LR = 10.0  # learning rates run 1e-5..1 (SGD on large batches); 10 diverges whatever the model
MAX_FACTOR = 100.0  # weight decay, poly power, focal gamma, a class weight: real ones are 0..10
MAX_NORM = 1e6  # gradient clipping norm: 0.1..10 in practice; above this it never clips
MAX_SCALE = 4.0  # a test-time scale: 4 x MAX_IMAGE_SIZE is already a 16384-pixel side
MAX_LIST = 16  # test-time scales, multiscale inputs, decoder stages: real ones have 1-5
Epochs = Annotated[Int, Field(ge=1, le=MAX_EPOCHS)]
EpochCount = Annotated[Int, Field(ge=0, le=MAX_PATIENCE)]
Images = Annotated[Int, Field(ge=1, le=MAX_IMAGES)]
Batch = Annotated[Int, Field(ge=1, le=MAX_BATCH)]
Channels = Annotated[Int, Field(ge=1, le=MAX_CHANNELS)]
Depth = Annotated[Int, Field(ge=1, le=MAX_DEPTH)]
Draws = Annotated[Int, Field(ge=1, le=MAX_DRAWS)]
Seed = Annotated[Int, Field(ge=0, le=MAX_SEED)]
LearningRate = Annotated[Float, Field(gt=0, le=MAX_LR)]
Factor = Annotated[Float, Field(ge=0, le=MAX_FACTOR)]
Threads = Annotated[Int, Field(ge=0, le=MAX_THREADS)]
Probability = Annotated[Float, Field(ge=0, le=1)]
BelowOne = Annotated[Float, Field(ge=0, lt=1)]  # [0, 1): dropout, momentum, scale_limit
Byte = Annotated[Int, Field(ge=0, le=255)]
# Sides in pixels a model is trained and run at: data.image_size, a checkpoint's or MLflow model's image_size and
# predict's --image-size alike. 4096 squared is already a 200 MB input tensor; a file claiming 100000 would make
# torch ask for 120 GB.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 4096
Side = Annotated[Int, Field(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)]


def image_size_problem(size: Any) -> str | None:
    """What is wrong with an image side read from a file or a flag, checked like data.image_size before anything
    is allocated for it; None if nothing is."""
    if isinstance(size, int) and not isinstance(size, bool) and MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        return None
    return f"{quote(size)} is not a side in pixels within {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} (as data.image_size)"


# Classes a model segments: masks are uint8 with 255 meaning "ignore", so at most 255; a name is a label in legends
# and cards (ADE20K's longest is 19 characters): 100 is room for any, and keeps a crafted file from drawing a
# 500,000-pixel-wide legend.
MAX_CLASSES, MAX_CLASS_NAME = 255, 100


def class_names_problem(names: Any) -> str | None:
    """What is wrong with a list of class names read from a file (a model's metadata, a dataset's classes.txt), checked
    like voc_layout.classes before any network is built for them; None if nothing is."""
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_CLASSES:
        count = f"{len(names)} items" if isinstance(names, list) else quote(names)
        return f"expected a list of 1..{MAX_CLASSES} names (a uint8 mask holds no more), got {count}"
    bad = next((name for name in names if not isinstance(name, str) or not 1 <= len(name) <= MAX_CLASS_NAME), None)
    if bad is not None:
        return f"expected names of 1..{MAX_CLASS_NAME} characters, got {quote(bad)}"
    if len(set(names)) < len(names):
        twice = next(name for index, name in enumerate(names) if name in names[:index])
        return f"names must be unique, {quote(twice)} appears twice"
    return None


def _unique_class_names(names: list[str] | None) -> list[str] | None:
    if names is not None and (problem := class_names_problem(names)):
        raise invalid("", problem)
    return names


ClassNames = Annotated[list[Str] | None, AfterValidator(_unique_class_names)]

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
        raise invalid("", f"expected seconds or a duration such as 600, 90s, 10m or 2h, got {quote(value)}")
    return float(match[1]) * DURATION_UNITS[match[2]]


Duration = Annotated[Float, Field(gt=0, le=MAX_TIME_BUDGET), BeforeValidator(_seconds_from_duration)]


def or_auto(expected: str) -> WrapValidator:
    """One error for a value that is neither `expected` nor "auto" (pydantic would report each union member)."""
    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise invalid("", f"expected {expected} or auto, got {quote(value)}") from None

    return WrapValidator(validate)
