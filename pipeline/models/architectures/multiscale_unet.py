"""U-Net with multi-scale input: downscaled copies of the image are injected into the encoder.

A small object or a thin edge is easier to see at full resolution, a large shape at a coarse one; feeding
the image itself at 1/2, 1/4, ... gives each encoder level raw pixels at its own scale (as in MSU-Net and
the multi-scale input U-Nets), at the cost of one light stem and one fusion convolution per extra scale.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.architectures.unet import UNet


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class MultiScaleUNet(UNet):
    """The U-Net of unet.py whose encoder level k also sees the image averaged down by 2**k.

    `scales` are image sizes relative to each other: (256, 128, 64) means the full image (the main
    encoder's input) plus copies at 1/2 and 1/4, fused at encoder levels 1 and 2. Any input size works:
    a copy is area-averaged by exactly the encoder's pooling factor, so its size always matches.
    """

    def __init__(self, num_classes: int, scales: Sequence[int] = (256, 128, 64), base_channels: int = 16,
                 depth: int = 4, stem_channels: int = 16, bilinear: bool = True, dropout: float = 0.0):
        super().__init__(num_classes, base_channels=base_channels, depth=depth, bilinear=bilinear, dropout=dropout)
        self.levels = scale_levels(scales, depth)
        channels = [base_channels * 2**level for level in range(depth + 1)]
        self.side_stems = nn.ModuleDict({str(k): conv_bn_relu(3, stem_channels) for k in self.levels})
        self.fusions = nn.ModuleDict({str(k): conv_bn_relu(channels[k] + stem_channels, channels[k])
                                      for k in self.levels})

    def fuse(self, level: int, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if level not in self.levels:
            return features
        side = self.side_stems[str(level)](F.avg_pool2d(image, 2**level))
        return self.fusions[str(level)](torch.cat([features, side], dim=1))


def scale_levels(scales: Sequence[int], depth: int) -> list[int]:
    """Encoder levels where scales[1:] are injected: log2(scales[0] / s), each a whole level in 1..depth."""
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales: expected positive sizes, largest first, e.g. [256, 128, 64]; got {list(scales)}")
    levels = []
    for s in scales[1:]:
        level = math.log2(scales[0] / s)
        if not level.is_integer() or not 1 <= level <= depth:
            raise ValueError(f"scales: {s} is not {scales[0]} divided by 2, 4, ... 2**depth (depth={depth}); "
                             f"got {list(scales)}")
        levels.append(int(level))
    if len(set(levels)) != len(levels):
        raise ValueError(f"scales: repeated scale in {list(scales)}")
    return levels
