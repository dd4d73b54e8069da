"""The MLflow pyfunc of a trained model, logged as "models from code" (tracking/logged_model.py).

MLflow runs this file to load the model (`mlflow.pyfunc.load_model`, `mlflow models serve`); the project's
own loader never does (checkpoint.load_model reads the weights file alone). The weights come from the logged
safetensors artifact and the network is rebuilt from the project's code logged beside it: nothing is
unpickled. predict: (N, 3, H, W) float32 RGB in [0, 1], any N, H, W -> (N, H, W) int64 class indices, the
image seen at the model's training size as `python -m pipeline.predict` does; class names are in the weights
file's metadata. `.unwrap_python_model().model` is the torch module (logits), for anything else.
"""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import torch

from pipeline.models.inference import segment_batch
from pipeline.models.checkpoint import model_from_payload
from pipeline.models.portable import ARTIFACT_KEY, read_portable


class SegmentationPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        weights = Path(context.artifacts[ARTIFACT_KEY])
        self.model = model_from_payload(read_portable(weights), weights)

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(model_input, dtype=np.float32))
        return segment_batch(self.model, images).numpy()


mlflow.models.set_model(SegmentationPyfunc())
