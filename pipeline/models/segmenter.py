"""The model users get: an architecture plus its input normalisation, class names and image size.

Keeping the normalisation inside the module means a checkpoint or an MLflow model needs nothing else
from this project to be used on new images; keeping `image_size` means predict resizes as training did.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 256


class SegmentationModel(nn.Module):
    """RGB in [0, 1] -> logits, for the classes in `class_names`, trained at `image_size` squared."""

    def __init__(self, network: nn.Module, class_names: Sequence[str], image_size: int = DEFAULT_IMAGE_SIZE,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.network = network
        self.class_names = list(class_names)
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) floats in [0, 1]; returns (B, num_classes, H, W) logits."""
        return self.network((images - self.mean) / self.std)

    def freeze_encoder(self, frozen: bool) -> None:
        """Train only the decoder while `frozen`; a network without a pretrained encoder has nothing to freeze."""
        freeze = getattr(self.network, "freeze_encoder", None)
        if freeze is None:
            raise ValueError(f"train.freeze_encoder_epochs: {type(self.network).__name__} has no pretrained "
                             "encoder to freeze; set it to 0")
        freeze(frozen)
