"""Train a segmentation model on the preprocessed arrays, keeping the best epoch by val mIoU.

Everything comes from params.yaml: architecture, loss, optimizer, schedule, precision, augmentation.
The training state is saved after every epoch, so a killed run continues where it stopped, in the
same MLflow run (see state.py); Ctrl-C and SIGTERM stop it at a batch boundary, never in the middle of a write
(graceful_stop.py). Under torchrun the same loop runs in every process, data-parallel
(see distributed.py). A loss or val score that is not finite, or a loss that exploded, stops the training with a
FAILED run, and a model no better than the majority class is not registered (health.py).
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path

from pipeline.config import Params, active, flatten
from pipeline.paths import TrainOutputs
from pipeline.tracking.run import training_run
from pipeline.training import budget, distributed
from pipeline.training.device import pick_device
from pipeline.training.finish import finish
from pipeline.training.health import TrainingDiverged
from pipeline.training.loop import run_epochs
from pipeline.training.setup import configure_torch, read_checked_manifest
from pipeline.training.start import describe, prepare, record_start, resume_or_start, without_launch_params
from pipeline.training.state import fingerprint
from pipeline.training.trainer import build_trainer

log = logging.getLogger(__name__)


def train(params: Params, processed_dir: Path, outputs: TrainOutputs, time_budget: float | None = None) -> dict:
    """Run (or resume) the training loop with MLflow tracking; returns the best epoch's numbers.

    Under torchrun every process trains and validates its share; rank 0 alone writes the state, the
    outputs and the MLflow run, and decides whether to resume. `time_budget` (seconds, a benchmark's knob
    rather than a recipe param) ends the training early, as a finished one (see run_epochs)."""
    manifest = read_checked_manifest(params, processed_dir)
    configure_torch(params.train)
    with distributed.process_group(pick_device(params.train.device)) as device:
        main = distributed.is_main()
        experiment_id, digest = prepare(params, outputs, manifest, processed_dir) if main else (None, None)
        identity = fingerprint(without_launch_params(flatten(active(params))), manifest)  # a budget, not its epochs
        state = distributed.from_main(resume_or_start(outputs.state, identity) if main else None)
        params = budget.fit_to_budget(params, state, lambda fitted: build_trainer(fitted, processed_dir, manifest,
                                                                                  device), outputs.state)
        trainer = build_trainer(params, processed_dir, manifest, device)
        if main:
            log.info(describe(params, trainer))
        if state.epoch:
            trainer.restore(state)
        try:
            with trainer.stop.listening(), (training_run(experiment_id, state.run_id, params) if main
                                             else nullcontext()) as run:
                with trainer.stop.deferring():
                    if main:
                        record_start(params, outputs, state, trainer, run, processed_dir, digest)
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
