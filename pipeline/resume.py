"""Kill-and-resume: the full training state is saved after every epoch and picked up by the next run.

The state file is a persisted DVC output (DVC does not delete it before re-running the stage). It is
used only when it belongs to the same training: same parameters and same data (its fingerprint),
and not yet completed. Everything random is re-seeded from (seed, epoch) at the start of each epoch,
so a resumed run continues exactly as an uninterrupted one would.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from pipeline.atomic import atomic_path


def fingerprint(flat_params: dict, manifest: dict) -> str:
    """Identity of a training: its parameters and the ids of the data it sees."""
    text = json.dumps({"params": flat_params, "data": manifest}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_unfinished(path: Path, expected_fingerprint: str) -> dict | None:
    """The saved state of an interrupted run of this same training, or None to start afresh."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != expected_fingerprint or state.get("completed"):
        return None
    return state


def save_state(path: Path, state: dict) -> None:
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)
