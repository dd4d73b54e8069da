"""Dataset-level segmentation metrics from one confusion matrix accumulated over the whole split.

Pixels labelled 255 count nowhere. A class absent from both truth and prediction has no IoU (NaN)
and is left out of the means, as in the VOC and ADE20K protocols. These are counters only: the loop
that runs the model is evaluation/scoring.py (mmsegmentation's process/compute split).

For partially labelled data (single-class sets combined) class c is scored only on images labelled
for c, and a prediction of an unlabelled class counts as background there (PartialLabelIoU).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from pipeline.data.labels import BACKGROUND, IGNORE_INDEX, merged_background


class SegmentationMetrics:
    """Accumulate a confusion matrix batch by batch; compute every score once at the end."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.confusion = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """predictions and targets: integer class maps of the same shape."""
        self.confusion.update(predictions.flatten().cpu(), targets.flatten().cpu())

    def reset(self) -> None:
        self.confusion.reset()

    def confusion_matrix(self) -> np.ndarray:
        """Rows are the true class, columns the predicted class, entries pixel counts."""
        return self.confusion.compute().numpy().astype(np.int64)

    def compute(self) -> dict:
        confusion = self.confusion_matrix()
        return {**scores_from_confusion(confusion), "confusion_matrix": confusion}


def scores_from_confusion(confusion: np.ndarray) -> dict:
    """Pixel accuracy, mean class accuracy, mIoU, frequency-weighted IoU, per-class IoU and Dice."""
    confusion = confusion.astype(np.float64)
    true_positive = np.diag(confusion)
    truth = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    union = truth + predicted - true_positive
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, true_positive / union, np.nan)
        dice = np.where(present, 2 * true_positive / (truth + predicted), np.nan)
        class_accuracy = np.where(truth > 0, true_positive / truth, np.nan)
    total = truth.sum()
    frequency = truth / total if total else np.zeros_like(truth)
    return {
        "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
        "mean_accuracy": float(np.nanmean(class_accuracy)) if (truth > 0).any() else float("nan"),
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "fw_iou": float(np.nansum(frequency * np.nan_to_num(iou))),
        "per_class_iou": iou.tolist(),
        "per_class_dice": dice.tolist(),
    }


class SplitScores:
    """Loss and confusion-matrix scores accumulated over a split.

    For partially labelled data (single-class sets) `miou` and `per_class_iou` score every class only
    on the images labelled for it: the plain confusion matrix would count "not labelled" as background.
    """

    def __init__(self, num_classes: int, partial: bool):
        self.metrics = SegmentationMetrics(num_classes)
        self.partial = PartialLabelIoU(num_classes) if partial else None
        self.loss_sum, self.pixels = 0.0, 0

    def update(self, log_probabilities: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> None:
        """log_probabilities (B, C, H, W), target (B, H, W), labelled (B, C) bool."""
        valid = int((target != IGNORE_INDEX).sum())
        if valid:
            loss = F.nll_loss(log_probabilities, target, ignore_index=IGNORE_INDEX)
            self.loss_sum += float(loss) * valid
            self.pixels += valid
        prediction = log_probabilities.argmax(1)
        self.metrics.update(prediction, target)
        if self.partial is not None:
            self.partial.update(prediction, target, labelled)

    def compute(self) -> dict:
        scores = self.metrics.compute()
        scores["loss"] = self.loss_sum / max(self.pixels, 1)
        if self.partial is not None:
            partial = self.partial.compute()
            scores["miou"], scores["per_class_iou"] = partial["miou"], partial["per_class_iou"]
        return scores


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
        """{'per_class_iou': [...], 'miou': mean}; NaN for a class never labelled, or absent from truth and
        prediction."""
        union = (self.true_positive + self.false_positive + self.false_negative).double()
        iou = torch.where(union > 0, self.true_positive.double() / union.clamp(min=1), float("nan")).numpy()
        return {"per_class_iou": iou.tolist(),
                "miou": float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")}
