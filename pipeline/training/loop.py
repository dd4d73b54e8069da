"""Train a segmentation model on the preprocessed arrays, keeping the best epoch by val mIoU.

Everything comes from params.yaml: architecture, loss, optimizer, schedule, precision, augmentation.
The training state is saved after every epoch, so a killed run continues where it stopped, in the
same MLflow run (see state.py); Ctrl-C and SIGTERM stop it at a batch boundary, never in the middle of a write
(graceful_stop.py). Under torchrun the same loop runs in every process, data-parallel
(see distributed.py). A loss or val score that is not finite, or a loss that exploded, stops the training with a
FAILED run, and a model no better than the majority class is not registered (health.py).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from torch import nn
from tqdm import tqdm

from pipeline import atomic
from pipeline.config import Params, active, flatten
from pipeline.data.dataset import read_manifest
from pipeline.logs import duration
from pipeline.models import card
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.inference import class_indices, predict_batch
from pipeline.models.registry import build_model, count_parameters, rebuild_params
from pipeline.models.segmenter import SegmentationModel
from pipeline.paths import TrainOutputs
from pipeline.scoring.loader import score_loader
from pipeline.scoring.metrics import majority_class_miou
from pipeline.tracking.attach import tag_model_file
from pipeline.tracking.logged_model import log_and_promote_model, registration_tags
from pipeline.tracking.registry import Measurement, check_rights_to_register, registered_name
from pipeline.tracking.run import (
    close_abandoned_run,
    data_digest,
    log_dataset,
    log_epoch,
    log_missing_epochs,
    log_run_params,
    probe_artifact_store,
    run_exists,
    training_run,
)
from pipeline.tracking.store import is_server, setup_experiment
from pipeline.training import budget, distributed, pruning, reports
from pipeline.training.device import autocast, memory_format, pick_device, pick_precision
from pipeline.training.graceful_stop import GracefulStop
from pipeline.training.health import (
    NOT_REGISTERED_TAG,
    TrainingDiverged,
    check_finite,
    check_not_exploded,
    registration_refusal,
)
from pipeline.training.optim import Schedule
from pipeline.training.setup import (
    TrainData,
    build_data,
    build_optimization,
    build_segmentation_model,
    build_training_loss,
    check_params_against_data,
    configure_torch,
    seed_everything,
)
from pipeline.training.state import TrainState, fingerprint, read_state

RANK_SEED_STRIDE = 100_000  # more epochs than any training runs: no two (epoch, rank) pairs share a seed
SHOWN_CLASS_NAMES = 8  # the start line names this many classes, then counts the rest

log = logging.getLogger(__name__)


@dataclass
class Trainer:
    """Everything one epoch needs, built once from params, in each training process."""
    params: Params
    data: TrainData
    model: SegmentationModel         # the weights: state dicts, snapshots, checkpoints, validation
    network: nn.Module               # the same model as trained: DistributedDataParallel around it, or itself
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Schedule
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    sync_batchnorm: bool
    class_names: list[str]
    image_size: int
    majority_val_miou: float | None = None  # the val split's majority-class predictor's (health.py)
    stop: GracefulStop = dataclasses.field(default_factory=GracefulStop)  # Ctrl-C and SIGTERM, at batch boundaries
    trial: pruning.TrialLink | None = None  # the Optuna trial this training runs as, if any (pruning.py)


    def run_epoch(self, epoch: int) -> tuple[dict, float]:
        """Train one epoch, score the val split, step the schedule; returns the history row (the same in
        every process: losses and scores are summed over the processes) and the training speed, in samples
        (images, or crops of them) per second over all processes."""
        recipe = self.params.train
        seed = epoch_seed(recipe.seed, epoch, distributed.rank())
        seed_everything(seed)
        self.data.start_epoch(epoch, seed)
        if recipe.freeze_encoder_epochs:
            self.model.freeze_encoder(epoch <= recipe.freeze_encoder_epochs)
        lr = self.scheduler.lr
        started = time.perf_counter()
        train_loss, samples = self.train_one_epoch(f"epoch {epoch}")
        speed = samples / (time.perf_counter() - started)
        check_finite(epoch, {"train_loss": train_loss}, recipe)  # before validating weights that are lost
        check_not_exploded(epoch, train_loss, len(self.class_names), recipe)
        distributed.copy_buffers_from_main(self.model)
        scores = self.validate()
        self.stop.stop_point(f"while validating epoch {epoch}")  # before its partial scores are looked at
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": scores["loss"], "val_miou": scores["miou"],
               "val_pixel_accuracy": scores["pixel_accuracy"], "lr": lr}
        check_finite(epoch, row, recipe)
        self.majority_val_miou = majority_class_miou(scores["confusion_matrix"])
        self.scheduler.after_epoch(scores["miou"])
        return row, speed

    def train_one_epoch(self, description: str) -> tuple[float, int]:
        """One pass over this process's share of the training split, the lr schedule stepped per batch;
        returns the mean loss per image and the number of images, over all processes. A process training alone
        stops at the first batch whose loss is not finite (the mean it returns is not either); under torchrun the
        others would wait for it at the next gradient all-reduce, so every process ends the epoch and all of them
        see the same non-finite sum."""
        self.network.train()
        total, count = 0.0, 0
        for images, masks, labelled in tqdm(self.data.train_loader, desc=description, unit="batch", leave=False,
                                            disable=None if distributed.is_main() else True):
            images, masks, labelled = (part.to(self.device, non_blocking=True) for part in (images, masks, labelled))
            images = images.contiguous(memory_format=memory_format(self.device, self.precision))
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.precision):
                logits = self.network(images)
            loss = self.loss_fn(logits.float(), masks, labelled)
            self.scaler.scale(loss).backward()
            if self.params.train.grad_clip_norm > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.params.train.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.after_batch()
            total += loss.item() * len(images)
            count += len(images)
            if not math.isfinite(total) and distributed.world_size() == 1:
                break
            self.stop.stop_point(f"at a batch boundary of {description}")
        total, count = distributed.sum_over_processes(torch.tensor([total, count], dtype=torch.float64)).tolist()
        return total / max(count, 1), int(count)

    def validate(self) -> dict:
        """Loss and scores on the val split, in the precision and layout the model trains in (bf16 on a CPU
        scores 3x faster than fp32); the evaluate stage scores the chosen checkpoint in fp32."""
        with autocast(self.device, self.precision):
            return score_loader(self.model, self.stop.until_asked(self.data.val_loader), self.device,
                                len(self.class_names), self.data.partial, loss_fn=self.loss_fn,
                                total=distributed.sum_over_processes,
                                memory_format=memory_format(self.device, self.precision))

    def snapshot(self) -> torch.Tensor:
        """Predictions on the fixed progress images, for the GIF."""
        with autocast(self.device, self.precision):
            return class_indices(predict_batch(self.model, self.data.progress_images.to(self.device))).byte().cpu()

    def restore(self, state: TrainState) -> None:
        """Continue from a saved state: weights, optimizer and schedule (the schedule remapped if the number of
        processes, hence of steps per epoch, changed)."""
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)


def build_trainer(params: Params, processed_dir: Path, manifest: dict, device: torch.device) -> Trainer:
    recipe = params.train
    precision = pick_precision(recipe.precision, device)
    class_names, image_size = manifest["classes"], manifest["image_size"]
    data = build_data(params, processed_dir, manifest, device, distributed.rank(), distributed.world_size())
    model = to_device(build_segmentation_model(params, class_names, image_size, distributed.is_main()), device,
                      precision)
    sync_batchnorm = distributed.use_sync_batchnorm(recipe.distributed.sync_batchnorm, recipe.batch_size, device)
    network = distributed.data_parallel(model, device, sync_batchnorm,
                                        find_unused_parameters=recipe.freeze_encoder_epochs > 0)
    optimizer, scheduler = build_optimization(params, model, len(data.train_loader))
    return Trainer(params, data, model, network, build_training_loss(params, data, len(class_names)), optimizer,
                   scheduler, torch.amp.GradScaler(device.type, enabled=precision == "fp16"), device, precision,
                   sync_batchnorm, class_names, image_size,
                   trial=pruning.TrialLink.from_environment())


def train(params: Params, processed_dir: Path, outputs: TrainOutputs, time_budget: float | None = None) -> dict:
    """Run (or resume) the training loop with MLflow tracking; returns the best epoch's numbers.

    Under torchrun every process trains and validates its share; rank 0 alone writes the state, the
    outputs and the MLflow run, and decides whether to resume. `time_budget` (seconds, a benchmark's knob
    rather than a recipe param) ends the training early, as a finished one (see run_epochs)."""
    manifest = read_manifest(processed_dir)
    check_params_against_data(params, manifest, processed_dir)
    configure_torch(params.train)
    with distributed.process_group(pick_device(params.train.device)) as device:
        main = distributed.is_main()
        if main:
            remove_stale_temporaries(outputs)
            report_unseen_classes(manifest, processed_dir)
        # before init_from, which may name a model in the store
        experiment_id = setup_experiment(params.mlflow) if main else None
        if main and is_server(mlflow.get_tracking_uri()):  # a local store has no users to refuse
            check_rights_to_register(model_name(params, manifest["classes"]))
        identity = fingerprint(without_launch_params(flatten(active(params))), manifest)  # a budget, not its epochs
        state = distributed.from_main(resume_or_start(outputs.state, identity) if main else None)
        params = budget.fit_to_budget(params, state, lambda fitted: build_trainer(fitted, processed_dir, manifest,
                                                                                  device), outputs.state)
        trainer = build_trainer(params, processed_dir, manifest, device)
        if main:
            log.info(describe(params, trainer))
        flat_params = flatten(active(params))
        digest = data_digest(processed_dir) if main else None  # reads every array: once, for run and card
        if state.epoch:
            trainer.restore(state)
        try:
            with trainer.stop.listening(), (training_run(experiment_id, state.run_id, params) if main
                                             else nullcontext()) as run:
                with trainer.stop.deferring():
                    if main and state.run_id is None:
                        state.run_id = run.info.run_id
                        log_run(params, flat_params, trainer, processed_dir, digest)
                    if main and trainer.trial:
                        mlflow.set_tags(trainer.trial.tags())
                        trainer.trial.started(run.info.run_id)
                    if main:
                        log_missing_epochs(run.info.run_id, state.history)
                        write_resolved(params, outputs, trainer)
                        probe_artifact_store(outputs.resolved, "reports/train")  # before any epoch
                    resumed_after, started = state.epoch, time.perf_counter()
                    run_epochs(params, outputs, state, trainer, time_budget)
                if main:
                    finish(params, outputs, state, trainer, processed_dir, manifest, digest,
                           time.perf_counter() - started, resumed_after)
        except TrainingDiverged:
            # every process stops at the same epoch; the first to exit makes torchrun SIGTERM the rest, which
            # would close rank 0's run as KILLED: all of them leave once it is closed as FAILED
            distributed.barrier()
            raise
        distributed.barrier()  # the other processes end once rank 0 has written everything
    return state.best


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


def run_epochs(params: Params, outputs: TrainOutputs, state: TrainState, trainer: Trainer,
               time_budget: float | None = None) -> None:
    """The remaining epochs. Every process keeps the same bookkeeping (the rows are the same everywhere),
    so all of them stop early together; rank 0 saves the state and logs the epoch. Once `time_budget`
    seconds have passed since the first of these epochs started, no new one starts. Ctrl-C and SIGTERM stop them at
    the trainer's stop points: before each epoch, at each batch boundary, after validation."""
    recipe = params.train
    started, first = time.perf_counter(), state.epoch + 1
    for epoch in range(first, recipe.epochs + 1):
        trainer.stop.stop_point(f"before epoch {epoch}")
        if state.epochs_without_improvement >= recipe.early_stopping_patience > 0:
            if distributed.is_main():
                log.info(f"early stopping: val mIoU has not improved for {recipe.early_stopping_patience} epochs")
            break
        row, speed = trainer.run_epoch(epoch)
        state.record(row, trainer.model)
        state.majority_val_miou = trainer.majority_val_miou
        state.epoch = epoch
        if distributed.is_main():
            save_epoch(params, outputs, state, trainer, row)
            elapsed = time.perf_counter() - started
            log.info(epoch_line(row, recipe.epochs, speed, elapsed, eta=elapsed / (epoch - first + 1) *
                                (recipe.epochs - epoch)) + (budget.first_epoch_note(recipe) if epoch == first else ""))
        if trainer.trial and distributed.from_main(distributed.is_main() and trainer.trial.prune_after(row,
                                                                                                       recipe.epochs)):
            break
        if epoch < recipe.epochs and budget_spent(started, time_budget):
            if distributed.is_main():
                log.info(f"time budget of {time_budget:g} s spent after epoch {epoch} of {recipe.epochs}")
            break


def epoch_line(row: dict, epochs: int, speed: float, elapsed: float, eta: float) -> str:
    """One epoch's results, the training speed, the time since this process's first epoch started and the time
    left at its mean pace so far (early stopping may end sooner)."""
    return (f"epoch {row['epoch']}/{epochs}: train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
            f"val_miou {row['val_miou']:.4f} lr {row['lr']:.3g} | {speed:.1f} img/s, elapsed {duration(elapsed)}, "
            f"ETA {duration(eta)}")


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


def save_epoch(params: Params, outputs: TrainOutputs, state: TrainState, trainer: Trainer, row: dict) -> None:
    """Rank 0's part of an epoch: the progress snapshot, the resumable state, the MLflow metrics."""
    if row["epoch"] == 1 or row["epoch"] % params.train.progress_every == 0:
        state.snapshots.append((row["epoch"], trainer.snapshot()))
    state.model, state.optimizer = trainer.model.state_dict(), trainer.optimizer.state_dict()
    state.scheduler = trainer.scheduler.state_dict()
    state.save(outputs.state)
    log_epoch(row)


def budget_spent(started: float, time_budget: float | None) -> bool:
    """Whether `time_budget` seconds have passed since `started`, by rank 0's clock: the processes' clocks
    differ, and all of them must stop after the same epoch."""
    if time_budget is None:
        return False
    return distributed.from_main(time.perf_counter() - started >= time_budget)


def without_launch_params(flat_params: dict) -> dict:
    """The params that make a training what it is, less how it is launched: a training killed under N
    processes resumes under any number (`train.distributed.*`)."""
    return {name: value for name, value in flat_params.items() if not name.startswith("train.distributed.")}


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one process's epoch: reproducible, different in every process (so their augmentations
    differ), and the plain `seed + epoch` of a single-process run."""
    return seed + epoch + RANK_SEED_STRIDE * rank


def log_run(params: Params, flat_params: dict, trainer: Trainer, processed_dir: Path, data_digest: str) -> None:
    """What makes this run what it is: the active params, the values resolved on this machine, the data."""
    log_run_params(flat_params, {
        "model.num_parameters": count_parameters(trainer.model), "data.num_train": trainer.data.num_train,
        "data.num_val": trainer.data.num_val, **resolved_settings(trainer), **run_conditions(trainer)})
    log_dataset(params.data.dataset, params.data.own_root or str(processed_dir), data_digest)


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


def to_device(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    return model.to(device, memory_format=memory_format(device, precision))


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


def finish(params: Params, outputs: TrainOutputs, state: TrainState, trainer: Trainer, processed_dir: Path,
           manifest: dict, data_digest: str, seconds: float, resumed_after: int) -> None:
    """Write the best checkpoint and the reports, log them and the model with its card to MLflow, mark the state
    completed. `seconds` is the time the epochs after `resumed_after` took in this process."""
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
    mlflow.log_artifact(str(outputs.history), "reports/train")
    mlflow.log_artifact(str(outputs.metrics), "reports/train")
    mlflow.log_artifact(str(outputs.resolved), "reports/train")
    measured_on = Measurement.of(params.data.dataset, trainer.class_names, processed_dir, params.data.subset.val)
    name = model_name(params, trainer.class_names)
    model_card = card.training_card(name, params, manifest, data_digest, trainer.data.partial,
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
