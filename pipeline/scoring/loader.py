"""Run a model over a loader and feed the metric counters: the one loop that scores validation and evaluation."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pipeline.models.inference import predict_batch
from pipeline.scoring.metrics import SplitScores


def score_loader(model, loader, device: torch.device, num_classes: int, partial: bool, loss_fn: Callable,
                 hflip: bool = False, scales: Sequence[float] = (1.0,), total=None,
                 memory_format: torch.memory_format = torch.contiguous_format) -> dict:
    """Loss and scores of `model` over every batch of `loader`, with optional test-time augmentation.
    `total` sums the counts over processes when each one scores a shard of the split (SplitScores.compute);
    `memory_format` is the images' layout on the device (channels_last for a channels_last model)."""
    scores = SplitScores(num_classes, partial, loss_fn)
    for images, masks, labelled in loader:
        images = images.to(device, memory_format=memory_format)
        log_probabilities = predict_batch(model, images, hflip=hflip, scales=scales)
        scores.update(log_probabilities, masks.to(device), labelled.to(device))
    return scores.compute(total)
