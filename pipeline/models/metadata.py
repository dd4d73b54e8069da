"""What a model file says about itself, checked before anything is built or allocated for it.

A checkpoint, an MLflow model's safetensors file or an ONNX graph may come from anyone: its metadata (architecture,
its params, class names, image size) is checked against the same bounds as params.yaml, and the network it names is
first built on torch's `meta` device (shapes only, no memory) and compared with the file's tensors. So a 364-byte
file that claims 192 base channels is refused in one line instead of allocating 4.8 GB, and an encoder named after a
model hub is refused instead of being fetched: a model's weights come from its own file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pipeline.config import (
    POOLING_MODELS,
    ConfigError,
    ModelsParams,
    class_names_problem,
    image_size_problem,
    parse,
    quote,
    smp_encoder_problem,
)
from pipeline.models.registry import build_model, rebuild_params

SHOWN_DIFFERENCES = 3  # tensors a message names, of the many a wrong file can differ in


def architecture_params(architecture: Any, model_params: Any) -> dict:
    """The params of `architecture` read from a file, checked as the block `models.<architecture>` in params.yaml is
    (types, bounds, unknown keys, an encoder smp builds offline); raises ValueError with one line."""
    if architecture not in ModelsParams.model_fields:
        raise ValueError(f"architecture {quote(architecture)} is not one of {', '.join(ModelsParams.model_fields)}")
    try:
        block = parse(ModelsParams.model_fields[architecture].annotation, model_params, "model_params")
    except ConfigError as error:
        raise ValueError("; ".join(str(error).splitlines())) from None
    encoder = getattr(block, "encoder", None)
    if encoder is not None and (problem := smp_encoder_problem(encoder)):
        raise ValueError(f"model_params.encoder: {problem}")
    return {key: getattr(block, key) for key in model_params}  # a key it lacks takes the builder's default


def checked_metadata(architecture: Any, model_params: Any, class_names: Any, image_size: Any) -> dict:
    """The file's model params, once every field is within params.yaml's bounds; raises ValueError with one line."""
    params = architecture_params(architecture, model_params)
    if problem := class_names_problem(class_names):
        raise ValueError(f"class_names: {problem}")
    if problem := image_size_problem(image_size):
        raise ValueError(f"image_size: {problem}")
    depth = params.get("depth", 1) if architecture in POOLING_MODELS else 1
    if 2**depth > image_size:
        raise ValueError(f"model_params.depth {depth} pools an image_size of {image_size} below one pixel")
    return params


def fit_problem(architecture: str, model_params: dict, class_names: list[str], image_size: int,
                shapes: Mapping[str, Any]) -> str | None:
    """How the file's tensors (`shapes`: name -> shape) differ from the network its metadata names, found by
    building that network on the meta device (no memory); None when every name and shape agrees."""
    with torch.device("meta"):
        model = build_model(architecture, class_names, rebuild_params(architecture, model_params), image_size)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    got = {name: tuple(shape) for name, shape in shapes.items()}
    differ = sorted(name for name in expected.keys() | got.keys() if expected.get(name) != got.get(name))
    if not differ:
        return None
    shown = ", ".join(f"{quote(name)}: file {got.get(name, 'none')}, model {expected.get(name, 'none')}"
                      for name in differ[:SHOWN_DIFFERENCES])
    return (f"its {len(got)} tensors do not fit the {architecture!r} model its metadata describes "
            f"({len(expected)} tensors; {len(differ)} differ: {shown})")
