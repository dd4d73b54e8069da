"""DVC stage: draw reports/figures/ from the model and the train and evaluate reports; attach them to the MLflow run."""
from pipeline import paths
from pipeline.config import Params
from pipeline.reporting.figures import make_figures
from pipeline.tracking.attach import attach_to_run
from stages.lifecycle.run import log_written, run_stage


def main(params: Params) -> None:
    outputs = paths.TrainOutputs.under()
    figures = make_figures(paths.model_file(), paths.processed_dir(params.data.dataset), outputs.history.parent,
                           paths.eval_dir(), paths.figures_dir(), params.plot.num_samples)
    run_id = attach_to_run(params.mlflow, paths.model_file(), {}, figures, "reports/figures")
    log_written(f"{len(figures)} figures to {paths.figures_dir()}: {', '.join(figure.name for figure in figures)}",
                run_id)


if __name__ == "__main__":
    run_stage(__doc__, main)
