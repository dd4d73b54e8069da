"""U-Net decoder over torchvision's ResNet-34: the smp `Unet('resnet34')` layout in plain torchvision.

The encoder keeps torchvision's module names, so a `resnet34().state_dict()` loads into it as is.
Pretrained weights are never downloaded here: the pipeline runs offline and reproducibly, so
`imagenet` means "the file torchvision would use, already in the torch hub cache".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet34_Weights, resnet34

from pipeline.models.architectures.unet import DoubleConv

IMAGENET_WEIGHTS = ResNet34_Weights.IMAGENET1K_V1


class ResNet34Encoder(nn.Module):
    """ResNet-34 without pooling and classifier; returns features at strides 2, 4, 8, 16 and 32."""

    out_channels = (64, 64, 128, 256, 512)

    def __init__(self):
        super().__init__()
        backbone = resnet34(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (backbone.layer1, backbone.layer2,
                                                              backbone.layer3, backbone.layer4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stride2 = self.relu(self.bn1(self.conv1(x)))
        stride4 = self.layer1(self.maxpool(stride2))
        stride8 = self.layer2(stride4)
        stride16 = self.layer3(stride8)
        return [stride2, stride4, stride8, stride16, self.layer4(stride16)]


class DecoderBlock(nn.Module):
    """Upsample to the skip's size (odd sizes too), concatenate the skip, then two 3x3 convolutions."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: Sequence[int]) -> torch.Tensor:
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x if skip is None else torch.cat([x, skip], dim=1))


class ResNet34UNet(nn.Module):
    """ResNet-34 encoder, five decoder blocks (the last one back to input resolution), 3x3 head."""

    def __init__(self, num_classes: int, encoder_weights: str = "imagenet",
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16)):
        super().__init__()
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels: expected 5 values (strides 16, 8, 4, 2, 1), got {list(decoder_channels)}")
        self.encoder = ResNet34Encoder()
        load_encoder_weights(self.encoder, encoder_weights)
        skip_channels = list(reversed(self.encoder.out_channels[:-1])) + [0]
        in_channels = [self.encoder.out_channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(in_channels, skip_channels, decoder_channels))
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
        self.encoder_frozen = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        *features, x = self.encoder(images)
        skips = [*reversed(features), None]
        sizes = [*(feature.shape[-2:] for feature in reversed(features)), images.shape[-2:]]
        for block, skip, size in zip(self.decoder, skips, sizes):
            x = block(x, skip, size)
        return self.head(x)

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Stop (or resume) training the encoder: no gradients, and batch-norm statistics kept fixed."""
        self.encoder_frozen = frozen
        self.encoder.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "ResNet34UNet":
        """As nn.Module.train, but a frozen encoder stays in eval mode so its BN running stats do not drift."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self


def load_encoder_weights(encoder: ResNet34Encoder, encoder_weights: str) -> None:
    """Fill `encoder` from `none` (keep random init), `imagenet` (torch hub cache) or a .pth path."""
    if encoder_weights == "none":
        return
    if encoder_weights == "imagenet":
        cached = imagenet_cache_path()
        if not cached.is_file():
            raise FileNotFoundError(
                f"encoder_weights: imagenet needs the ResNet-34 ImageNet weights at {cached} "
                f"(no download is attempted). Fetch {IMAGENET_WEIGHTS.url} and put it there under that "
                "exact name, or set encoder_weights to none or to the path of a torchvision resnet34 state dict.")
        # check_hash only applies to downloads in torch.hub; a wrong cached file is caught by strict key matching.
        state, source = IMAGENET_WEIGHTS.get_state_dict(progress=False, check_hash=False), cached
    else:
        source = Path(encoder_weights)
        if not source.is_file():
            raise FileNotFoundError(f"encoder_weights: {source} is not a file; use imagenet, none, or the path "
                                    "of a torchvision resnet34 state dict (.pth)")
        state = torch.load(source, map_location="cpu", weights_only=True)
    load_strict(encoder, state, source)


def imagenet_cache_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet-34 file: <torch.hub.get_dir()>/checkpoints/resnet34-<hash>.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(IMAGENET_WEIGHTS.url)


def load_strict(encoder: nn.Module, state: dict, source: Path) -> None:
    """Load a torchvision resnet34 state dict (its `fc.*` classifier ignored); refuse any other key set."""
    if not isinstance(state, dict):
        raise ValueError(f"encoder_weights: {source} holds a {type(state).__name__}, not a resnet34 state dict")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = set(encoder.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"encoder_weights: {source} is not a torchvision resnet34 state dict: "
                         f"{len(missing)} missing keys {_preview(missing)}, "
                         f"{len(unexpected)} unexpected keys {_preview(unexpected)}")
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as error:  # same keys, wrong shapes
        raise ValueError(f"encoder_weights: {source} does not fit resnet34: {error}") from error


def _preview(keys: list[str], limit: int = 5) -> str:
    return str(keys[:limit])[:-1] + (", ...]" if len(keys) > limit else "]")
