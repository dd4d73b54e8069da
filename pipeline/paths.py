"""Where every stage reads and writes, defined once: the stage scripts, the tests and dvc.yaml agree on these.

Paths are relative to the repository root (DVC runs every stage there). dvc.yaml spells the same
paths with `${data.dataset}`; tests/test_stage_deps.py checks that it does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA = Path("data")
MODELS = Path("models")
REPORTS = Path("reports")


def raw_dir(dataset: str, root: Path = Path(".")) -> Path:
    return root / DATA / "raw" / dataset


def interim_dir(dataset: str, root: Path = Path(".")) -> Path:
    return root / DATA / "interim" / dataset


def processed_dir(dataset: str, root: Path = Path(".")) -> Path:
    return root / DATA / "processed" / dataset


def model_file(root: Path = Path(".")) -> Path:
    """The best checkpoint of the last training."""
    return root / MODELS / "model.pt"


def weights_record(root: Path = Path(".")) -> Path:
    """Which pretrained encoder weights the next training starts from (the weights stage's output)."""
    return root / REPORTS / "weights" / "encoder.json"


def eval_dir(root: Path = Path(".")) -> Path:
    return root / REPORTS / "eval"


def figures_dir(root: Path = Path(".")) -> Path:
    return root / REPORTS / "figures"


@dataclass(frozen=True)
class TrainOutputs:
    model: Path      # best checkpoint by val mIoU
    state: Path      # full state after the last epoch, for resuming
    history: Path    # per-epoch CSV
    metrics: Path    # best epoch's numbers, for `dvc exp show`
    resolved: Path   # device, precision, threads, processes resolved on this machine, for `dvc metrics diff`
    progress: Path   # predictions on fixed val images after every epoch, for the progress GIF

    @classmethod
    def under(cls, root: Path = Path(".")) -> TrainOutputs:
        reports = root / REPORTS / "train"
        return cls(model=model_file(root), state=root / MODELS / "train_state.pt", history=reports / "history.csv",
                   metrics=reports / "metrics.json", resolved=reports / "resolved.json",
                   progress=reports / "progress.npz")
