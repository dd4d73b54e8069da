"""Model registry: the name in params.yaml's `model` -> a builder taking the block `models.<name>`."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from pipeline.models.architectures.multiscale_unet import MultiScaleUNet
from pipeline.models.architectures.resnet_unet import ResNet34UNet
from pipeline.models.architectures.unet import UNet
from pipeline.models.segmenter import SegmentationModel

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "resnet34_unet": ResNet34UNet,
    "multiscale_unet": MultiScaleUNet,
}
# Params that only say how to initialise, and their value when a trained model is rebuilt: the checkpoint
# holds the weights, so rebuilding must not need the pretrained file (or the network).
REBUILD_OVERRIDES: dict[str, dict] = {
    "resnet34_unet": {"encoder_weights": "none"},
}


def build_network(name: str, num_classes: int, model_params: dict) -> nn.Module:
    """Architecture `name` for `num_classes` outputs, configured by the keys of its params block."""
    if name not in BUILDERS:
        raise ValueError(f"model: unknown architecture {name!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[name](num_classes=num_classes, **model_params)


def rebuild_params(name: str, model_params: dict) -> dict:
    """The params block saved at train time, made safe for rebuilding a model whose weights come next."""
    return {**model_params, **REBUILD_OVERRIDES.get(name, {})}


def build_model(name: str, class_names: Sequence[str], model_params: dict, image_size: int) -> SegmentationModel:
    return SegmentationModel(build_network(name, len(class_names), model_params), class_names, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
