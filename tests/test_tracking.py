"""What a run logs to MLflow: the active params only, no credentials, and the data as a run input."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipeline.config import Params, active, flatten, parse
from pipeline.secrets import redact
from pipeline.tracking.run import data_digest, log_dataset, log_run_params, sweep_of


@pytest.mark.parametrize("value, expected", [
    ("https://alice:s3cret@mirror.example.org/VOC.tar", "https://***@mirror.example.org/VOC.tar"),
    ("https://host/file.zip?token=abc123&part=1", "https://host/file.zip?token=***&part=1"),
    ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("http://host/plain.tar", "http://host/plain.tar"),
    (0.001, 0.001),
])
def test_credentials_are_redacted(value, expected):
    assert redact(value) == expected


def test_only_the_chosen_model_and_dataset_blocks_are_active():
    params = parse(Params, {"model": "resnet34_unet", "data": {"dataset": "voc2012"}}, "")
    flat = flatten(active(params))
    assert "models.resnet34_unet.encoder_weights" in flat and "data.voc2012.urls" in flat
    assert not any(key.startswith(("models.unet.", "models.smp.", "data.ade20k.", "data.synthetic."))
                   for key in flat)
    assert {"train.lr", "augment.hflip", "data.image_size", "mlflow.experiment"} <= set(flat)


def test_params_and_dataset_input_read_back_through_the_client(tmp_path: Path):
    processed = tmp_path / "processed"
    processed.mkdir()
    np.save(processed / "train_images.npy", np.zeros((2, 4, 4, 3), dtype=np.uint8))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = parse(Params, {"data": {"dataset": "voc2012", "voc2012": {"urls": ["https://u:p@h/x.tar"]}}}, "")
    with mlflow.start_run() as run:
        log_run_params(flatten(active(params)), {"precision": "fp32", "num_threads": 2})
        log_dataset("voc2012", "https://u:p@h/x.tar", data_digest(processed))
    logged = mlflow.MlflowClient().get_run(run.info.run_id)
    assert logged.data.params["data.voc2012.urls"] == "['https://***@h/x.tar']"
    assert logged.data.params["precision"] == "fp32" and "models.smp.encoder" not in logged.data.params
    (dataset_input,) = logged.inputs.dataset_inputs
    assert dataset_input.dataset.name == "voc2012" and len(dataset_input.dataset.digest) == 16
    assert "u:p" not in dataset_input.dataset.source


def test_two_runs_logging_the_same_new_data_at_once_both_record_it(tmp_path: Path):
    """Parallel queue workers log the same processed data first in the same instant: the store finds no such
    dataset for either, the other worker's insert lands, then this one breaks the unique key. The other
    worker's write is made at that moment, from a flush hook, through a second real client."""
    from mlflow.entities import Dataset, DatasetInput
    from mlflow.store.tracking.dbmodels.models import SqlDataset
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    processed = tmp_path / "processed"
    processed.mkdir()
    np.save(processed / "train_images.npy", np.zeros((2, 4, 4, 3), dtype=np.uint8))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("race")
    other_run = mlflow.MlflowClient().create_run(experiment).info.run_id
    raced = []

    def other_worker_logs_the_data_first(session, flush_context, instances):
        new = [row for row in session.new if isinstance(row, SqlDataset)]
        if new and not raced:
            raced.append(True)
            entity = Dataset(name=new[0].name, digest=new[0].digest, source_type="local", source="{}")
            mlflow.MlflowClient().log_inputs(other_run, [DatasetInput(entity)])

    event.listen(Session, "before_flush", other_worker_logs_the_data_first)
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            log_dataset("synthetic", str(processed), data_digest(processed))
    finally:
        event.remove(Session, "before_flush", other_worker_logs_the_data_first)
    assert raced
    client = mlflow.MlflowClient()
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    ((mine,), (theirs,)) = (client.get_run(r).inputs.dataset_inputs for r in (run.info.run_id, other_run))
    assert mine.dataset.digest == theirs.dataset.digest


@pytest.mark.parametrize("exp_name, sweep", [("lr-1", "lr"), ("lr-12", "lr"), ("seed-sweep-2-3", "seed-sweep-2"),
                                              ("bally-dace", None), ("lr", None), (None, None)])
def test_the_sweep_is_the_name_dvc_numbers_a_grid_under(exp_name, sweep):
    """`dvc exp run --queue -n NAME -S 'k=a,b'` names its runs NAME-1, NAME-2; DVC's random names have no number."""
    assert sweep_of(exp_name) == sweep
