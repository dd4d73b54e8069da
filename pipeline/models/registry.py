"""Model registry: the name in params.yaml's `model` -> a builder taking the block `models.<name>`."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from pipeline.models.architectures.encoder_decoder import RESNET34_UNET_ENCODER, EncoderDecoder, resnet34_unet
from pipeline.models.architectures.multiscale_unet import MultiScaleUNet
from pipeline.models.architectures.unet import UNet
from pipeline.models.segmenter import SegmentationModel
from pipeline.models.weights import load_encoder_weights

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "resnet34_unet": resnet34_unet,
    "multiscale_unet": MultiScaleUNet,
    "smp": EncoderDecoder,
}


def build_network(name: str, num_classes: int, model_params: dict) -> nn.Module:
    """Architecture `name` for `num_classes` outputs, configured by the keys of its params block.

    `encoder_weights` only says how to initialise the encoder, so the builder never sees it: the weights are
    loaded here, where the key `models.<name>.encoder_weights` is known for the error messages."""
    if name not in BUILDERS:
        raise ValueError(f"model: unknown architecture {name!r}; choose one of {', '.join(BUILDERS)}")
    params = dict(model_params)
    weights = params.pop("encoder_weights", "none")
    network = BUILDERS[name](num_classes=num_classes, **params)
    load_encoder_weights(network, weights, key=f"models.{name}.encoder_weights")
    return network


def encoder_of(name: str, model_params: dict) -> str:
    """The smp encoder that model `name` (one with `encoder_weights`) builds, named without building it."""
    return RESNET34_UNET_ENCODER if name == "resnet34_unet" else model_params["encoder"]


def rebuild_params(name: str, model_params: dict) -> dict:
    """The params block of model `name` saved at train time, made safe for rebuilding a model whose weights come
    next: the checkpoint holds them, so `encoder_weights` becomes none and nothing is read or fetched."""
    if "encoder_weights" not in model_params:
        return dict(model_params)
    return {**model_params, "encoder_weights": "none"}


def build_model(name: str, class_names: Sequence[str], model_params: dict, image_size: int) -> SegmentationModel:
    return SegmentationModel(build_network(name, len(class_names), model_params), class_names, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
