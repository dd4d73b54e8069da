"""Metrics against a confusion matrix worked out by hand.

Four classes; truth and prediction over 10 pixels, two of them ignored (255):

    truth       0 0 0 1 1 1 255 255 0 1
    prediction  0 0 1 1 1 0   3   1 3 1

Counted pixels (truth, prediction): (0,0) x2, (0,1), (0,3), (1,1) x3, (1,0). So, rows = truth:

    [[2, 1, 0, 1],
     [1, 3, 0, 0],
     [0, 0, 0, 0],      class 2: absent from truth and prediction -> no IoU, not in the means
     [0, 0, 0, 0]]      class 3: only predicted (once; its other prediction is on an ignored pixel)

true positives [2, 3, 0, 0], truth totals [4, 4, 0, 0], predicted totals [3, 4, 0, 1]
IoU  = TP / (truth + predicted - TP) = [2/5, 3/5, nan, 0/1]  -> mIoU = (0.4 + 0.6 + 0) / 3 = 1/3
Dice = 2 TP / (truth + predicted)    = [4/7, 6/8, nan, 0/1]
pixel accuracy = 5/8; class accuracy = [2/4, 3/4, nan, nan] -> mean 0.625
fw_iou = 4/8 * 0.4 + 4/8 * 0.6 = 0.5
"""
import math

import numpy as np
import pytest
import torch

from pipeline.scoring.metrics import SegmentationMetrics, scores_from_confusion

torch.set_num_threads(1)

TRUTH = torch.tensor([[0, 0, 0, 1, 1], [1, 255, 255, 0, 1]], dtype=torch.uint8)
PREDICTION = torch.tensor([[0, 0, 1, 1, 1], [0, 3, 1, 3, 1]], dtype=torch.uint8)
EXPECTED_CONFUSION = np.array([[2, 1, 0, 1],
                               [1, 3, 0, 0],
                               [0, 0, 0, 0],
                               [0, 0, 0, 0]])


def assert_equal_with_nan(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want), (actual, expected)


def test_confusion_matrix_counts_by_hand_and_skips_ignored_pixels():
    metrics = SegmentationMetrics(num_classes=4)
    metrics.update(PREDICTION, TRUTH)
    np.testing.assert_array_equal(metrics.confusion_matrix(), EXPECTED_CONFUSION)


def test_scores_match_hand_computation():
    scores = scores_from_confusion(EXPECTED_CONFUSION)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 8)
    assert scores["mean_accuracy"] == pytest.approx(0.625)
    assert scores["miou"] == pytest.approx(1 / 3)
    assert scores["fw_iou"] == pytest.approx(0.5)
    assert_equal_with_nan(scores["per_class_iou"], [0.4, 0.6, float("nan"), 0.0])
    assert_equal_with_nan(scores["per_class_dice"], [4 / 7, 0.75, float("nan"), 0.0])


def test_batches_accumulate_into_one_dataset_level_matrix():
    """mIoU is dataset-level: updating pixel by pixel must give the same matrix as one update."""
    metrics = SegmentationMetrics(num_classes=4)
    for prediction, truth in zip(PREDICTION.flatten(), TRUTH.flatten()):
        metrics.update(prediction.view(1, 1), truth.view(1, 1))
    np.testing.assert_array_equal(metrics.confusion_matrix(), EXPECTED_CONFUSION)
    assert metrics.compute()["miou"] == pytest.approx(1 / 3)
    metrics.reset()
    metrics.update(TRUTH.clone().masked_fill(TRUTH == 255, 0), TRUTH.clone().masked_fill(TRUTH == 255, 0))
    assert metrics.compute()["miou"] == pytest.approx(1.0)


def test_nothing_counted_gives_nan_not_a_crash():
    scores = scores_from_confusion(np.zeros((3, 3), dtype=np.int64))
    assert math.isnan(scores["pixel_accuracy"]) and math.isnan(scores["miou"]) and math.isnan(scores["mean_accuracy"])
    assert all(math.isnan(value) for value in scores["per_class_iou"])


def test_a_class_outside_the_range_is_refused_not_counted_elsewhere():
    metrics = SegmentationMetrics(num_classes=4)
    with pytest.raises(ValueError, match=r"targets hold classes outside 0..3"):
        metrics.update(PREDICTION, TRUTH.masked_fill(TRUTH == 255, 7))
    np.testing.assert_array_equal(metrics.confusion_matrix(), np.zeros((4, 4)))
