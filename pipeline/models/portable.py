"""A trained model as one safetensors file: the weights, plus what rebuilds the network as JSON metadata.

This is the weights file inside every MLflow model the project logs. safetensors holds raw tensors and a
JSON header and nothing else, so reading a file someone sent you (or a tampered artifact store) cannot run
code, unlike a pickle; the network itself is rebuilt from this project's code by its architecture name.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

METADATA_KEY = "segmentation_model"
FILE_NAME = "model.safetensors"
ARTIFACT_KEY = "weights"  # the name of the file among a logged MLflow model's artifacts...
IN_MLFLOW_MODEL = Path("artifacts") / FILE_NAME  # ...and where MLflow keeps it inside the model folder
CONFIG_KEYS = {"architecture": str, "model_params": dict, "class_names": list, "image_size": int}


class PortableModelError(ValueError):
    """A file that is not a safetensors model of this project (checkpoint.py turns it into a CheckpointError)."""


def write_portable(payload: dict, path: Path) -> Path:
    """The checkpoint `payload` (see checkpoint.py) as a safetensors file at `path`."""
    config = {key: payload[key] for key in CONFIG_KEYS}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in payload["state_dict"].items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(config)})
    return path


def read_portable(path: Path) -> dict:
    """The payload written by `write_portable`: architecture, model_params, class_names, image_size, state_dict."""
    config, _ = read_header(path)
    return {**config, "state_dict": read_tensors(path)}


def read_header(path: Path) -> tuple[dict, dict[str, list[int]]]:
    """The file's metadata (architecture, model_params, class_names, image_size) and the shape of each tensor, read
    from its JSON header alone: what the tensors would need is known before any is loaded."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise PortableModelError(f"{path}: not a safetensors file ({error})") from error
    try:
        config = json.loads(metadata[METADATA_KEY])
    except (KeyError, json.JSONDecodeError) as error:
        raise PortableModelError(f"{path}: a safetensors file without this project's '{METADATA_KEY}' "
                                 "metadata (architecture, class names, image size)") from error
    wrong = [key for key, kind in CONFIG_KEYS.items() if not isinstance(config, dict)
             or not isinstance(config.get(key), kind)]
    if wrong:
        raise PortableModelError(f"{path}: its '{METADATA_KEY}' metadata lacks or mistypes {', '.join(wrong)}")
    return {key: config[key] for key in CONFIG_KEYS}, shapes


def read_tensors(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise PortableModelError(f"{path}: not a safetensors file ({error})") from error
