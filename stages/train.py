"""DVC stage: train the model chosen by `model`, tracked in MLflow; best checkpoint to models/model.pt."""
from pipeline import paths
from pipeline.config import Params
from pipeline.training.loop import train
from stages.cli import run_stage


def main(params: Params) -> None:
    train(params, paths.processed_dir(params.data.dataset), paths.TrainOutputs.under())


if __name__ == "__main__":
    run_stage(__doc__, main)
