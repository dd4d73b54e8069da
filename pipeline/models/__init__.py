"""Model registry: the name in params.yaml's `model` -> a builder taking the block `models.<name>`."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from pipeline.models.multiscale_unet import MultiScaleUNet
from pipeline.models.resnet_unet import ResNet34UNet
from pipeline.models.unet import UNet

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
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationModel(nn.Module):
    """An architecture plus its input normalisation and class names: RGB in [0, 1] -> logits.

    Keeping the normalisation inside the module means a checkpoint or an MLflow model needs
    nothing else from this project to be used on new images.
    """

    def __init__(self, network: nn.Module, class_names: Sequence[str],
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.network = network
        self.class_names = list(class_names)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) floats in [0, 1]; returns (B, num_classes, H, W) logits."""
        return self.network((images - self.mean) / self.std)


def build_network(name: str, num_classes: int, model_params: dict) -> nn.Module:
    """Architecture `name` for `num_classes` outputs, configured by the keys of its params block."""
    if name not in BUILDERS:
        raise ValueError(f"model: unknown architecture {name!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[name](num_classes=num_classes, **model_params)


def rebuild_params(name: str, model_params: dict) -> dict:
    """The params block saved at train time, made safe for rebuilding a model whose weights come next."""
    return {**model_params, **REBUILD_OVERRIDES.get(name, {})}


def build_model(name: str, class_names: Sequence[str], model_params: dict) -> SegmentationModel:
    return SegmentationModel(build_network(name, len(class_names), model_params), class_names)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
