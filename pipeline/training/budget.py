"""`train.time_budget`: as many epochs as end within the budget on this machine, fixed before the schedule is built.

The poly and cosine schedules decay per iteration to 0 at the last step, so the number of iterations must be known
before the first one. A throwaway trainer, built as the real one, times a few real training steps, validation
batches and one state save (measure); the epochs follow from the time left (resolve_epochs), the whole schedule
(warmup, decay, validation after every epoch) inside the budget, never cut off halfway. The count is written where
a fixed one is (reports/train/resolved.json, the MLflow run's train.epochs, the first epoch line), so
`-S train.time_budget=null -S train.epochs=<count>` repeats the run without the clock: a budgeted run is
reproducible through its resolved epochs, not through its budget. A resumed run keeps the epochs it planned.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from pipeline.config import MAX_EPOCHS, Params
from pipeline.errors import UserError
from pipeline.training import distributed
from pipeline.training.setup import seed_everything
from pipeline.training.state import TrainState
from pipeline.training.trainer import Trainer

log = logging.getLogger(__name__)

PROBE_STEPS = 5        # timed training steps, after one untimed step (first-call allocations, the loader's start)
PROBE_VAL_BATCHES = 2  # timed validation batches, likewise
SAFETY = 0.05          # of the budget, kept for what the probe does not time: per-epoch logging, a busier machine


class BudgetTooSmall(UserError):
    """train.time_budget fits no whole schedule on this machine: said before the MLflow run starts."""


@dataclass(frozen=True)
class Timing:
    """What the probe measured, in seconds."""
    step: float       # one training step: a batch's forward, backward and optimizer step, its loading included
    val_batch: float  # one validation batch
    save: float       # one save of the training state (rank 0, after every epoch)
    spent: float      # budget already used: the probe, and building the trainer again for the real run


def epoch_seconds(timing: Timing, steps_per_epoch: int, val_batches: int) -> float:
    return timing.step * steps_per_epoch + timing.val_batch * val_batches + timing.save


def resolve_epochs(budget: float, timing: Timing, steps_per_epoch: int, val_batches: int,
                   warmup_epochs: int = 0) -> int:
    """The most epochs whose whole schedule ends within `budget` seconds, `SAFETY` of it kept back. A budget that
    fits no more than the warmup is an error naming the budget it would take: one epoch over the budget would
    break the promise, and a schedule cut short would end at a high learning rate."""
    epoch = epoch_seconds(timing, steps_per_epoch, val_batches)
    left = budget * (1 - SAFETY) - timing.spent
    epochs = min(MAX_EPOCHS, math.floor(left / epoch)) if left > 0 else 0
    if epochs > warmup_epochs:
        return epochs
    needed = math.ceil((timing.spent + (warmup_epochs + 1) * epoch) / (1 - SAFETY))
    warmup = f" after the {warmup_epochs} of train.warmup_epochs" if warmup_epochs else ""
    raise BudgetTooSmall(f"train.time_budget: {budget:g} s fits no whole schedule here: an epoch takes about "
                         f"{epoch:.1f} s ({steps_per_epoch} steps of {timing.step:.3g} s, validation and state "
                         f"save), the probe and setup {timing.spent:.1f} s; give at least {needed} s for one "
                         f"epoch{warmup}, or train on fewer images (data.subset.train)")


def per_batch(run: Callable[[Iterable], object], loader: Iterable, probe: int) -> float:
    """Seconds per batch of `run` over up to `probe` batches of `loader`, after one untimed batch (the only one
    timed when the loader has a single batch). `run` is called twice whatever the loader's length: under torchrun
    each call is collective, and the processes' val shards may differ by a batch."""
    batches: Iterator = iter(loader)
    size = len(loader)
    untimed = 1 if size > 1 else 0
    run(islice(batches, untimed))
    count = min(probe, size - untimed)
    started = time.perf_counter()
    run(islice(batches, count))
    return (time.perf_counter() - started) / max(count, 1)


def save_seconds(trainer: Trainer, state_path: Path) -> float:
    """One save of a state the size of the real one (weights, best weights, optimizer), beside it: rank 0's alone
    writes, the others wait for it."""
    if not distributed.is_main():
        return 0.0
    state_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": trainer.model.state_dict(), "best_weights": trainer.model.state_dict(),
               "optimizer": trainer.optimizer.state_dict()}
    started = time.perf_counter()
    # named like atomic_path's temporaries: a probe killed mid-write leaves one that the next start removes
    with tempfile.NamedTemporaryFile(dir=state_path.parent, prefix=f".{state_path.name}.", suffix=".tmp") as handle:
        torch.save(payload, handle)
    return time.perf_counter() - started


def measure(trainer: Trainer, state_path: Path, started: float, build_seconds: float) -> Timing:
    """Time `trainer`'s own training step and validation (its weights and optimizer change: throw it away)."""
    def train_on(batches: Iterable) -> None:
        probe = dataclasses.replace(trainer, data=dataclasses.replace(trainer.data, train_loader=batches))
        probe.train_one_epoch("time budget probe")

    def validate_on(batches: Iterable) -> None:
        dataclasses.replace(trainer, data=dataclasses.replace(trainer.data, val_loader=batches)).validate()

    step = per_batch(train_on, trainer.data.train_loader, PROBE_STEPS)
    val_batch = per_batch(validate_on, trainer.data.val_loader, PROBE_VAL_BATCHES)
    save = save_seconds(trainer, state_path)
    return Timing(step, val_batch, save, spent=time.perf_counter() - started + build_seconds)


def plan(params: Params, build: Callable[[Params], Trainer], state_path: Path) -> int:
    """The epochs rank 0 resolves from a probe that every process runs (a data-parallel step is collective)."""
    started = time.perf_counter()
    trainer = build(params)
    timing = measure(trainer, state_path, started, build_seconds=time.perf_counter() - started)
    steps, val_batches = len(trainer.data.train_loader), len(trainer.data.val_loader)
    del trainer
    seed_everything(params.train.seed)  # the real model starts from the same weights as an unbudgeted run's
    try:
        outcome: int | BudgetTooSmall = resolve_epochs(params.train.time_budget, timing, steps, val_batches,
                                                       params.train.warmup_epochs)
    except BudgetTooSmall as error:
        outcome = error
    outcome = distributed.from_main(outcome)
    if isinstance(outcome, BudgetTooSmall):
        raise outcome
    if distributed.is_main():
        log.info(f"time budget {params.train.time_budget:g} s: {outcome} epochs of about "
                 f"{epoch_seconds(timing, steps, val_batches):.1f} s ({steps} steps of {timing.step:.3g} s, "
                 f"{val_batches} val batches of {timing.val_batch:.3g} s, state save {timing.save:.2f} s) after "
                 f"{timing.spent:.1f} s of probe and setup; -S train.time_budget=null -S train.epochs={outcome} "
                 "repeats this run without the clock")
    return outcome


def fit_to_budget(params: Params, state: TrainState, build: Callable[[Params], Trainer], state_path: Path) -> Params:
    """`params` with train.epochs resolved from train.time_budget (kept in `state`: a resumed run continues the
    schedule it planned); without a budget, `params` as they are."""
    if params.train.time_budget is None:
        return params
    if state.planned_epochs is None:
        state.planned_epochs = plan(params, build, state_path)
    return params.model_copy(update={"train": params.train.model_copy(update={"epochs": state.planned_epochs})})


def first_epoch_note(recipe) -> str:
    """Said in the first epoch line of a budgeted run: where its epochs come from."""
    if recipe.time_budget is None:
        return ""
    return f" | {recipe.epochs} epochs resolved from train.time_budget {recipe.time_budget:g} s"
