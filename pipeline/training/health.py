"""Whether a training learned anything: the checks that keep a broken model out of the reports and the registry.

A loss or val score that is not finite, or a train loss ten times what a uniform guess scores (ln C for C classes),
stops the training as diverged: its weights are lost (train.lr=10 on the synthetic set gave an epoch loss of 25 and
a model that predicts one class everywhere). A training that ends with a best val mIoU no better than
predicting the val split's most frequent class everywhere is finished and logged like any other, but never
registered (it must beat that predictor by a margin): it would otherwise become champion of a fresh store.
"""
from __future__ import annotations

import math

from pipeline.errors import UserError

# An epoch's mean train loss this many times a uniform guess's (ln C) is a diverged training. Set on real data
# (default recipe, 2 epochs, fp32): healthy first epochs stay below 1x (synthetic 0.48x, MSRC-v2 0.90x), while
# train.lr=10 gave 14x on synthetic and 22x on MSRC-v2, and lr=100 1800x (a model predicting one class)
EXPLODED_FACTOR = 10
# How far a registered model's best val mIoU must be above the majority-class predictor's: one that predicts that
# class almost everywhere lands a hair above it (MSRC-v2, train.lr=10: 0.0084 against 0.0084), while healthy short
# runs are far above (2 epochs: MSRC-v2 0.084 against 0.0084, synthetic 0.57 against 0.14, the tests' tiny
# project 0.24 against 0.14)
MAJORITY_MARGIN = 1.1
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
    predictor's on the same val split. The likely cause: a train loss that rose over the epochs says the step was too
    large; otherwise the training was too short to learn."""
    if majority_val_miou is None or best_val_miou > MAJORITY_MARGIN * majority_val_miou:
        return None
    losses = [row["train_loss"] for row in history]
    if losses[-1] > losses[0]:
        cause = f"the train loss rose: train.lr (now {recipe.lr:g}) is likely too high"
    else:
        cause = (f"it learned too little: raise train.epochs (now {recipe.epochs}) or check train.lr "
                 f"(now {recipe.lr:g})")
    return (f"not registered: best val mIoU {best_val_miou:.4f} is no better than predicting the most frequent class "
            f"everywhere ({majority_val_miou:.4f}, and {MAJORITY_MARGIN:g}x that is needed); {cause}")
