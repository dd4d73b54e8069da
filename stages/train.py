"""DVC stage: train the model chosen by `model`, tracked in MLflow; best checkpoint to models/model.pt."""
from pathlib import Path

from pipeline.config import Params
from pipeline.train import TrainOutputs, train
from stages.cli import run_stage


def main(params: Params) -> None:
    reports = Path("reports/train")
    outputs = TrainOutputs(model=Path("models/model.pt"), state=Path("models/train_state.pt"),
                           history=reports / "history.csv", metrics=reports / "metrics.json",
                           progress=reports / "progress.npz")
    train(params, Path("data/processed") / params.data.dataset, outputs)


if __name__ == "__main__":
    run_stage(__doc__, main)
