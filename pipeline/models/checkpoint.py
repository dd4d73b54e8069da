"""Save and load trained models as plain state dicts plus what is needed to rebuild them.

A checkpoint holds tensors and plain types only and is read with `weights_only=True`: loading a file
someone sent you cannot run code. `load_model` is the one place that turns "a checkpoint file or an
MLflow model URI" into a model, for predict and for fine-tuning alike.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from pipeline.atomic import atomic_path
from pipeline.models.registry import build_model, rebuild_params
from pipeline.models.segmenter import SegmentationModel
from pipeline.errors import UserError

REQUIRED_KEYS = ("architecture", "model_params", "class_names", "state_dict", "image_size")


class CheckpointError(UserError, ValueError):
    """A file or URI given as a model that is not one of this project's models."""


def save_checkpoint(path: Path, model: SegmentationModel, architecture: str, model_params: dict, **extra) -> None:
    """Atomically write the weights with the architecture name, its params, the class names and image size."""
    payload = {"architecture": architecture, "model_params": model_params, "class_names": model.class_names,
               "image_size": model.image_size, "state_dict": model.state_dict(), **extra}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint there (run the train stage first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(f"{path}: not a checkpoint of this project (it holds more than weights and plain "
                         f"values, or is damaged); nothing in it was run") from error
    missing = [key for key in REQUIRED_KEYS if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    return payload


def load_checkpoint(path: Path) -> SegmentationModel:
    """The model stored at `path`, in eval mode on the CPU."""
    payload = read_checkpoint(path)
    architecture = payload["architecture"]
    model = build_model(architecture, payload["class_names"], rebuild_params(architecture, payload["model_params"]),
                        payload["image_size"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def load_model(source: str) -> SegmentationModel:
    """A checkpoint if `source` is an existing file, otherwise an MLflow model URI (`runs:/<id>/model`,
    `models:/<name>@champion`) in the store MLflow is pointed at; eval mode, CPU."""
    if Path(source).is_file():
        return load_checkpoint(Path(source))
    import mlflow.pytorch  # slow to import: only when needed

    try:
        model = mlflow.pytorch.load_model(source, map_location="cpu")
    except Exception as error:  # MLflow raises several unrelated types for a bad URI
        raise CheckpointError(f"{source}: neither a checkpoint file nor a loadable MLflow model URI ({error})") from error
    if not isinstance(model, SegmentationModel):
        raise CheckpointError(f"{source}: the MLflow model is not a SegmentationModel of this project")
    return model.eval()
