"""Segmentation losses, one signature: (logits (B, C, H, W), target (B, H, W) with 255 = ignore,
labelled (B, C) bool or None) -> a scalar.

`labelled` matters only for partially labelled data (merged single-class sets), which trains with the
marginal cross-entropy (Shi et al., MedIA 2021, "Marginal loss and exclusion loss for partially
supervised multi-organ segmentation"): a pixel marked background in an image labelled for {background,
A} means "not A", so it is scored against the summed probability of background and every class not
labelled in that image. Every loss computes in float32 whatever the logits' dtype, so it can sit inside
a bf16 autocast region.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import LOSSES
from pipeline.data.labels import BACKGROUND, IGNORE_INDEX, merged_background


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross entropy scaled by (1 - p_true)**gamma, so easy pixels count less.

    gamma=0 is cross entropy. Weighted mean over non-ignored pixels (torch's convention for class
    weights), but 0 rather than NaN when every pixel is ignored, so one such batch cannot poison training.
    """

    def __init__(self, weight: torch.Tensor | None, ignore_index: int, gamma: float):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None) -> torch.Tensor:
        valid = target != self.ignore_index
        safe_target = torch.where(valid, target, 0)
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
        loss = -log_p
        if self.gamma:  # clamped: (1 - p)**gamma has an infinite slope at p = 1 when gamma < 1
            loss = loss * (1 - log_p.exp()).clamp_min(1e-6) ** self.gamma
        pixel_weight = valid.float() if self.weight is None else self.weight[safe_target] * valid
        return (loss * pixel_weight).sum() / pixel_weight.sum().clamp_min(1e-12)


class DiceLoss(nn.Module):
    """1 - soft Dice, per class over the whole batch, averaged over the classes present in the target.

    Ignored pixels count in neither the prediction nor the target. Classes absent from the target are
    left out of the mean: their Dice is 0/0 and would only add noise (cross entropy covers them in ce+dice).
    """

    def __init__(self, num_classes: int, weight: torch.Tensor | None, ignore_index: int, smooth: float = 1e-6):
        super().__init__()
        self.register_buffer("weight", weight)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None) -> torch.Tensor:
        valid = (target != self.ignore_index).unsqueeze(1)
        probs = F.softmax(logits.float(), dim=1) * valid
        one_hot = F.one_hot(torch.where(valid.squeeze(1), target, 0), self.num_classes).permute(0, 3, 1, 2) * valid
        dims = (0, 2, 3)
        intersection = (probs * one_hot).sum(dims)
        cardinality = probs.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (cardinality + self.smooth)
        present = (one_hot.sum(dims) > 0).float()
        class_weight = present if self.weight is None else present * self.weight
        if class_weight.sum() == 0:  # every pixel ignored: nothing to learn from, but keep the graph
            return logits.sum() * 0.0
        return 1 - (dice * class_weight).sum() / class_weight.sum()


class SumLoss(nn.Module):
    """The sum of several losses, e.g. ce+dice: CE gives every pixel a gradient, Dice balances classes."""

    def __init__(self, terms: Sequence[nn.Module]):
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None) -> torch.Tensor:
        return sum(term(logits, target, labelled) for term in self.terms)


class MarginalCrossEntropy(nn.Module):
    """Mean over non-ignored pixels, weighted like torch's cross-entropy when class weights are given; equals
    `F.cross_entropy(logits, target, weight, ignore_index=255)` when every image is fully labelled."""

    def __init__(self, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None) -> torch.Tensor:
        if labelled is None:
            raise ValueError("the marginal cross-entropy needs `labelled`: which classes each image is labelled for")
        log_probs = logits.float().log_softmax(dim=1)
        merged = merged_background(labelled)[:, :, None, None]
        background = log_probs.masked_fill(~merged, float("-inf")).logsumexp(dim=1)  # exactly log p_0 if merged = {0}
        channel = torch.arange(logits.shape[1], device=logits.device)[None, :, None, None]
        marginal = torch.where(channel == BACKGROUND, background.unsqueeze(1), log_probs)
        return F.nll_loss(marginal, target, weight=self.weight, ignore_index=IGNORE_INDEX)


def build_loss(name: str, num_classes: int, ignore_index: int = IGNORE_INDEX,
               class_weights: Sequence[float] | None = None, focal_gamma: float = 2.0,
               partial: bool = False) -> nn.Module:
    """Loss `name` (one of LOSSES); class_weights, if given, has one non-negative value per class.
    `partial` (some images labelled for some classes only) selects the marginal cross-entropy."""
    if name not in LOSSES:
        raise ValueError(f"loss: unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    weight = None
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise ValueError(f"class_weights: got {len(class_weights)} values for {num_classes} classes; "
                             "give one weight per class, or none")
        if any(w < 0 for w in class_weights) or sum(class_weights) <= 0:
            raise ValueError(f"class_weights: expected non-negative values, not all zero; got {list(class_weights)}")
        weight = torch.tensor(class_weights, dtype=torch.float32)
    if partial:
        return MarginalCrossEntropy(weight)
    makers = {
        "ce": lambda: FocalLoss(weight, ignore_index, gamma=0.0),
        "dice": lambda: DiceLoss(num_classes, weight, ignore_index),
        "focal": lambda: FocalLoss(weight, ignore_index, focal_gamma),
    }
    terms = [makers[part]() for part in name.split("+")]
    return terms[0] if len(terms) == 1 else SumLoss(terms)
