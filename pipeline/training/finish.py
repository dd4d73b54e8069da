"""The training run's finish: the best epoch's checkpoint and the reports written, logged to MLflow with the model
and its card, registered unless the model is useless or a study registers its best trial instead."""
from __future__ import annotations

import logging
from pathlib import Path

import mlflow

from pipeline.config import Params
from pipeline.models import card
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.registry import build_model, rebuild_params
from pipeline.paths import TrainOutputs
from pipeline.tracking.attach import tag_model_file
from pipeline.tracking.logged_model import log_and_promote_model, registration_tags
from pipeline.tracking.registry import Measurement
from pipeline.training import reports
from pipeline.training.health import NOT_REGISTERED_TAG, registration_refusal
from pipeline.training.start import model_name, resolved_settings, run_conditions
from pipeline.training.state import TrainState
from pipeline.training.trainer import Trainer

log = logging.getLogger(__name__)


def finish(params: Params, outputs: TrainOutputs, state: TrainState, trainer: Trainer, processed_dir: Path,
           manifest: dict, digest: str, seconds: float, resumed_after: int) -> None:
    """Write the best checkpoint and the reports, log them and the model with its card to MLflow, mark the state
    completed. `seconds` is the time the epochs after `resumed_after` took in this process."""
    write_outputs(params, outputs, state, trainer)
    best = state.best
    measured_on = Measurement.of(params.data.dataset, trainer.class_names, processed_dir, params.data.subset.val)
    name = model_name(params, trainer.class_names)
    model_card = card.training_card(name, params, manifest, digest, trainer.data.partial,
                                    {"train": trainer.data.num_train, "val": trainer.data.num_val},
                                    {**resolved_settings(trainer), **run_conditions(trainer)}, best, seconds,
                                    state.epoch, resumed_after)
    best_metrics = {key if key.startswith("best") else f"best_{key}": value for key, value in best.items()}
    refusal = registration_refusal(best["val_miou"], state.majority_val_miou, state.history, params.train,
                                   len(trainer.class_names))
    if state.majority_val_miou is not None:
        mlflow.log_metric("val_miou_majority_class", state.majority_val_miou)
    if refusal:
        log.warning(refusal)
        mlflow.set_tag(NOT_REGISTERED_TAG, refusal)
    if trainer.trial:  # a study registers its best trial's model, not every trial's (pipeline/search/best.py)
        mlflow.set_tags({**trainer.trial.end_tags(), **({} if refusal else registration_tags(
            name, measured_on, best["val_miou"]))})
    log_and_promote_model(outputs.model, name, measured_on, best["val_miou"], best_metrics, model_card,
                          params.mlflow.log_onnx, register=refusal is None and trainer.trial is None)
    state.completed = True
    run_id, state.run_id = state.run_id, None  # only an unfinished state needs its run: identical runs, equal bytes
    state.save(outputs.state)
    log.info(f"wrote {outputs.model} (epoch {best['best_epoch']}, val mIoU {best['val_miou']:.4f}), {outputs.history}, "
             f"{outputs.metrics}, {outputs.resolved}, {outputs.progress}; logged to MLflow run {run_id}")


def write_outputs(params: Params, outputs: TrainOutputs, state: TrainState, trainer: Trainer) -> None:
    """The best epoch's checkpoint, tagged on the run, and the reports, written and logged as run artifacts."""
    best = state.best
    model_params = params.model_params().architecture()
    best_model = build_model(params.model, trainer.class_names, rebuild_params(params.model, model_params),
                             trainer.image_size)
    best_model.load_state_dict(state.best_weights)
    save_checkpoint(outputs.model, best_model, params.model, model_params, epoch=best["best_epoch"])
    tag_model_file(outputs.model)  # how evaluate and plot find this run: no run id in DVC's outputs
    reports.write_history(state.history, outputs.history)
    reports.write_metrics({**best, **trainer.trial.metrics()} if trainer.trial else best, outputs.metrics)
    reports.save_progress(trainer.data.progress_images, state.snapshots, outputs.progress)
    for report in (outputs.history, outputs.metrics, outputs.resolved):
        mlflow.log_artifact(str(report), "reports/train")
