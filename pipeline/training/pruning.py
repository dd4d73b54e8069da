"""A training that runs as a trial of an Optuna study reports each epoch's value to the trial and stops when the
study's pruner says so.

The search worker (pipeline/search) starts `dvc exp run` with SEARCH_STORAGE, SEARCH_STUDY, SEARCH_TRIAL (the trial
number) and SEARCH_PRUNER (the name of optuna's pruner class and its arguments, as JSON) in the environment:
environment variables are not DVC params, so the experiment stays what its params say, and `dvc repro` of it trains
every epoch. A pruned training ends like a finished one (best-so-far checkpoint, metrics, logged model) with
`pruned: 1` in its metrics and a `pruned` tag on its run; the worker marks the trial pruned. A trial's model is logged
but not registered: the study registers its best trial's (pipeline/search/best.py).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

STORAGE, STUDY, TRIAL, PRUNER, REPORTED = "SEARCH_STORAGE", "SEARCH_STUDY", "SEARCH_TRIAL", "SEARCH_PRUNER", \
    "SEARCH_REPORTED"
RUN_ID_ATTR = "mlflow_run_id"  # the trial's user attribute naming its training's MLflow run

log = logging.getLogger(__name__)


@dataclass
class TrialLink:
    """The trial this training runs as (rank 0 alone talks to the study's storage)."""
    storage: str
    study: str
    number: int
    pruner: dict  # {"class": "MedianPruner", "arguments": {...}}, checked by the worker (pipeline/search/space.py)
    reported: str = "val_miou"  # the history column the study optimises, reported every epoch
    pruned_after: int | None = None  # the epoch after which the pruner stopped the training
    _trial: Any = field(default=None, repr=False)

    @classmethod
    def from_environment(cls) -> TrialLink | None:
        if not os.environ.get(STUDY):
            return None
        return cls(os.environ[STORAGE], os.environ[STUDY], int(os.environ[TRIAL]), json.loads(os.environ[PRUNER]),
                   os.environ.get(REPORTED, "val_miou"))

    def trial(self):
        """The live optuna Trial, opened once, with the worker's pruner (a study does not store its pruner)."""
        if self._trial is None:
            import optuna

            pruner = getattr(optuna.pruners, self.pruner["class"])(**self.pruner["arguments"])
            storage = optuna.storages.RDBStorage(self.storage)
            study = optuna.load_study(study_name=self.study, storage=storage, pruner=pruner)
            self._trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(
                study._study_id, self.number))
        return self._trial

    def tags(self) -> dict[str, str]:
        """On the trial's MLflow run, so one search (`tags.study = 'NAME'`) shows the whole study."""
        return {"study": self.study, "trial": str(self.number)}

    def started(self, run_id: str) -> None:
        self.trial().set_user_attr(RUN_ID_ATTR, run_id)

    def prune_after(self, row: dict, epochs: int) -> bool:
        """Report the epoch's value; whether the pruner stops the training here (never after the last epoch: a
        finished training is a complete trial)."""
        trial = self.trial()
        trial.report(row[self.reported], row["epoch"])
        if row["epoch"] < epochs and trial.should_prune():
            self.pruned_after = row["epoch"]
            log.info(f"trial {self.number} of study {self.study} pruned after epoch {row['epoch']} of {epochs}: "
                     f"{self.reported} {row[self.reported]:.4f}")
            return True
        return False

    def metrics(self) -> dict[str, int]:
        """What the experiment's metrics file records of the trial."""
        return {"pruned": int(self.pruned_after is not None)}

    def end_tags(self) -> dict[str, str]:
        return {"pruned": str(self.pruned_after is not None).lower(),
                **({"pruned_after_epoch": str(self.pruned_after)} if self.pruned_after is not None else {})}
