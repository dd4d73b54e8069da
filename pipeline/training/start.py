"""The training run's start: what it says first, the state it resumes or replaces, and what it records about itself
(params, data, the settings this machine resolved) before the first epoch."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import mlflow
import torch

from pipeline import atomic
from pipeline.config import Params, active, flatten
from pipeline.models.registry import count_parameters
from pipeline.paths import TrainOutputs
from pipeline.tracking.registry import check_rights_to_register, registered_name
from pipeline.tracking.run import (
    close_abandoned_run,
    data_digest,
    log_dataset,
    log_missing_epochs,
    log_run_params,
    probe_artifact_store,
    run_exists,
)
from pipeline.tracking.store import is_server, setup_experiment
from pipeline.training import distributed, reports
from pipeline.training.state import TrainState, read_state
from pipeline.training.trainer import Trainer

SHOWN_CLASS_NAMES = 8  # the start line names this many classes, then counts the rest

log = logging.getLogger(__name__)


def model_name(params: Params, class_names: list[str]) -> str:
    """The registered model this training adds a version to."""
    return registered_name(params.mlflow.experiment, params.data.dataset, len(class_names))


def report_unseen_classes(manifest: dict, processed_dir: Path) -> None:
    """Val classes no training mask shows (listed by preprocess): the model cannot learn them, so their IoU is 0
    and pulls mIoU down whatever the recipe; said once, before the work."""
    unseen = manifest.get("val_classes_not_in_train")
    if unseen:
        log.warning(f"val classes that no training mask in {processed_dir} shows: {', '.join(unseen)}; their IoU "
                    "can only be 0")


def remove_stale_temporaries(outputs: TrainOutputs) -> None:
    """Half-written outputs of a training killed mid-write (a full training state each), removed before this
    one starts so that they cannot pile up."""
    removed = [file for path in dataclasses.astuple(outputs) for file in atomic.remove_stale_temporaries(path)]
    if removed:
        log.info(f"removed {len(removed)} temporary files a killed training left: {', '.join(map(str, removed))}")


def describe(params: Params, trainer: Trainer) -> str:
    """The training's first line: what it learns from, what it trains and on what."""
    names = trainer.class_names
    classes = ", ".join(names[:SHOWN_CLASS_NAMES]) + (f", +{len(names) - SHOWN_CLASS_NAMES} more"
                                                      if len(names) > SHOWN_CLASS_NAMES else "")
    processes = distributed.world_size()
    return (f"training {params.model} ({count_parameters(trainer.model):,} parameters) on {params.data.dataset}: "
            f"{trainer.data.num_train} train / {trainer.data.num_val} val images, {trainer.image_size}px, "
            f"{len(names)} classes ({classes}); {params.train.epochs} epochs of batch {params.train.batch_size}; "
            f"device {trainer.device}, precision {trainer.precision}, threads {torch.get_num_threads()}"
            + (f" in each of {processes} processes" if processes > 1 else ""))


def without_launch_params(flat_params: dict) -> dict:
    """The params that make a training what it is, less how it is launched: a training killed under N
    processes resumes under any number (`train.distributed.*`)."""
    return {name: value for name, value in flat_params.items() if not name.startswith("train.distributed.")}


def resume_or_start(path: Path, identity: str) -> TrainState:
    """The interrupted state of this same training, or a fresh one."""
    state = read_state(path)
    if state is not None and not state.completed and not state.continues(identity) and state.run_id:
        close_abandoned_run(state.run_id)  # its state is about to be replaced: it can never resume
    if state is not None and not state.continues(identity):
        state = None
    if state is not None and state.run_id and not run_exists(state.run_id):
        log.warning(f"{path} continues MLflow run {state.run_id}, which is not in the store or was deleted; "
                    "starting afresh")
        state = None
    if state is None:
        return TrainState(fingerprint=identity)
    log.info(f"resuming after epoch {state.epoch} in MLflow run {state.run_id}")
    return state


def log_run(params: Params, flat_params: dict, trainer: Trainer, processed_dir: Path, digest: str) -> None:
    """What makes this run what it is: the active params, the values resolved on this machine, the data."""
    log_run_params(flat_params, {
        "model.num_parameters": count_parameters(trainer.model), "data.num_train": trainer.data.num_train,
        "data.num_val": trainer.data.num_val, **resolved_settings(trainer), **run_conditions(trainer)})
    log_dataset(params.data.dataset, params.data.own_root or str(processed_dir), digest)


def write_resolved(params: Params, outputs: TrainOutputs, trainer: Trainer) -> None:
    """The recipe and settings resolved here (resolved.json), written at every start, where it is also the
    artifact store's probe: the same values hold to the end."""
    reports.write_metrics({**params.recipe(), **resolved_settings(trainer)}, outputs.resolved)


def resolved_settings(trainer: Trainer) -> dict:
    """What `auto` params, the machine, the launch and the data decided that changes the numbers (bf16 or fp32 alone
    moves mIoU; the process count sets the global batch; the thread count moves fp32 sums, training/threads.py; two
    folders of one dataset kind may hold 8 or 11 classes): a DVC metric, a column of `dvc exp show`."""
    return {"device": trainer.device.type, "precision": trainer.precision, "num_threads": torch.get_num_threads(),
            "global_batch_size": trainer.params.train.batch_size * distributed.world_size(),
            "sync_batchnorm": trainer.sync_batchnorm, "num_classes": len(trainer.class_names)}


def run_conditions(trainer: Trainer) -> dict:
    """How this machine ran the training, which leaves the numbers as they were: on the MLflow run and the model
    card, not in a DVC file."""
    return {"num_processes": distributed.world_size(), "num_workers": trainer.data.train_loader.num_workers}


def prepare(params: Params, outputs: TrainOutputs, manifest: dict, processed_dir: Path) -> tuple[str, str]:
    """Rank 0's work before the trainer is built: stale temporaries removed, unseen classes said, the MLflow
    experiment opened (before init_from, which may name a model in the store) and, on a server, the right to register
    checked. Returns the experiment's id and the data's digest (it reads every array: once, for run and card)."""
    remove_stale_temporaries(outputs)
    report_unseen_classes(manifest, processed_dir)
    experiment_id = setup_experiment(params.mlflow)
    if is_server(mlflow.get_tracking_uri()):  # a local store has no users to refuse
        check_rights_to_register(model_name(params, manifest["classes"]))
    return experiment_id, data_digest(processed_dir)


def record_start(params: Params, outputs: TrainOutputs, state: TrainState, trainer: Trainer, run: mlflow.ActiveRun,
                 processed_dir: Path, digest: str) -> None:
    """Rank 0's records before the first epoch: a new run's params and data, the Optuna trial it runs as, the epochs
    a resumed run lacks, resolved.json (also the artifact store's probe)."""
    if state.run_id is None:
        state.run_id = run.info.run_id
        log_run(params, flatten(active(params)), trainer, processed_dir, digest)
    if trainer.trial:
        mlflow.set_tags(trainer.trial.tags())
        trainer.trial.started(run.info.run_id)
    log_missing_epochs(run.info.run_id, state.history)
    write_resolved(params, outputs, trainer)
    probe_artifact_store(outputs.resolved, "reports/train")  # before any epoch
