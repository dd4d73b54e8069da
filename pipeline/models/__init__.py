"""Model registry: the name in params.yaml's `model` -> a builder taking the block `models.<name>`."""
from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

from pipeline.models.unet import UNet

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
}


def build_model(name: str, num_classes: int, model_params) -> nn.Module:
    """Build architecture `name` for `num_classes` outputs with the keyword arguments of its params block."""
    if name not in BUILDERS:
        raise ValueError(f"model: unknown architecture {name!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[name](num_classes=num_classes, **dataclasses.asdict(model_params))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
