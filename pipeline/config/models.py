"""The `models.<name>` blocks: each architecture's params and the recipe (lr, epochs, crops) it trains best with."""
from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import Field

from pipeline.config.problems import quote
from pipeline.config.types import (
    MAX_LIST,
    MODELS,
    BelowOne,
    Block,
    Bool,
    Channels,
    Depth,
    Draws,
    Epochs,
    Int,
    LearningRate,
    Side,
    Str,
)


class _ModelBlock(Block):
    """A `models.<name>` block: the architecture's params plus the recipe values this model trains best with
    (RECIPE_KEYS), used where train.lr, train.epochs or augment.crops_per_image says `auto`, so `-S model=<name>`
    alone brings the model's recipe; the values used are in reports/train/resolved.json, columns of `dvc exp show`."""
    lr: LearningRate = 0.001  # train.lr when that is auto
    epochs: Epochs = 4  # train.epochs when that is auto: a schedule that ends within ten minutes on MSRC-v2 in fp32
    # (and a complete one on the synthetic default, which peaks by then: 0.66-0.68 over 4 seeds)
    crops_per_image: Draws = 2  # augment.crops_per_image when that is auto

    def architecture(self) -> dict[str, Any]:
        """The params the architecture's builder takes (and checkpoints record): the block without its recipe."""
        return self.model_dump(exclude={key for keys in RECIPE_KEYS.values() for key in keys})


# <section>.<key>: auto takes models.<model>.<key>
RECIPE_KEYS = {"train": ("lr", "epochs"), "augment": ("crops_per_image",)}


class UNetParams(_ModelBlock):
    lr: LearningRate = 0.003  # small from-scratch U-Nets underfit at 1e-3 in 12 epochs (benchmarks/recipe.py)
    base_channels: Channels = 16  # 8 is too narrow for photos (MSRC-v2: 0.10 against 0.14 mIoU)
    depth: Depth = 5  # poolings: at 256² the deepest features see the whole image (4 missed large shapes)
    bilinear: Bool = True
    dropout: BelowOne = 0.0
    residual: Bool = True  # shortcuts around the double convolutions: 0.24 against 0.18 on MSRC-v2 (unet.py)


class ResNet34UNetParams(_ModelBlock):
    epochs: Epochs = 5  # 1 crop an image: 5 epochs of MSRC-v2 take about 480 s in fp32 on 2 cores
    crops_per_image: Draws = 1  # a resnet34 crop costs 2x a unet one: one per image keeps 4 epochs within 10 minutes
    encoder_weights: Str = "imagenet"  # imagenet (Hugging Face cache, fetched once) | none | path to .pth/.safetensors
    decoder_channels: Annotated[tuple[Channels, ...], Field(min_length=1, max_length=MAX_LIST)] = (256, 128, 64, 32, 16)


class MultiScaleUNetParams(_ModelBlock):
    lr: LearningRate = 0.001  # 0.003 costs it 0.035 mIoU on MSRC-v2
    epochs: Epochs = 5  # 85 s an epoch of MSRC-v2 in fp32 on 2 cores: 5 end within ten minutes
    # the image at these sides, each fused into the encoder
    scales: Annotated[tuple[Side, ...], Field(min_length=1, max_length=MAX_LIST)] = (256, 128, 64)
    base_channels: Channels = 16
    depth: Depth = 4
    stem_channels: Channels = 16
    bilinear: Bool = True
    dropout: BelowOne = 0.0


class SmpParams(_ModelBlock):
    epochs: Epochs = 5  # the default network is resnet34_unet's: its recipe, which ends within ten minutes on MSRC-v2
    crops_per_image: Draws = 1
    decoder: Literal["Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus"] = "Unet"
    encoder: Str = "resnet34"  # any name in segmentation_models_pytorch.encoders.get_encoder_names()
    encoder_weights: Str = "imagenet"  # imagenet (Hugging Face cache, fetched once) | none | path to .pth/.safetensors
    encoder_depth: Annotated[Int, Field(ge=3, le=5)] = 5  # encoder stages the decoder sees (the range all four take)


class ModelsParams(Block):
    unet: UNetParams = Field(default_factory=UNetParams)
    resnet34_unet: ResNet34UNetParams = Field(default_factory=ResNet34UNetParams)
    multiscale_unet: MultiScaleUNetParams = Field(default_factory=MultiScaleUNetParams)
    smp: SmpParams = Field(default_factory=SmpParams)


assert set(MODELS) == set(ModelsParams.model_fields), "ModelName and the blocks of ModelsParams differ"
PRETRAINED_MODELS = tuple(name for name, info in ModelsParams.model_fields.items()
                          if "encoder_weights" in info.annotation.model_fields)
POOLING_MODELS = tuple(name for name, info in ModelsParams.model_fields.items()  # halve their input `depth` times
                       if "depth" in info.annotation.model_fields)


def smp_encoder_problem(name: str) -> str | None:
    """What is wrong with an smp encoder name (params.yaml's, or a model file's); None if nothing is. Only the names
    smp builds from its own code are allowed: a `tu-hf-hub:` or other hub name would make building download."""
    from segmentation_models_pytorch.encoders import get_encoder_names

    names = get_encoder_names()
    if name in names:
        return None
    if any(mark in name for mark in ("hf-hub", ":", "/")):
        return (f"{quote(name)} names a model on a hub, which building would fetch; an encoder is one of the "
                f"{len(names)} in segmentation_models_pytorch.encoders.get_encoder_names()")
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"unknown encoder {quote(name)}{hint}; segmentation_models_pytorch.encoders.get_encoder_names() lists "
            f"the {len(names)} allowed")
