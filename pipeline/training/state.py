"""Kill-and-resume: the full training state is saved after every epoch and picked up by the next run.

The state file is a persisted DVC output (DVC does not delete it before re-running the stage). It is
used only when it belongs to the same training: same parameters and same data (its fingerprint),
and not yet completed. Everything random is re-seeded from (seed, epoch) at the start of each epoch,
so a resumed run continues exactly as an uninterrupted one would. The file holds tensors and plain
types only and is read with `weights_only=True`: loading it cannot run code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pipeline.models.checkpoint import save_torch_file
from pipeline.models.torch_files import load_tensors

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    fingerprint: str
    epoch: int = 0                      # last finished epoch
    planned_epochs: int | None = None   # the epochs train.time_budget resolved to: a resumed run keeps them
    completed: bool = False
    run_id: str | None = None           # the MLflow run a resumed training continues; None once completed
    history: list[dict] = field(default_factory=list)  # one row per epoch (see reports.HISTORY_COLUMNS)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (epoch, uint8 predictions)
    best: dict = field(default_factory=lambda: {"val_miou": -1.0})
    best_weights: dict[str, torch.Tensor] | None = None
    epochs_without_improvement: int = 0
    majority_val_miou: float | None = None  # the val split's majority-class predictor's (training/health.py)
    model: dict | None = None           # weights, optimizer and scheduler after `epoch`
    optimizer: dict | None = None
    scheduler: dict | None = None

    def record(self, row: dict, model: nn.Module) -> bool:
        """Add one epoch's history row; keep the weights if its val mIoU is the best so far (returns whether)."""
        self.history.append(row)
        improved = row["val_miou"] > self.best["val_miou"]
        if improved:
            self.best = {"val_miou": row["val_miou"], "val_pixel_accuracy": row["val_pixel_accuracy"],
                         "val_loss": row["val_loss"], "best_epoch": row["epoch"]}
            self.best_weights = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    def continues(self, identity: str) -> bool:
        """Whether this saved state is an unfinished run of the training with fingerprint `identity`."""
        return self.fingerprint == identity and not self.completed

    def save(self, path: Path) -> None:
        payload = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # shallow: no tensor copies
        save_torch_file(payload, Path(path))


def fingerprint(flat_params: dict, manifest: dict) -> str:
    """Identity of a training: its parameters and the ids of the data it sees."""
    text = json.dumps({"params": flat_params, "data": manifest}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_state(path: Path) -> TrainState | None:
    """The saved state, or None when there is none or it cannot be read (an old format, a foreign file)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return TrainState(**load_tensors(path))
    except Exception as error:  # start afresh rather than trust it
        log.warning(f"{path}: not a training state this version can resume ({type(error).__name__}); starting afresh")
        return None
