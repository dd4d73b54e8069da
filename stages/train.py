"""DVC stage: train the model chosen by `model`, tracked in MLflow; best checkpoint to models/model.pt."""
from pathlib import Path

from pipeline.config import Params
from pipeline.train import train
from stages.cli import run_stage


def main(params: Params) -> None:
    reports = Path("reports/train")
    train(params, Path("data/processed") / params.data.dataset, Path("models/model.pt"),
          reports / "history.csv", reports / "metrics.json", reports / "progress.npz")


if __name__ == "__main__":
    run_stage(__doc__, main)
