"""Dataset-level segmentation metrics from one confusion matrix accumulated over the whole split.

Pixels labelled 255 count nowhere. A class absent from both truth and prediction has no IoU (NaN)
and is left out of the means, as in the VOC and ADE20K protocols. These are counters only: the loop
that runs the model is loader.py (mmsegmentation's process/compute split).

For partially labelled data (single-class sets combined) class c is scored only on images labelled
for c, and a prediction of an unlabelled class counts as background there (PartialLabelIoU).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pipeline.data.labels import BACKGROUND, IGNORE_INDEX, merged_background
from pipeline.models.inference import class_indices


class SegmentationMetrics:
    """Accumulate a confusion matrix batch by batch; compute every score once at the end."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64)

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """predictions and targets: integer class maps of the same shape. One bincount of true * C + predicted
        over the labelled pixels, as mmsegmentation's IoUMetric counts areas (torchmetrics' confusion matrix
        does the same, but importing torchmetrics costs every stage 3 s: it imports torchvision's models)."""
        predictions, targets = predictions.flatten().cpu().long(), targets.flatten().cpu().long()
        labelled = targets != self.ignore_index
        predictions, targets = predictions[labelled], targets[labelled]
        for name, values in (("targets", targets), ("predictions", predictions)):
            if len(values) and not 0 <= int(values.min()) <= int(values.max()) < self.num_classes:
                raise ValueError(f"{name} hold classes outside 0..{self.num_classes - 1} "
                                 f"(and {self.ignore_index} in targets): {sorted(set(values.unique().tolist()))[:10]}")
        self.confusion += torch.bincount(targets * self.num_classes + predictions,
                                         minlength=self.num_classes * self.num_classes)

    def reset(self) -> None:
        self.confusion.zero_()

    def confusion_matrix(self) -> np.ndarray:
        """Rows are the true class, columns the predicted class, entries pixel counts."""
        return self.confusion.reshape(self.num_classes, self.num_classes).numpy().astype(np.int64)

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


def majority_class_miou(confusion: np.ndarray) -> float:
    """The mIoU of predicting the split's most frequent true class everywhere, from the split's confusion matrix (its
    rows count each class's true pixels): that class scores its pixel share, every other class present scores 0.
    A model that does not beat it has learned nothing about the image."""
    truth = np.asarray(confusion, dtype=np.float64).sum(axis=1)
    present = int((truth > 0).sum())
    return float(truth.max() / truth.sum() / present) if present else float("nan")


def as_labelled(prediction: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Predictions of a class an image is not labelled for count as background there: that image's
    background pixels only say "none of my labelled classes" (the marginal rule)."""
    unlabelled = merged_background(labelled.to(prediction.device)).gather(1, prediction.flatten(1))
    return prediction.masked_fill(unlabelled.view_as(prediction), BACKGROUND)


class PartialLabelIoU(SegmentationMetrics):
    """The confusion matrix of partially labelled data: class c is scored only on images labelled for c.

    Truth c occurs only in images labelled for c, and predictions of c elsewhere are read as background,
    so every score from this matrix (IoU, accuracy, Dice, fwIoU) follows the partial-label rule; with
    every image fully labelled it is the ordinary dataset-level confusion matrix.
    """

    def update(self, pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> None:
        """pred, target (B, H, W) class indices; labelled (B, C) bool."""
        super().update(as_labelled(pred, labelled), target)


class SplitScores:
    """Loss and confusion-matrix scores accumulated over a split.

    `loss_fn(log_probabilities, target, labelled)`: training passes its own loss so `val_loss` and `train_loss`
    are one loss, evaluate cross-entropy (the marginal one for partially labelled data). Log-probabilities are
    valid logits, so any softmax-based loss gives the same value on them.
    """

    def __init__(self, num_classes: int, partial: bool, loss_fn: Callable):
        self.metrics = PartialLabelIoU(num_classes) if partial else SegmentationMetrics(num_classes)
        self.partial = partial
        self.loss_fn = loss_fn
        self.loss_sum, self.pixels = 0.0, 0

    def update(self, log_probabilities: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> None:
        """log_probabilities (B, C, H, W), target (B, H, W), labelled (B, C) bool."""
        valid = int((target != IGNORE_INDEX).sum())
        if valid:
            self.loss_sum += float(self.loss_fn(log_probabilities, target, labelled)) * valid
            self.pixels += valid
        prediction = class_indices(log_probabilities)
        if self.partial:
            self.metrics.update(prediction, target, labelled)
        else:
            self.metrics.update(prediction, target)

    def compute(self, total: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict:
        """The scores; `total` sums counts over the processes that each scored a shard of the split
        (distributed validation), so they are the whole split's scores."""
        confusion = torch.from_numpy(self.metrics.confusion_matrix())
        loss = torch.tensor([self.loss_sum, self.pixels], dtype=torch.float64)
        if total is not None:
            confusion, loss = total(confusion), total(loss)
        confusion = confusion.numpy()
        return {**scores_from_confusion(confusion), "confusion_matrix": confusion,
                "loss": float(loss[0] / max(loss[1], 1))}
