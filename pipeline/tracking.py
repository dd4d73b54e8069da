"""MLflow: one store in the repository root, whichever copy of the repo DVC runs a stage in.

DVC runs `--temp` and queued experiments in a copy under `.dvc/tmp/exps/` that it deletes
afterwards, so a relative sqlite path would silently lose those runs. Relative paths are resolved
against `DVC_ROOT` (the real repository root) and the experiment is created once, under a file
lock, with an explicit artifact location there too.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
from filelock import FileLock
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

SQLITE_PREFIX = "sqlite:///"


def repo_root() -> Path:
    return Path(os.environ.get("DVC_ROOT", Path.cwd())).resolve()


def resolve_tracking_uri(configured: str) -> str:
    """MLFLOW_TRACKING_URI from the environment wins; a relative sqlite path is made absolute at the repo root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", configured)
    if uri.startswith(SQLITE_PREFIX):
        path = Path(uri[len(SQLITE_PREFIX):])
        if not path.is_absolute():
            uri = SQLITE_PREFIX + str(repo_root() / path)
    return uri


def setup_experiment(mlflow_params) -> str:
    """Point MLflow at the project's store and return the experiment id, creating it if needed."""
    uri = resolve_tracking_uri(mlflow_params.tracking_uri)
    mlflow.set_tracking_uri(uri)
    lock_path = Path(uri[len(SQLITE_PREFIX):] + ".lock") if uri.startswith(SQLITE_PREFIX) else repo_root() / ".mlflow.lock"
    with FileLock(lock_path):  # two workers creating a fresh database at once crash in its migration
        experiment = mlflow.get_experiment_by_name(mlflow_params.experiment)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = (repo_root() / "mlartifacts" / mlflow_params.experiment).as_uri()
        return mlflow.create_experiment(mlflow_params.experiment, artifact_location=artifacts)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=repo_root()).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_tags(dataset: str, model: str) -> dict[str, str]:
    """Tags that lead from an MLflow run back to the DVC experiment and code that made it."""
    exp_name = os.environ.get("DVC_EXP_NAME")
    tags = {"dataset": dataset, "model": model, "dvc.stage": os.environ.get("DVC_STAGE", "")}
    if exp_name:
        tags["dvc.exp_name"] = exp_name
    baseline = os.environ.get("DVC_EXP_BASELINE_REV")
    if baseline:
        tags["dvc.baseline_rev"] = baseline
    commit = git_commit()
    if commit:
        tags["git.commit"] = commit
    how_back = (f"Restore this experiment's code, params and outputs with `dvc exp apply {exp_name}`."
                if exp_name else "Made by `dvc repro` on the committed workspace (see the git.commit tag).")
    tags["mlflow.note.content"] = how_back
    return tags


def model_signature(num_classes: int) -> ModelSignature:
    """Any batch size, height and width: RGB floats in [0, 1] -> logits."""
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes, -1, -1))]))


def log_model(model, num_classes: int) -> None:
    """Log the model in pickle format (torch.export would fix the input shape to the example's)."""
    import torch
    import torchvision

    mlflow.pytorch.log_model(
        model, name="model", serialization_format="pickle", signature=model_signature(num_classes),
        code_paths=[str(Path(__file__).resolve().parent)],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                          f"torchvision=={torchvision.__version__.split('+')[0]}"],
    )


def run_name() -> str | None:
    """The DVC experiment's name, so MLflow and `dvc exp show` speak of the same thing."""
    return os.environ.get("DVC_EXP_NAME") or None


def attach_to_run(mlflow_params, run_id: str, metrics: dict[str, float], files: list[Path],
                  artifact_dir: str) -> None:
    """Add a later stage's metrics and files to the training run they describe."""
    setup_experiment(mlflow_params)
    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, value, now, 0) for name, value in metrics.items()])
    for path in files:
        client.log_artifact(run_id, str(path), artifact_dir)
