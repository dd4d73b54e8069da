"""Training and evaluation when each image is annotated for some classes only (single-class sets combined).

In an image labelled for {background, A}, a pixel marked background means "not A": it may be B. The
marginal loss (Shi et al., MedIA 2021, "Marginal loss and exclusion loss for partially supervised
multi-organ segmentation") therefore scores such pixels against the summed probability of background
and every class not labelled in that image. Evaluation follows the same rule: class c is scored only on
images labelled for c, and a prediction of an unlabelled class counts as background there.
Background is class 0 throughout.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.palette import IGNORE_INDEX

BACKGROUND = 0


def merged_background(labelled: torch.Tensor) -> torch.Tensor:
    """(B, C) bool: the classes a background pixel stands for in each image (background + the unlabelled ones)."""
    merged = ~labelled.bool()
    merged[:, BACKGROUND] = True
    return merged


def marginal_cross_entropy(logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Mean over non-ignored pixels; equals `F.cross_entropy(logits, target, ignore_index=255)` when all is labelled.

    logits (B, C, H, W); target (B, H, W) long, 255 ignored; labelled (B, C) bool.
    """
    log_probs = logits.log_softmax(dim=1)
    merged = merged_background(labelled)[:, :, None, None]
    background = log_probs.masked_fill(~merged, float("-inf")).logsumexp(dim=1)  # exactly log p_0 if merged = {0}
    channel = torch.arange(logits.shape[1], device=logits.device)[None, :, None, None]
    marginal = torch.where(channel == BACKGROUND, background.unsqueeze(1), log_probs)
    return F.nll_loss(marginal, target, ignore_index=IGNORE_INDEX)


class PartialLabelIoU:
    """Per-class IoU over the images labelled for that class, from counts accumulated over the whole split.

    With every image fully labelled this is the ordinary dataset-level IoU (one confusion matrix).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.true_positive = torch.zeros(self.num_classes, dtype=torch.int64)
        self.false_positive = torch.zeros(self.num_classes, dtype=torch.int64)
        self.false_negative = torch.zeros(self.num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> None:
        """pred, target (B, H, W) class indices; labelled (B, C) bool."""
        pred, target, labelled = pred.cpu().long(), target.cpu().long(), labelled.cpu().bool()
        batch, classes = labelled.shape
        unlabelled_prediction = merged_background(labelled).gather(1, pred.flatten(1)).view_as(pred)
        pred = pred.masked_fill(unlabelled_prediction, BACKGROUND)
        valid = target != self.ignore_index
        image = torch.arange(batch)[:, None, None].expand_as(target)
        cell = (image * classes + target) * classes + pred
        confusion = torch.bincount(cell[valid], minlength=batch * classes * classes).view(batch, classes, classes)
        hits = confusion.diagonal(dim1=1, dim2=2)  # (B, C)
        counted = labelled.long()
        self.true_positive += (hits * counted).sum(0)
        self.false_negative += ((confusion.sum(2) - hits) * counted).sum(0)
        self.false_positive += ((confusion.sum(1) - hits) * counted).sum(0)

    def compute(self) -> dict:
        """{'per_class_iou': [...], 'miou': mean}; NaN for a class never labelled, or absent from truth and prediction."""
        union = (self.true_positive + self.false_positive + self.false_negative).double()
        iou = torch.where(union > 0, self.true_positive.double() / union.clamp(min=1), float("nan")).numpy()
        return {"per_class_iou": iou.tolist(),
                "miou": float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")}
