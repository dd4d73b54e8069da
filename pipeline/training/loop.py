"""The epoch loop: the remaining epochs, each saved as a resumable state and logged; it ends at the last epoch, on
early stopping, when the Optuna trial is pruned, when a time budget is spent, or at Ctrl-C and SIGTERM."""
from __future__ import annotations

import logging
import time

from pipeline.config import Params
from pipeline.logs import duration
from pipeline.paths import TrainOutputs
from pipeline.tracking.run import log_epoch
from pipeline.training import budget, distributed
from pipeline.training.state import TrainState
from pipeline.training.trainer import Trainer

log = logging.getLogger(__name__)


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
