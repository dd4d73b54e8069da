"""The recipe benchmark's arithmetic over seeds and its time budget: the budget cuts the table where an epoch
ends too late, and `train(..., time_budget=...)` really stops the loop, finishing the run as usual."""
from __future__ import annotations

import json
import math
import statistics

import pandas as pd
import pytest

from benchmarks.recipe import load_results, summarize
from pipeline.config import Params, parse
from pipeline.paths import TrainOutputs
from pipeline.training.train import train
from tests.synthetic_data import processed_synthetic


def rows(*epochs: tuple[float, float]) -> list[dict]:
    """Epoch rows from (val_miou, seconds) pairs."""
    return [{"epoch": epoch, "val_miou": miou, "seconds": seconds} for epoch, (miou, seconds) in enumerate(epochs, 1)]


RESULTS = {
    "reference": {1: rows((0.10, 40), (0.20, 90)), 2: rows((0.12, 45), (0.16, 95))},
    "unet": {1: rows((0.20, 30), (0.30, 60), (0.90, 101)),  # its third epoch ends after the budget of 100 s
             2: rows((0.25, 35), (0.27, 70), (0.95, 105)),
             3: rows((0.22, 32), (0.32, 64), (0.99, 130))},
    "resnet34_unet": {1: rows((0.40, 120))},                 # no epoch within the budget
}


def test_summary_is_over_seeds_and_counts_only_epochs_within_the_budget():
    summaries = summarize(RESULTS, budget=100)
    unet = summaries["unet"]
    assert (unet.runs, unet.scored) == (3, 3)
    assert unet.mean == pytest.approx((0.30 + 0.27 + 0.32) / 3)
    assert unet.std == pytest.approx(statistics.stdev([0.30, 0.27, 0.32]))
    assert unet.std > statistics.pstdev([0.30, 0.27, 0.32])  # the sample std (n - 1), not the population's
    assert unet.seconds == pytest.approx((60 + 70 + 64) / 3)
    reference = summaries["reference"]
    assert (reference.mean, reference.std, reference.seconds) == pytest.approx((0.18, math.sqrt(2) * 0.02, 92.5))
    resnet = summaries["resnet34_unet"]
    assert (resnet.runs, resnet.scored) == (1, 0) and math.isnan(resnet.mean)


def test_without_a_budget_every_epoch_counts_and_one_seed_has_no_spread():
    summaries = summarize(RESULTS, budget=None)
    assert summaries["unet"].mean == pytest.approx((0.90 + 0.95 + 0.99) / 3)
    assert (summaries["resnet34_unet"].mean, summaries["resnet34_unet"].std) == (0.40, 0.0)


def test_results_keep_every_seed_and_refuse_the_format_without_seeds(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(RESULTS))
    assert load_results(path) == RESULTS
    assert load_results(tmp_path / "absent.json") == {}
    path.write_text(json.dumps({"reference": rows((0.1, 40))}))
    with pytest.raises(SystemExit, match="without seeds|no seed"):
        load_results(path)


@pytest.mark.slow  # trains, for a few seconds
def test_a_spent_time_budget_ends_training_after_its_first_epoch_as_a_finished_run(tmp_path):
    processed = processed_synthetic(tmp_path / "data", num_train=4, num_val=2, seed=2)
    params = parse(Params, {"data": {"image_size": 64}, "models": {"unet": {"base_channels": 4, "depth": 2}},
                            "train": {"epochs": 3, "batch_size": 4, "precision": "fp32", "num_threads": 1},
                            "augment": {"crop_size": 0, "crops_per_image": 1},
                            "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "tests"}},
                   "")
    outputs = TrainOutputs.under(tmp_path)
    best = train(params, processed, outputs, time_budget=0)
    assert list(pd.read_csv(outputs.history)["epoch"]) == [1]
    assert best["best_epoch"] == 1 and outputs.model.exists()
