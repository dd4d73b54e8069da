"""A tiny U-Net saved as a checkpoint and logged by the project's own `log_model` into a fresh sqlite
MLflow store, registered under a name with the alias champion: the model every MLflow-loading test uses."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient

from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.registry import build_model
from pipeline.tracking.logged_model import log_model

CLASSES = ["background", "circle", "square"]
UNET_PARAMS = {"base_channels": 4, "depth": 2, "bilinear": True, "dropout": 0.0}
TRAINED_SIZE = 64  # the image size stored with the model, which predict uses unless told otherwise


@dataclass(frozen=True)
class LoggedModel:
    checkpoint: Path
    tracking_uri: str
    registered: str      # models:/<name>@champion
    run_model: str       # runs:/<run id>/model
    folder: Path         # where the store keeps the logged model's files (to tamper with)


def log_tiny_model(root: Path, name: str) -> LoggedModel:
    """Leaves MLflow pointed at the new store (an earlier set_tracking_uri in a process wins over the environment)."""
    torch.manual_seed(0)
    model = build_model("unet", CLASSES, UNET_PARAMS, TRAINED_SIZE).eval()
    checkpoint = root / "model.pt"
    save_checkpoint(checkpoint, model, "unet", UNET_PARAMS)
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment(name, artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        info = log_model(checkpoint)
    version = mlflow.register_model(info.model_uri, name)
    MlflowClient().set_registered_model_alias(name, "champion", version.version)
    folder = Path(mlflow.get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    return LoggedModel(checkpoint, tracking_uri, f"models:/{name}@champion", f"runs:/{run.info.run_id}/model", folder)
