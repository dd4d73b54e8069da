"""What a run logs to MLflow: the active params only, no credentials, and the data as a run input."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipeline import tracking
from pipeline.config import Params, active, flatten, parse


@pytest.mark.parametrize("value, expected", [
    ("https://alice:s3cret@mirror.example.org/VOC.tar", "https://***@mirror.example.org/VOC.tar"),
    ("https://host/file.zip?token=abc123&part=1", "https://host/file.zip?token=***&part=1"),
    ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("http://host/plain.tar", "http://host/plain.tar"),
    (0.001, 0.001),
])
def test_credentials_are_redacted(value, expected):
    assert tracking.redact(value) == expected


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
        tracking.log_run_params(flatten(active(params)), {"precision": "fp32", "num_threads": 2})
        tracking.log_dataset(processed, "voc2012", "https://u:p@h/x.tar")
    logged = mlflow.MlflowClient().get_run(run.info.run_id)
    assert logged.data.params["data.voc2012.urls"] == "['https://***@h/x.tar']"
    assert logged.data.params["precision"] == "fp32" and "models.smp.encoder" not in logged.data.params
    (dataset_input,) = logged.inputs.dataset_inputs
    assert dataset_input.dataset.name == "voc2012" and len(dataset_input.dataset.digest) == 16
    assert "u:p" not in dataset_input.dataset.source
