"""Save and load trained models as plain state dicts plus what is needed to rebuild them."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.atomic import atomic_path
from pipeline.models import SegmentationModel, build_model, rebuild_params


def save_checkpoint(path: Path, model: SegmentationModel, architecture: str, model_params: dict, **extra) -> None:
    """Atomically write the weights with the architecture name, its params and the class names."""
    payload = {"architecture": architecture, "model_params": model_params, "class_names": model.class_names,
               "state_dict": model.state_dict(), **extra}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint there (run the train stage first)")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_checkpoint(path: Path) -> SegmentationModel:
    """The model stored at `path`, in eval mode on the CPU."""
    payload = read_checkpoint(path)
    architecture = payload["architecture"]
    model = build_model(architecture, payload["class_names"], rebuild_params(architecture, payload["model_params"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval()
