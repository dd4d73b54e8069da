"""DVC stage: draw reports/figures/ from the model and the train and evaluate reports; attach them to the MLflow run."""
from pathlib import Path

from pipeline import tracking
from pipeline.checkpoint import read_checkpoint
from pipeline.config import Params
from pipeline.figures import make_figures
from stages.cli import run_stage


def main(params: Params) -> None:
    model_path = Path("models/model.pt")
    figures = make_figures(model_path, Path("data/processed") / params.data.dataset, Path("reports/train"),
                           Path("reports/eval"), Path("reports/figures"), params.plot.num_samples)
    tracking.attach_to_run(params.mlflow, read_checkpoint(model_path)["mlflow_run_id"], {}, figures, "reports/figures")


if __name__ == "__main__":
    run_stage(__doc__, main)
