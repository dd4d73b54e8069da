"""One search worker: the study's trials, one after another, each a named DVC experiment of this clone.

A trial is `dvc exp run --temp -n STUDY-<trial number> -S ++key=value ... <stage>`: the workspace stays as it was
(a workspace run would leave the trial's params.yaml staged for the next one), the experiment holds the trial's
params and results like any other (`dvc exp show`, `dvc exp apply`, `dvc exp push`), and its value is read from
the metrics file the experiment committed. The training learns it is a trial from the environment (see
pipeline/training/pruning.py), reports each epoch to it and stops when the pruner says so.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from pipeline.search.space import Space, format_value, override
from pipeline.search.stopping import StopRequest
from pipeline.training import pruning

log = logging.getLogger(__name__)


class TrialFailed(Exception):
    """A trial's experiment failed or left no value: the trial is marked failed and the worker goes on."""


def failed(message: str) -> TrialFailed:
    """The failure, said here: Optuna's own report of it is silenced with the rest of its log (storage.py)."""
    log.warning(message)
    return TrialFailed(message)


@dataclass
class Worker:
    study: str
    storage_url: str
    space: Space
    fixed: list[str]
    root: Path
    stop: StopRequest = field(default_factory=StopRequest)

    def objective(self, trial: optuna.Trial) -> float:
        values = self.space.suggest(trial)
        name = experiment_name(self.study, trial.number)
        trial.set_user_attr("dvc_exp", name)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{self.root}")  # which clone holds the experiment
        log.info(f"trial {trial.number} ({name}): {', '.join(f'{k}={format_value(v)}' for k, v in values.items())}")
        status = self.stop.run(self.command(name, values), self.environment(trial.number), self.root)
        if self.stop.now:
            raise KeyboardInterrupt(f"stopped during trial {trial.number}")
        if status:
            raise failed(f"trial {trial.number}: `dvc exp run` of {name} exited with status {status}")
        metrics = experiment_metrics(self.root, name, self.space.file.metrics_file)
        if metrics.get("pruned"):
            log.info(f"trial {trial.number} pruned")
            raise optuna.TrialPruned(f"{name} stopped by the pruner")
        if self.space.file.metric not in metrics:
            raise failed(f"trial {trial.number}: {self.space.file.metrics_file} of {name} has no "
                         f"{self.space.file.metric!r} (it has {', '.join(metrics)})")
        log.info(f"trial {trial.number}: {self.space.file.metric} {metrics[self.space.file.metric]:.4f}")
        return float(metrics[self.space.file.metric])

    def command(self, name: str, values: dict[str, Any]) -> list[str]:
        """The trial's `dvc exp run`: the fixed overrides, then its own values (which win)."""
        sets = [*self.fixed, *(override(key, value) for key, value in values.items())]
        return ["dvc", "exp", "run", "--temp", "-n", name, *[part for item in sets for part in ("-S", item)],
                self.space.file.stage]

    def environment(self, number: int) -> dict[str, str]:
        """The worker's environment, plus what tells the training which trial it is (not DVC params: the
        experiment reproduces without them)."""
        return {**os.environ, pruning.STORAGE: self.storage_url, pruning.STUDY: self.study,
                pruning.TRIAL: str(number), pruning.PRUNER: self.space.pruner.as_json(),
                pruning.REPORTED: self.space.file.metric}


def experiment_name(study: str, number: int) -> str:
    return f"{study}-{number}"


def git(root: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def experiment_metrics(root: Path, name: str, metrics_file: str) -> dict[str, Any]:
    """The metrics file as experiment `name` (of the commit checked out) committed it."""
    baseline = git(root, "rev-parse", "HEAD")
    ref = f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"
    try:
        return json.loads(git(root, "show", f"{ref}:{metrics_file}"))
    except subprocess.CalledProcessError as error:
        raise failed(f"experiment {name} has no {metrics_file} ({error.stderr.strip()})") from None
