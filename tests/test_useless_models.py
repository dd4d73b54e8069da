"""A model that learned nothing never reaches the registry: a training whose loss explodes stops as diverged, one that
ends no better than the majority-class predictor is logged, tagged and not registered; healthy short runs still are
registered, on fully and on partially labelled data (real trainings on generated data, read back from MLflow)."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from pipeline.config import ConfigError, Params, parse
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources.single_class import read_single_class
from pipeline.paths import TrainOutputs
from pipeline.scoring.metrics import majority_class_miou
from pipeline.training.health import NOT_REGISTERED_TAG, TrainingDiverged, check_not_exploded, registration_refusal
from pipeline.training.train import train
from tests.synthetic_data import processed_synthetic, write_single_class_root

pytestmark = pytest.mark.slow  # trains models


def params(tmp_path: Path, lr: float, epochs: int) -> Params:
    """The test projects' small recipe (tests/project_repo.py TINY), one thread."""
    return parse(Params, {
        "data": {"image_size": 64}, "models": {"unet": {"base_channels": 8, "depth": 3}},
        "train": {"epochs": epochs, "batch_size": 4, "lr": lr, "num_threads": 1},
        "augment": {"crop_size": 0, "crops_per_image": 1},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "health", "log_onnx": False},
    }, "")


def outputs(folder: Path) -> TrainOutputs:
    return TrainOutputs(model=folder / "model.pt", state=folder / "state.pt", history=folder / "history.csv",
                        metrics=folder / "metrics.json", resolved=folder / "resolved.json",
                        progress=folder / "progress.npz")


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    return processed_synthetic(tmp_path_factory.mktemp("synthetic"), num_train=48, num_val=6, seed=1)


def only_run(tmp_path: Path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("health").experiment_id])
    return client, run


@pytest.mark.parametrize("lr", [100.0, 1000.0])
def test_a_step_past_the_bound_is_refused_before_any_training(tmp_path, lr):
    with pytest.raises(ConfigError, match=r"^train\.lr: expected a float in \(0, 10\] or auto"):
        params(tmp_path, lr, epochs=2)


@pytest.mark.parametrize("lr", [3.0, 10.0])
def test_a_far_too_large_step_is_never_registered(processed, tmp_path, lr):
    try:
        train(params(tmp_path, lr, epochs=2), processed, outputs(tmp_path))
    except TrainingDiverged as error:  # exploded or NaN: the run is FAILED, nothing is written
        assert "lower train.lr" in str(error)
        client, run = only_run(tmp_path)
        assert run.info.status == "FAILED"
    else:  # finished: logged, tagged with the reason, not registered
        client, run = only_run(tmp_path)
        assert run.data.tags[NOT_REGISTERED_TAG].startswith("not registered: best val mIoU")
        assert run.data.metrics["best_val_miou"] <= 1.1 * run.data.metrics["val_miou_majority_class"]
    assert client.search_model_versions() == [] and client.search_registered_models() == []


def test_a_healthy_short_run_is_registered_with_its_baseline_logged(processed, tmp_path):
    best = train(params(tmp_path, 0.01, epochs=2), processed, outputs(tmp_path))
    client, run = only_run(tmp_path)
    assert NOT_REGISTERED_TAG not in run.data.tags
    assert best["val_miou"] > 1.1 * run.data.metrics["val_miou_majority_class"] > 0
    (version,) = client.search_model_versions()
    assert version.run_id == run.info.run_id


def test_a_healthy_short_run_on_single_class_sets_with_the_marginal_loss_is_registered(tmp_path):
    raw = tmp_path / "synthetic"
    processed_synthetic(raw, num_train=48, num_val=6, seed=1)
    write_single_class_root(tmp_path / "root", raw / "raw")
    write_interim(read_single_class(tmp_path / "root", val_fraction=0.3, seed=0), tmp_path / "interim")
    preprocess(tmp_path / "interim", tmp_path / "processed", 64)
    best = train(params(tmp_path, 0.01, epochs=4), tmp_path / "processed", outputs(tmp_path / "out"))
    client, run = only_run(tmp_path)
    majority = run.data.metrics["val_miou_majority_class"]
    assert best["val_miou"] > 1.1 * majority, json.dumps({**best, "majority": majority})
    assert [version.run_id for version in client.search_model_versions()] == [run.info.run_id]


def test_the_majority_baseline_is_the_most_frequent_class_share_over_the_classes_present():
    confusion = [[60, 10, 0], [20, 10, 0], [0, 0, 0]]  # rows: true background 70, thing 30, absent 0
    assert majority_class_miou(confusion) == pytest.approx(0.7 / 2)


def test_the_refusal_names_the_likely_cause():
    recipe = params(Path("/tmp"), 3.0, epochs=3).train
    rose = registration_refusal(0.1, 0.2, [{"train_loss": 4.0}, {"train_loss": 6.0}], recipe, 6)
    assert rose.endswith("train.lr (now 3) is likely too high")
    short = registration_refusal(0.1, 0.2, [{"train_loss": 1.6}, {"train_loss": 1.2}], recipe, 6)
    assert "raise train.epochs (now 3)" in short
    assert registration_refusal(0.3, 0.2, [{"train_loss": 1.6}], recipe, 6) is None
    assert registration_refusal(0.21, 0.2, [{"train_loss": 1.6}], recipe, 6) is not None  # a hair above: one class
    with pytest.raises(TrainingDiverged, match=r"train_loss 25.45, over 17.9"):
        check_not_exploded(1, 25.45, 6, recipe)
    check_not_exploded(1, 2.8, 23, recipe)  # a healthy first epoch on MSRC-v2
