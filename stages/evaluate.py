"""DVC stage: score models/model.pt on the val split into reports/eval/ and attach the results to its MLflow run."""
from pathlib import Path

from pipeline import tracking
from pipeline.config import Params
from pipeline.evaluate import evaluate
from stages.cli import run_stage


def main(params: Params) -> None:
    out_dir = Path("reports/eval")
    result = evaluate(Path("data/processed") / params.data.dataset, Path("models/model.pt"), out_dir,
                      params.train.batch_size)
    tracking.attach_to_run(params.mlflow, result["run_id"], {f"eval_{k}": v for k, v in result["metrics"].items()},
                           sorted(out_dir.iterdir()), "reports/eval")


if __name__ == "__main__":
    run_stage(__doc__, main)
