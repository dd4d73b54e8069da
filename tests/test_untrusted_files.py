"""Checkpoints and the resume state are read with weights_only: a crafted pickle is refused and runs nothing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pipeline.models.checkpoint import load_model, read_checkpoint
from pipeline.training.state import read_state


class Payload:
    """Unpickling this calls os.system: the classic malicious pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_file(tmp_path: Path, name: str) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / name
    torch.save({"architecture": "unet", "state_dict": {}, "x": Payload(marker)}, path)
    return path, marker


def test_a_crafted_checkpoint_is_refused_without_running_its_payload(tmp_path: Path):
    path, marker = evil_file(tmp_path, "evil.pt")
    for load in (read_checkpoint, lambda p: load_model(str(p))):
        with pytest.raises(ValueError, match="evil.pt: not a checkpoint of this project"):
            load(path)
    assert not marker.exists()


def test_a_crafted_resume_state_is_ignored_without_running_its_payload(tmp_path: Path):
    path, marker = evil_file(tmp_path, "train_state.pt")
    assert read_state(path) is None
    assert not marker.exists()
