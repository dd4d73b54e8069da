"""Save and load trained models as plain state dicts plus what is needed to rebuild them.

A checkpoint holds tensors and plain types only and is read with `weights_only=True`: loading a file
someone sent you cannot run code. `load_model` is the one place that turns "a checkpoint file, an MLflow
model folder or an MLflow model URI" into a model, for predict and for fine-tuning alike; from MLflow it
reads only the safetensors weights file (portable.py), never the pickle or the code logged beside it.
"""
from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import torch

from pipeline.atomic import atomic_path
from pipeline.errors import UserError
from pipeline.models.metadata import checked_metadata, fit_problem
from pipeline.models.portable import FILE_NAME, IN_MLFLOW_MODEL, PortableModelError, read_header, read_tensors
from pipeline.models.registry import build_model, rebuild_params
from pipeline.models.segmenter import SegmentationModel
from pipeline.models.torch_files import UNREADABLE, function_called, load_tensors
from pipeline.secrets import redact

REQUIRED_KEYS = ("architecture", "model_params", "class_names", "state_dict", "image_size")
NOT_OURS = (f"a model logged by this project has {IN_MLFLOW_MODEL.as_posix()}; models in MLflow's pickle format "
            "are not loaded, since unpickling runs code")


class CheckpointError(UserError, ValueError):
    """A file or URI given as a model that is not one of this project's models."""


def save_checkpoint(path: Path, model: SegmentationModel, architecture: str, model_params: dict, **extra) -> None:
    """Atomically write the weights with the architecture name, its params, the class names and image size."""
    payload = {"architecture": architecture, "model_params": model_params, "class_names": model.class_names,
               "image_size": model.image_size, "state_dict": model.state_dict(), **extra}
    save_torch_file(payload, Path(path))


def save_torch_file(payload: dict, path: Path) -> None:
    """torch.save, atomically and reproducibly: given a file object, torch names the archive's inner folder
    `archive` instead of after the random temporary file, so equal payloads give byte-equal files (DVC md5s)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint there (run the train stage first)")
    try:
        payload = load_tensors(path)
    except UNREADABLE as error:
        called = function_called(path, error)
        content = (f"it would run {called} when loaded" if called
                   else "it holds more than weights and plain values, or is damaged")
        raise CheckpointError(f"{path}: not a checkpoint of this project ({content}); nothing in it was run") from error
    missing = [key for key in REQUIRED_KEYS if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    return payload


def load_checkpoint(path: Path) -> SegmentationModel:
    """The model stored at `path`, in eval mode on the CPU."""
    return model_from_payload(read_checkpoint(path), path)


def model_from_payload(payload: dict, source) -> SegmentationModel:
    """The network rebuilt from this project's code by architecture name, with the payload's weights; eval, CPU.
    Its metadata and the shapes of its tensors are checked first (metadata.py), so nothing is allocated for a
    network the file does not hold, and nothing is fetched."""
    architecture, state_dict = payload["architecture"], payload["state_dict"]
    shapes = {name: getattr(tensor, "shape", "not a tensor") for name, tensor in state_dict.items()} \
        if isinstance(state_dict, dict) else {}
    model_params = check_model_file(payload, shapes, source)
    try:
        model = build_model(architecture, payload["class_names"], rebuild_params(architecture, model_params),
                            payload["image_size"])
        model.load_state_dict(state_dict)
    except (TypeError, ValueError, RuntimeError) as error:  # tensors of the right shapes that torch cannot copy
        raise CheckpointError(f"{source}: its weights do not fit the {architecture!r} model it names "
                              f"({first_line(error)})") from error
    return model.eval()


def check_model_file(config: dict, shapes: dict, source) -> dict:
    """The file's model params, once its metadata is within params.yaml's bounds and its tensors (`shapes`) are
    those of the network it names; otherwise a one-line CheckpointError."""
    try:
        model_params = checked_metadata(config["architecture"], config["model_params"], config["class_names"],
                                        config["image_size"])
    except ValueError as error:
        raise CheckpointError(f"{source}: its metadata is refused ({error}); nothing was built") from None
    if problem := fit_problem(config["architecture"], model_params, config["class_names"], config["image_size"],
                              shapes):
        raise CheckpointError(f"{source}: {problem}; nothing was built")
    return model_params


def first_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


def load_model(source: str) -> SegmentationModel:
    """A checkpoint if `source` is an existing file, an MLflow model if it is a folder, otherwise an MLflow model
    URI (`runs:/<id>/model`, `models:/<name>@champion`) in the store MLflow is pointed at; eval mode, CPU."""
    if Path(source).is_file():
        return load_checkpoint(Path(source))
    if Path(source).is_dir():
        return load_mlflow_weights(Path(source) / IN_MLFLOW_MODEL, source)
    with tempfile.TemporaryDirectory() as tmp:  # the weights file alone: the rest of the logged model is never needed
        weights = download_model_file(source, IN_MLFLOW_MODEL, tmp, NOT_OURS)
        return load_mlflow_weights(weights, source)


def download_model_file(source: str, inside: Path, folder: str, missing: str) -> Path:
    """The file at `inside` of the MLflow model URI `source`, downloaded alone into `folder`; `missing` says in the
    error what `source` was expected to be."""
    import mlflow.artifacts  # slow to import: only when needed

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{source.rstrip('/')}/{inside.as_posix()}",
                                                        dst_path=folder))
    except Exception as error:  # MLflow raises several unrelated types for a bad URI
        raise CheckpointError(f"{source}: {not_downloaded(error, inside.name, missing)}") from error


def not_downloaded(error: Exception, file_name: str, missing: str) -> str:
    """Why `file_name` of an MLflow model URI could not be had, cause first: the server refused the login, the
    URI names nothing (no such model, alias or run), or the model is there without that file (`missing` says
    what then)."""
    import mlflow

    status = error.get_http_status_code() if isinstance(error, mlflow.exceptions.MlflowException) else None
    server = f"the MLflow server {redact(mlflow.get_tracking_uri())}"
    if status == 401:
        return f"{server} refused the credentials (HTTP 401): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    if status == 403:
        return f"{server} refuses this user the model (HTTP 403): ask its admin for READ on it"
    cause = " ".join(str(error).split())
    # the URI found a model, without the weights file: logged by MLflow itself, or by something else
    return f"{cause[:300]} ({missing})" if file_name in cause else cause[:300]


def load_mlflow_weights(weights: Path, source: str) -> SegmentationModel:
    """An MLflow model logged by this project, from its safetensors weights alone: the pyfunc code logged
    beside them is not run and nothing is unpickled."""
    if not weights.is_file():
        raise CheckpointError(f"{source}: not an MLflow model of this project ({NOT_OURS})")
    try:
        config, shapes = read_header(weights)
        check_model_file(config, shapes, source)  # before a byte of the tensors is read
        payload = {**config, "state_dict": read_tensors(weights)}
    except PortableModelError as error:
        raise CheckpointError(f"{source}: {error}; nothing in it was run") from error
    return model_from_payload(payload, source)
