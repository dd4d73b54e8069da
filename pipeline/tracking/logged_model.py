"""The training's model in MLflow: logged from code with portable weights and an ONNX graph, its card beside it,
and registered (registry.py) or tagged to be registered later."""
from __future__ import annotations

import logging
import tempfile
import time
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import Schema, TensorSpec

from pipeline.models import card
from pipeline.models.checkpoint import model_from_payload, read_checkpoint
from pipeline.models.onnx_graph import ARTIFACT_KEY as ONNX_ARTIFACT_KEY
from pipeline.models.onnx_graph import FILE_NAME as ONNX_FILE_NAME
from pipeline.models.onnx_graph import OnnxModelError, write_onnx
from pipeline.models.portable import ARTIFACT_KEY, FILE_NAME, write_portable
from pipeline.models.segmenter import SegmentationModel
from pipeline.tracking.registry import Measurement, describe_registered_model, register_and_promote

log = logging.getLogger(__name__)
PYFUNC_CODE = Path(__file__).resolve().parents[1] / "models" / "pyfunc.py"
MODEL_PACKAGES = ("mlflow", "torch", "torchvision", "segmentation-models-pytorch", "timm", "huggingface-hub",
                  "safetensors", "numpy")


def model_signature() -> ModelSignature:
    """Any batch size, height and width: RGB floats in [0, 1] -> class indices (see models/pyfunc.py)."""
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
                          outputs=Schema([TensorSpec(np.dtype(np.int64), (-1, -1, -1))]))


def log_model(checkpoint: Path, with_onnx: bool = True) -> ModelInfo:
    """Log the checkpoint as a "models from code" pyfunc: the weights as safetensors, the network rebuilt from
    the project's code, so neither MLflow nor the project unpickles anything to load it (a pickle runs code); and
    beside them, `with_onnx`, the same model as an ONNX graph, for onnxruntime and other runtimes."""
    with tempfile.TemporaryDirectory() as tmp:
        payload = read_checkpoint(checkpoint)
        weights = write_portable(payload, Path(tmp) / FILE_NAME)
        artifacts = {ARTIFACT_KEY: str(weights)}
        if with_onnx:
            artifacts.update(onnx_artifact(model_from_payload(payload, checkpoint), Path(tmp)))
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_CODE), artifacts=artifacts,
            code_paths=[str(PYFUNC_CODE.parents[1])], signature=model_signature(),
            input_example=np.full((1, 3, 8, 8), 0.5, dtype=np.float32), pip_requirements=model_requirements())


def onnx_artifact(model: SegmentationModel, folder: Path) -> dict[str, str]:
    """The model as an ONNX graph checked against torch (models/onnx_graph.py), for onnxruntime and other runtimes.
    A model that torch cannot export, or whose graph disagrees, is logged without one and a warning says why: the
    trained weights must not be lost to it."""
    started = time.perf_counter()
    try:
        parity = write_onnx(model, folder / ONNX_FILE_NAME)
    except OnnxModelError as error:
        log.warning(f"the model is logged without {ONNX_FILE_NAME}: {error}")
        return {}
    log.info(f"{ONNX_FILE_NAME}: exported and checked in {time.perf_counter() - started:.1f} s ({parity})")
    return {ONNX_ARTIFACT_KEY: str(folder / ONNX_FILE_NAME)}


def model_requirements() -> list[str]:
    """The installed versions of what the logged code imports (inferring them costs seconds and misses some)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in MODEL_PACKAGES]


def log_and_promote_model(checkpoint: Path, name: str, measurement: Measurement, val_miou: float,
                          metrics: dict[str, float], model_card: str, with_onnx: bool = True,
                          register: bool = True) -> None:
    """Log the model (see log_model) with its `metrics` and its card; if `register`, register it under `name` with the
    card as the version's description, and let the registry decide whether it is the new `champion`
    (tracking/registry.py)."""
    model = log_model(checkpoint, with_onnx)
    mlflow.log_metrics(metrics, model_id=model.model_id)
    store_card(model.model_id, model_card)
    if register:
        register_and_promote(model.model_uri, name, measurement, val_miou, description=model_card)


REGISTERED_NAME_TAG = "segmentation.registered_name"


def registration_tags(name: str, measurement: Measurement, val_miou: float) -> dict[str, str]:
    """What register_and_promote needs, on a run whose model is registered later (the best trial of a study)."""
    return {REGISTERED_NAME_TAG: name, **measurement.tags(), "segmentation.val_miou": repr(float(val_miou))}


def store_card(model_id: str, model_card: str) -> None:
    """The card as `model_card.md` among the logged model's files, which its registered versions share."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / card.FILE_NAME
        path.write_text(model_card)
        mlflow.MlflowClient().log_model_artifact(model_id, str(path))


def add_to_cards(run_id: str, title: str, body: str) -> None:
    """Put section `title` into the card of every version registered from the run: description and model_card.md,
    and the registered model's own description where it shows that version's card."""
    client = mlflow.MlflowClient()
    model_ids = logged_models_of(client, run_id)
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        model_card = card.with_section(version.description or "", title, body)
        client.update_model_version(version.name, version.version, description=model_card)
        for model_id in model_ids:
            if version.source == f"models:/{model_id}":  # the store keeps a version's model only in its source
                store_card(model_id, model_card)
        describe_registered_model(client, version.name)


def logged_models_of(client: mlflow.MlflowClient, run_id: str) -> list[str]:
    """The ids of the models the run logged (a training run logs one)."""
    outputs = client.get_run(run_id).outputs
    return [output.model_id for output in (outputs.model_outputs if outputs else [])]
