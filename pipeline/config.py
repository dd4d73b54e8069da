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
class DataParams:
    dataset: Literal[DATASETS] = "synthetic"
    root: str | None = None
    image_size: int = 256
    on_bad_sample: Literal["error", "skip"] = "error"
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)


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
    lr: float = 0.002
    weight_decay: float = 0.0
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    seed: int = 42
    num_workers: int = 0
    num_threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class AugmentParams:
    hflip: float = 0.5
    scale_limit: float = 0.2
    rotate_limit: float = 10.0
    shift_scale_rotate: float = 0.5
    color_jitter: float = 0.3


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
