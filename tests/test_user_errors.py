"""A mistake that is the user's to fix ends a stage with one line naming the key or file, and no traceback."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from pipeline.config import MlflowParams
from pipeline.tracking.store import TrackingStoreError, setup_experiment
from stages.lifecycle.restore_hint import RESTORE_COMMAND
from tests.synthetic_data import tiny_training
from tests.team_services import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_stage(stage: str, cwd: Path, params: str, **environment: str) -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text(params)
    env = {**without_mlflow_settings(os.environ), "PYTHONPATH": str(REPO_ROOT), **environment}
    return subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def without_mlflow_settings(environment: os._Environ) -> dict:
    """The environment less MLFLOW_*: mlflow.set_tracking_uri in this process sets MLFLOW_TRACKING_URI."""
    return {name: value for name, value in environment.items() if not name.startswith("MLFLOW_")}


@pytest.mark.slow  # starts a fresh interpreter
def test_a_missing_data_root_is_one_line_naming_the_key(tmp_path: Path):
    result = run_stage("download", tmp_path, f"data:\n  dataset: voc_layout\n  root: {tmp_path / 'nowhere'}\n")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: data.root: {tmp_path / 'nowhere'} is not a folder"]
    assert not (tmp_path / "data" / "raw" / "voc_layout").exists()


def test_an_unusable_mlflow_store_is_named(tmp_path: Path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the store's folder should be")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    with pytest.raises(TrackingStoreError, match=r"mlflow.tracking_uri: cannot use the MLflow store sqlite"):
        setup_experiment(MlflowParams(tracking_uri=uri, experiment="x"))


def test_an_unreachable_tracking_server_is_one_line_within_seconds(tmp_path: Path):
    """Without the probe MLflow's client retried a refused connection for 274 s before failing."""
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    started = time.monotonic()
    try:
        with pytest.raises(TrackingStoreError) as error:
            setup_experiment(MlflowParams(tracking_uri=uri, experiment="x"))
    finally:
        mlflow.set_tracking_uri(None)
    assert time.monotonic() - started < 30
    assert str(error.value) == (f"mlflow.tracking_uri: the MLflow server {uri} cannot be reached ([Errno 111] "
                                "Connection refused); start it, or point mlflow.tracking_uri at one that runs")


@pytest.mark.slow  # trains in a fresh interpreter
def test_a_diverged_training_is_one_line_a_failed_run_and_nothing_registered(tmp_path: Path):
    params = tiny_training(tmp_path)
    params["train"]["lr"] = 10.0  # the largest train.lr takes
    result = run_stage("train", tmp_path, yaml.safe_dump(params))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    # NaN, or a train loss far above a uniform guess's (training/health.py), whichever comes first on this CPU
    assert re.fullmatch(r"error: training diverged in epoch 1 \((train|val)_loss (is nan|[0-9.e+]+, over)[^)]*\): "
                        r"lower train\.lr "
                        r"\(now 10\) or set train\.grad_clip_norm \(e\.g\. 1\.0\)", line), line
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FAILED"
    # the diverged epoch never reached MLflow (the machine's CPU use may have)
    assert [name for name in run.data.metrics if not name.startswith("system/")] == []
    assert client.search_registered_models() == [] and client.search_model_versions() == []
    assert not any((tmp_path / name).exists() for name in ("reports/train/metrics.json", "reports/train/history.csv",
                                                           "models/model.pt", "models/train_state.pt"))


@pytest.mark.slow  # starts a fresh interpreter
@pytest.mark.parametrize("section, key, value, message", [
    ("train", "class_weights", [1.0, 2.0],
     "error: train.class_weights: 2 values for the 6 classes of data/processed/synthetic (['background', 'disc', "
     "'square', 'triangle', 'star', 'cross']); give one weight per class, in that order, or balanced"),
    ("models", "unet", {"base_channels": 4, "depth": 7},
     "error in params.yaml: models.unet.depth: 7 halves the input 7 times, so a side needs at least 128 pixels, but "
     "data.image_size gives 64; use a depth of at most 6"),
])
def test_params_that_cannot_fit_the_data_are_one_line_before_any_run(tmp_path: Path, section, key, value, message):
    params = tiny_training(tmp_path)
    params[section][key] = value
    result = run_stage("train", tmp_path, yaml.safe_dump(params))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "mlflow.db").exists()  # no store opened, so no run left FAILED


@pytest.mark.slow  # starts fresh interpreters
def test_a_failed_workspace_experiment_ends_with_the_restore_command_and_a_copy_does_not(tmp_path: Path):
    """DVC sets DVC_EXP_NAME in every experiment; a workspace one runs at DVC_ROOT, --temp and queued ones in a
    copy DVC deletes."""
    params = "train:\n  lr: fast\n"
    workspace = run_stage("weights", tmp_path, params, DVC_EXP_NAME="lr-1", DVC_ROOT=str(tmp_path))
    copy = run_stage("weights", tmp_path, params, DVC_EXP_NAME="lr-1", DVC_ROOT=str(tmp_path / "elsewhere"))
    error = "error in params.yaml: train.lr: expected a float in (0, 10] or auto, got 'fast'"
    assert copy.returncode == 1 and copy.stderr.strip().splitlines() == [error]
    assert workspace.returncode == 1 and workspace.stderr.strip().splitlines()[0] == error
    assert workspace.stderr.strip().splitlines()[-1].endswith(f"last commit: {RESTORE_COMMAND}")
