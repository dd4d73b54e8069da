"""Issue 9, item 3: `champion` is taken only by a comparable run (same dataset, classes and val data, whole val
split), and the registered name says what the model segments. Real MLflow runs in a sqlite store, read back
through the client; the models are MLflow "external" models (no files), since only the registry is under test."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipeline.tracking.registry import CHAMPION, Measurement, register_and_promote, registered_name, settle_champion

SYNTHETIC = ["background", "disc", "square", "triangle", "star", "cross"]


def val_arrays(directory: Path, seed: int) -> Path:
    """A processed folder's val arrays; another seed stands for other val images."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    np.save(directory / "val_images.npy", rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8))
    np.save(directory / "val_masks.npy", rng.integers(0, 6, (3, 8, 8), dtype=np.uint8))
    np.save(directory / "train_images.npy", rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    return directory


def register(run_name: str, name: str, measurement: Measurement, val_miou: float) -> str:
    """One finished run with its best val mIoU and a model registered from it; returns the run id."""
    experiment = mlflow.get_experiment_by_name("segmentation").experiment_id
    with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
        mlflow.log_metric("best_val_miou", val_miou)
        model = mlflow.create_external_model(name="model")
    register_and_promote(model.model_uri, name, measurement, val_miou)
    return run.info.run_id


def champion_run(name: str) -> str:
    return mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION).run_id


@pytest.fixture
def store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # not set_experiment, whose choice would outlive the test in this process; artifacts in tmp_path, not ./mlruns
    mlflow.create_experiment("segmentation", artifact_location=(tmp_path / "artifacts").as_uri())
    yield tmp_path
    mlflow.set_tracking_uri(None)


def test_only_comparable_runs_take_the_champion(store):
    synthetic = val_arrays(store / "synthetic", seed=0)
    name = registered_name("segmentation", "synthetic", len(SYNTHETIC))
    assert name == "segmentation-synthetic-6cls"
    full = Measurement.of("synthetic", SYNTHETIC, synthetic, val_subset=None)
    first = register("first", name, full, 0.40)
    assert champion_run(name) == first

    # higher numbers that mean nothing next to 0.40: a val subset, other val images, another class list
    register("subset-val", name, Measurement.of("synthetic", SYNTHETIC, synthetic, val_subset=2), 0.95)
    other_val = val_arrays(store / "synthetic-seed1", seed=1)
    register("other-val-images", name, Measurement.of("synthetic", SYNTHETIC, other_val, val_subset=None), 0.90)
    renamed = [*SYNTHETIC[:-1], "plus"]
    register("other-classes", name, Measurement.of("synthetic", renamed, synthetic, val_subset=None), 0.85)
    assert champion_run(name) == first

    better = register("better", name, full, 0.55)
    register("worse", name, full, 0.50)
    assert champion_run(name) == better
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{name}'")
    assert len(versions) == 6 and all(v.tags["segmentation.dataset"] == "synthetic" for v in versions)


def test_a_run_on_another_dataset_gets_its_own_name_and_leaves_the_synthetic_champion_alone(store):
    synthetic_name = registered_name("segmentation", "synthetic", 6)
    synthetic = register("synthetic", synthetic_name,
                         Measurement.of("synthetic", SYNTHETIC, val_arrays(store / "s", 0), None), 0.40)
    three = ["background", "cat", "dog"]
    voc_name = registered_name("segmentation", "voc_layout", len(three))
    tiny = register("two-images", voc_name, Measurement.of("voc_layout", three, val_arrays(store / "v", 2), None), 0.99)
    assert voc_name == "segmentation-voc_layout-3cls"
    assert champion_run(synthetic_name) == synthetic and champion_run(voc_name) == tiny


def test_a_worker_that_loses_the_first_write_of_the_alias_settles_on_the_best(store):
    """Two workers set `champion` for the first time in the same instant. The store finds no alias, the other
    worker's alias lands, then this worker's insert breaks the unique key: it must re-read and settle, not fail.
    The other worker's write is made at the exact moment, from a flush hook, through a second real client."""
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModelAlias
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    name = registered_name("segmentation", "synthetic", len(SYNTHETIC))
    measurement = Measurement.of("synthetic", SYNTHETIC, val_arrays(store / "synthetic", seed=0), None)
    experiment = mlflow.get_experiment_by_name("segmentation").experiment_id
    for val_miou in ("0.4", "0.6"):  # registered, not yet promoted
        with mlflow.start_run(experiment_id=experiment):
            model = mlflow.create_external_model(name="model")
        mlflow.register_model(model.model_uri, name, tags={**measurement.tags(), "segmentation.val_miou": val_miou})
    raced = []

    def other_worker_sets_the_alias_first(session, flush_context, instances):
        if not raced and any(isinstance(row, SqlRegisteredModelAlias) for row in session.new):
            raced.append(True)
            mlflow.MlflowClient().set_registered_model_alias(name, CHAMPION, "1")  # from a view without version 2

    event.listen(Session, "before_flush", other_worker_sets_the_alias_first)
    try:
        champion = settle_champion(mlflow.MlflowClient(), name)
    finally:
        event.remove(Session, "before_flush", other_worker_sets_the_alias_first)
    assert raced
    assert str(champion.version) == str(mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION).version) == "2"
