"""Hostile model files, a few hundred bytes each: an MLflow model folder whose safetensors metadata says what an
attacker likes, and ONNX graphs (one 1x1 convolution, written with onnx.helper) with chosen metadata and width."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from safetensors.torch import save_file

from pipeline.models.portable import IN_MLFLOW_MODEL, METADATA_KEY

VALID = {"architecture": "unet", "model_params": {"base_channels": 4, "depth": 2}, "class_names": ["a", "b"],
         "image_size": 64}


def mlflow_folder(folder: Path, **config) -> Path:
    """An MLflow model folder of `VALID` metadata updated by `config`, holding one dummy tensor."""
    weights = folder / IN_MLFLOW_MODEL
    weights.parent.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(weights), metadata={METADATA_KEY: json.dumps({**VALID, **config})})
    return folder


def onnx_graph(path: Path, channels: int = 2, **metadata) -> Path:
    """images (N, 3, H, W) -> logits (N, `channels`, H, W) through a 1x1 convolution, with these metadata_props
    (values as the exporter writes them: class_names as JSON, image_size as text)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [channels, 3, 1, 1], [0.1] * (channels * 3))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["logits"])], "crafted",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", channels, "height", "width"])],
        initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    defaults = {"class_names": json.dumps(["a", "b"]), "image_size": "64"}
    for key, value in {**defaults, **metadata}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path
