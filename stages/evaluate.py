"""DVC stage: score models/model.pt on the val split into reports/eval/ and attach the results to its MLflow run."""
from pathlib import Path

from pipeline import tracking
from pipeline.checkpoint import read_checkpoint
from pipeline.config import Params
from pipeline.evaluate import evaluate
from stages.cli import run_stage


def main(params: Params) -> None:
    model_path, out_dir = Path("models/model.pt"), Path("reports/eval")
    dataset = params.data.dataset
    metrics = evaluate(Path("data/processed") / dataset, Path("data/interim") / dataset, model_path, out_dir,
                       params.train.batch_size, {"hflip": params.evaluate.tta_hflip, "scales": params.evaluate.tta_scales})
    tracking.attach_to_run(params.mlflow, read_checkpoint(model_path)["mlflow_run_id"],
                           {f"eval_{name}": value for name, value in metrics.items()}, sorted(out_dir.iterdir()),
                           "reports/eval")


if __name__ == "__main__":
    run_stage(__doc__, main)
