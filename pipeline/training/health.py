"""Whether a training learned anything: the checks that keep a broken model out of the reports and the registry.

A loss or val score that is not finite, or a train loss a hundred times what a uniform guess scores (ln C for C
classes), stops the training as diverged: its weights are lost (train.lr=100 on the synthetic set gave epoch losses
of 2423, then 47, and a model that predicts one class). A training that ends with a best val mIoU no better than
predicting the val split's most frequent class everywhere is finished and logged like any other, but never
registered: it would otherwise become champion of a fresh store.
"""
from __future__ import annotations

import math

from pipeline.errors import UserError

EXPLODED_FACTOR = 100  # a diverged run's first epoch was ~1000x ln(C); a healthy one's stays below ln(C)
ROSE_FACTOR = 10  # an epoch's train loss this far above a uniform guess's says the step is too large
NOT_REGISTERED_TAG = "segmentation.not_registered"


class TrainingDiverged(UserError):
    """A loss or val score is not a finite number, or the train loss exploded: the weights are lost, so the training
    stops before the epoch reaches the state, the history or MLflow, and nothing is registered."""


def uniform_guess_loss(num_classes: int) -> float:
    """The cross-entropy of predicting every class with equal probability, where an untrained network starts."""
    return math.log(max(num_classes, 2))


def check_finite(epoch: int, values: dict, recipe) -> None:
    """Stop the training when a loss or score of `epoch` is NaN or infinite. The values are sums over the
    processes, the same in each, so under torchrun every process stops at the same epoch."""
    lost = {name: value for name, value in values.items() if not math.isfinite(value)}
    if not lost:
        return
    found = ", ".join(f"{name} is {value}" for name, value in lost.items())
    if any(name.endswith("loss") for name in lost):
        raise TrainingDiverged(f"training diverged in epoch {epoch} ({found}): {steadier(recipe)}")
    # finite losses: a score is NaN only when no val pixel is labelled (metrics.scores_from_confusion)
    raise TrainingDiverged(f"epoch {epoch}: {found}: no pixel of the val split is labelled (all are 255)")


def check_not_exploded(epoch: int, train_loss: float, num_classes: int, recipe) -> None:
    """Stop the training when its mean train loss is orders of magnitude above a uniform guess's."""
    limit = EXPLODED_FACTOR * uniform_guess_loss(num_classes)
    if train_loss > limit:
        raise TrainingDiverged(f"training diverged in epoch {epoch} (train_loss {train_loss:.4g}, over {limit:.3g}: "
                               f"{EXPLODED_FACTOR}x a uniform guess's over {num_classes} classes): {steadier(recipe)}")


def steadier(recipe) -> str:
    """What makes the next try steadier: a smaller step, or a cap on the gradient's norm."""
    clip = (f"lower train.grad_clip_norm (now {recipe.grad_clip_norm:g})" if recipe.grad_clip_norm
            else "set train.grad_clip_norm (e.g. 1.0)")
    return f"lower train.lr (now {recipe.lr:g}) or {clip}"


def registration_refusal(best_val_miou: float, majority_val_miou: float | None, history: list[dict], recipe,
                         num_classes: int) -> str | None:
    """Why this training's model must not be registered, or None: its best val mIoU is not above the majority-class
    predictor's on the same val split. The likely cause: a train loss that rose over the epochs, or went far above a
    uniform guess's, says the step was too large; otherwise the training was too short to learn."""
    if majority_val_miou is None or best_val_miou > majority_val_miou:
        return None
    losses = [row["train_loss"] for row in history]
    if losses[-1] > losses[0] or max(losses) > ROSE_FACTOR * uniform_guess_loss(num_classes):
        cause = f"the train loss rose: train.lr (now {recipe.lr:g}) is likely too high"
    else:
        cause = (f"it learned too little: raise train.epochs (now {recipe.epochs}) or check train.lr "
                 f"(now {recipe.lr:g})")
    return (f"not registered: best val mIoU {best_val_miou:.4f} is no better than predicting the most frequent class "
            f"everywhere ({majority_val_miou:.4f}); {cause}")
