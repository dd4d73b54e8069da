"""DVC stage: score models/model.pt on the val split into reports/eval/, attach the results (eval_* and iou/<class>)
to its MLflow run and logged model, and add them to the model card of the versions registered from that run."""
import json

from pipeline import paths
from pipeline.config import Params
from pipeline.evaluation.evaluate import evaluate
from pipeline.models import card
from pipeline.tracking.attach import attach_to_run, iou_metrics
from pipeline.tracking.logged_model import add_to_cards
from pipeline.training.threads import use_threads
from stages.lifecycle.run import log_written, run_stage


def main(params: Params) -> None:
    dataset, out_dir = params.data.dataset, paths.eval_dir()
    # the training's thread count (train.num_threads), fixed by the machine and not its load: the scores' last bits
    # follow it. Not a param of this stage: a new count retrains the model, whose new bytes re-run evaluate
    use_threads(params.train.num_threads)
    metrics = evaluate(paths.processed_dir(dataset), paths.interim_dir(dataset), paths.model_file(), out_dir,
                       params.evaluate)
    written = sorted(out_dir.iterdir())
    per_class_iou = json.loads((out_dir / "per_class_iou.json").read_text())
    run_id = attach_to_run(params.mlflow, paths.model_file(),
                                    {**{f"eval_{name}": value for name, value in metrics.items()},
                                     **iou_metrics(per_class_iou)}, written, "reports/eval")
    if run_id is not None:
        add_to_cards(run_id, card.EVALUATION, card.evaluation_section(metrics, per_class_iou))
    log_written(f"{', '.join(map(str, written))} (val mIoU {metrics['miou']:.4f}, pixel accuracy "
                f"{metrics['pixel_accuracy']:.4f})", run_id)


if __name__ == "__main__":
    run_stage(__doc__, main)
