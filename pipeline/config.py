"""Load params.yaml into typed dataclasses; a typo, a wrong type or an unknown name stops at once, naming the key."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DATASETS = ("synthetic", "voc2012", "ade20k", "voc_layout", "single_class")
MODELS = ("unet", "resnet34_unet", "multiscale_unet")


class ConfigError(ValueError):
    """A parameter in params.yaml is missing, misspelt, of the wrong type or not an allowed value."""


@dataclass(frozen=True)
class SyntheticParams:
    num_train: int = 320
    num_val: int = 80
    seed: int = 0


@dataclass(frozen=True)
class Voc2012Params:
    urls: list[str] = field(default_factory=list)  # tried in order; each download is checked against the MD5
    trainaug: bool = False  # train on the 10582-image SBD set (needs SegmentationClassAug + trainaug.txt)


@dataclass(frozen=True)
class Ade20kParams:
    urls: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VocLayoutParams:
    classes: list[str] | None = None  # class names when the root has no classes.txt


@dataclass(frozen=True)
class SingleClassParams:
    val_fraction: float = 0.2  # per class, for folders without their own train/ and val/
    split_seed: int = 0


@dataclass(frozen=True)
class SubsetParams:
    train: int | None = None  # a seeded random subset of this many training images; null: all
    val: int | None = None


@dataclass(frozen=True)
class DataParams:
    dataset: Literal[DATASETS] = "synthetic"
    root: str | None = None  # an existing dataset folder: nothing is downloaded
    download_dir: str = "data/downloads"
    image_size: int = 256
    on_bad_sample: Literal["error", "skip"] = "error"
    subset: SubsetParams = field(default_factory=SubsetParams)
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    voc2012: Voc2012Params = field(default_factory=Voc2012Params)
    ade20k: Ade20kParams = field(default_factory=Ade20kParams)
    voc_layout: VocLayoutParams = field(default_factory=VocLayoutParams)
    single_class: SingleClassParams = field(default_factory=SingleClassParams)


@dataclass(frozen=True)
class UNetParams:
    base_channels: int = 16
    depth: int = 4
    bilinear: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class ResNet34UNetParams:
    encoder_weights: str = "imagenet"  # imagenet (from the torch hub cache) | none | path to a resnet34 .pth
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)


@dataclass(frozen=True)
class MultiScaleUNetParams:
    scales: tuple[int, ...] = (256, 128, 64)
    base_channels: int = 16
    depth: int = 4
    stem_channels: int = 16
    bilinear: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class ModelsParams:
    unet: UNetParams = field(default_factory=UNetParams)
    resnet34_unet: ResNet34UNetParams = field(default_factory=ResNet34UNetParams)
    multiscale_unet: MultiScaleUNetParams = field(default_factory=MultiScaleUNetParams)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 12
    batch_size: int = 8
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 0.002
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    scheduler: Literal["plateau", "cosine", "poly", "none"] = "plateau"
    warmup_epochs: int = 0
    poly_power: float = 0.9
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    loss: Literal["ce", "dice", "focal", "ce+dice"] = "ce"
    class_weights: list[float] | None = None
    focal_gamma: float = 2.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    grad_clip_norm: float = 0.0  # 0: no clipping
    early_stopping_patience: int = 0  # stop after this many epochs without a better val mIoU; 0: never
    freeze_encoder_epochs: int = 0  # resnet34_unet: train only the decoder for the first N epochs
    init_from: str | None = None  # start from a checkpoint path or an MLflow model URI
    progress_every: int = 2  # epochs between the val predictions kept for the progress GIF
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 42
    deterministic: bool = False
    num_workers: int = 0
    num_threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class AugmentParams:
    crop_size: int = 0  # train on random crops of this size (0: whole images); validation always sees whole images
    hflip: float = 0.5
    scale_limit: float = 0.2
    rotate_limit: float = 10.0
    affine: float = 0.5
    color_jitter: float = 0.3


@dataclass(frozen=True)
class EvaluateParams:
    tta_hflip: bool = False  # also predict the mirrored image and average the probabilities
    tta_scales: list[float] = field(default_factory=lambda: [1.0])  # input scales averaged at test time


@dataclass(frozen=True)
class PlotParams:
    num_samples: int = 4


@dataclass(frozen=True)
class MlflowParams:
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "segmentation"


@dataclass(frozen=True)
class Params:
    model: Literal[MODELS] = "unet"
    data: DataParams = field(default_factory=DataParams)
    models: ModelsParams = field(default_factory=ModelsParams)
    train: TrainParams = field(default_factory=TrainParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    plot: PlotParams = field(default_factory=PlotParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)

    def model_params(self):
        """The block `models.<model>` that configures the chosen architecture."""
        return getattr(self.models, self.model)


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    return parse(Params, raw, "")


def parse(cls: type, raw: Any, key: str):
    """Build dataclass `cls` from a dict, checking every key and value against the field types."""
    where = key or "params.yaml"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {_names(cls)}, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in raw:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{_join(key, name)}: unknown key{hint}; allowed keys: {_names(cls)}")
    values = {name: _coerce(hints[name], raw[name], _join(key, name)) for name in raw}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, key)
    if origin is Literal:
        allowed = typing.get_args(hint)
        allowed = allowed[0] if len(allowed) == 1 and isinstance(allowed[0], tuple) else allowed
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        items = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    if hint is dict and isinstance(value, dict):
        return value
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else str(name)


def flatten(params: Params) -> dict[str, Any]:
    """{'train.lr': 0.002, ...}: the form MLflow and DVC show parameters in."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(_join(prefix, name), item)
        else:
            out[prefix] = value

    walk("", dataclasses.asdict(params))
    return out
