"""The marginal loss and the partial-label IoU on hand-built cases whose answers are known."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.scoring.metrics import PartialLabelIoU, SegmentationMetrics
from pipeline.training.losses import MarginalCrossEntropy

marginal_cross_entropy = MarginalCrossEntropy()

torch.set_num_threads(1)
BACKGROUND, A, B = 0, 1, 2


def random_case(seed: int, batch: int = 3, classes: int = 4, size: int = 6):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, size, size, generator=generator)
    target = torch.randint(0, classes, (batch, size, size), generator=generator)
    target[torch.rand(batch, size, size, generator=generator) < 0.2] = 255
    return logits, target


@pytest.mark.parametrize("seed", range(3))
def test_fully_labelled_marginal_loss_is_exactly_cross_entropy(seed: int):
    logits, target = random_case(seed)
    logits.requires_grad_(True)
    loss = marginal_cross_entropy(logits, target, torch.ones(3, 4, dtype=torch.bool))
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.equal(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad)


def test_background_pixel_sums_background_and_unlabelled_classes():
    logits = torch.tensor([1.0, 0.5, 2.0, -1.0]).view(1, 4, 1, 1)
    labelled = torch.tensor([[True, True, False, False]])  # background and A; B and class 3 unknown
    probs = logits.flatten().softmax(0)
    loss = marginal_cross_entropy(logits, torch.zeros(1, 1, 1, dtype=torch.long), labelled)
    assert loss.item() == pytest.approx(-math.log(probs[0] + probs[2] + probs[3]), rel=1e-6)
    loss = marginal_cross_entropy(logits, torch.full((1, 1, 1), A), labelled)  # a labelled class: plain CE
    assert loss.item() == pytest.approx(-math.log(probs[1]), rel=1e-6)


def test_predicting_an_unlabelled_class_on_background_costs_nothing_extra():
    """A confident B on a pixel that is only known to be 'not A' is not penalised; a confident A is."""
    target, labelled = torch.zeros(1, 1, 1, dtype=torch.long), torch.tensor([[True, True, False]])
    says_b = torch.tensor([0.0, 0.0, 8.0]).view(1, 3, 1, 1)
    says_a = torch.tensor([0.0, 8.0, 0.0]).view(1, 3, 1, 1)
    assert marginal_cross_entropy(says_b, target, labelled) < 0.01
    assert marginal_cross_entropy(says_a, target, labelled) > 7
    assert F.cross_entropy(says_b, target) > 7  # what a hard background label would have charged


def test_marginal_loss_ignores_255_and_is_per_image():
    logits, target = random_case(seed=7, batch=2, classes=3)
    labelled = torch.tensor([[True, True, False], [True, True, True]])
    loss = marginal_cross_entropy(logits, target, labelled)
    valid = [(target[i] != 255).sum() for i in range(2)]
    per_image = [marginal_cross_entropy(logits[i:i + 1], target[i:i + 1], labelled[i:i + 1]) for i in range(2)]
    torch.testing.assert_close(loss, (per_image[0] * valid[0] + per_image[1] * valid[1]) / sum(valid))
    assert torch.equal(per_image[1], F.cross_entropy(logits[1:], target[1:], ignore_index=255))
    assert not torch.equal(per_image[0], F.cross_entropy(logits[:1], target[:1], ignore_index=255))


def iou_of(pred: list, target: list, labelled: list, num_classes: int = 3) -> dict:
    metric = PartialLabelIoU(num_classes)
    metric.update(torch.tensor(pred), torch.tensor(target), torch.tensor(labelled))
    return metric.compute()


def test_prediction_of_b_on_image_labelled_only_for_a_does_not_count_against_b():
    # image 0: labelled for A; the model says B on pixels known only as "not A"
    # image 1: labelled for B, predicted perfectly
    pred = [[[B, B, A, A]], [[B, B, 0, 0]]]
    target = [[[0, 0, A, A]], [[B, B, 0, 0]]]
    labelled = [[True, True, False], [True, False, True]]
    result = iou_of(pred, target, labelled)
    assert result["per_class_iou"] == [1.0, 1.0, 1.0]
    # the same prediction scored as if both images were fully labelled: B is wrong twice, background lost twice
    full = iou_of(pred, target, [[True] * 3] * 2)
    assert full["per_class_iou"] == [pytest.approx(2 / 4), 1.0, pytest.approx(2 / 4)]


def test_missing_a_on_an_a_image_counts_against_a_whatever_is_predicted():
    pred = [[[0, B, A, A]]]
    target = [[[A, A, A, A]]]
    result = iou_of(pred, target, [[True, True, False]])
    assert result["per_class_iou"][A] == pytest.approx(2 / 4)
    assert math.isnan(result["per_class_iou"][B])  # never labelled: not evaluated
    assert result["per_class_iou"][BACKGROUND] == 0.0  # predicted on two A pixels, never true
    assert result["miou"] == pytest.approx(1 / 4)


def test_counts_accumulate_over_the_split_not_per_image():
    metric = PartialLabelIoU(3)
    labelled = torch.tensor([[True, True, False]])
    metric.update(torch.tensor([[[A, A, A, A]]]), torch.tensor([[[A, A, A, A]]]), labelled)  # 4/4
    metric.update(torch.tensor([[[0, 0, 0, A]]]), torch.tensor([[[A, A, A, A]]]), labelled)  # 1/4
    assert metric.compute()["per_class_iou"][A] == pytest.approx(5 / 8)  # not the mean of 1 and 1/4
    metric.reset()
    assert all(math.isnan(v) for v in metric.compute()["per_class_iou"])


def test_fully_labelled_equals_dataset_level_iou():
    logits, target = random_case(seed=3, batch=4, classes=5, size=8)
    pred = logits.argmax(1)
    partial, full = PartialLabelIoU(5), SegmentationMetrics(5)
    partial.update(pred, target, torch.ones(4, 5, dtype=torch.bool))
    full.update(pred, target)
    expected = full.compute()
    np.testing.assert_allclose(partial.compute()["per_class_iou"], expected["per_class_iou"])
    assert partial.compute()["miou"] == pytest.approx(expected["miou"])
