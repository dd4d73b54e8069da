"""A study's result: its best trial, shown in one command and registered as one model version.

Trials log their models to their runs but register nothing (a study of 50 trials must not add 50 versions); the
study's best complete trial (pruned and failed ones never are) is registered from its run, with what its val mIoU
was measured on, and judged for `champion` by the registry's comparable-runs rule (pipeline/tracking/registry.py).
"""
from __future__ import annotations

import logging
from collections import Counter

import mlflow
import optuna
from optuna.trial import FrozenTrial

from pipeline.config import Params
from pipeline.models import card
from pipeline.search.space import format_value
from pipeline.secrets import redact
from pipeline.tracking.logged_model import REGISTERED_NAME_TAG, logged_models_of
from pipeline.tracking.registry import Measurement, register_and_promote, settle_champion
from pipeline.tracking.run import run_exists
from pipeline.tracking.store import setup_experiment
from pipeline.training.health import NOT_REGISTERED_TAG
from pipeline.training.pruning import RUN_ID_ATTR

log = logging.getLogger(__name__)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None while there is none."""
    try:
        return study.best_trial
    except ValueError:
        return None


def summary(study: optuna.Study) -> str:
    """The study's trials by state and its best trial: number, experiment, value, params, MLflow run."""
    metric = study.user_attrs.get("metric", "value")
    states = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
    counts = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "no trials yet"
    best = best_trial(study)
    if best is None:
        return f"study {study.study_name}: {counts}; no complete trial yet"
    values = ", ".join(f"{key}={format_value(value)}" for key, value in best.params.items())
    return (f"study {study.study_name}: {counts}\n"
            f"best: trial {best.number}, experiment {best.user_attrs.get('dvc_exp', '?')}, "
            f"{metric} {best.value:.4f} ({study.direction.name.lower()})\n"
            f"values: {values}\n"
            f"MLflow run: {best.user_attrs.get(RUN_ID_ATTR, 'unknown')}")


def register_best(study: optuna.Study, params: Params) -> None:
    """Register the best trial's model unless it is registered already (every worker that ends tries)."""
    best = best_trial(study)
    if best is None:
        log.info(f"study {study.study_name} has no complete trial: nothing to register")
        return
    run_id = best.user_attrs.get(RUN_ID_ATTR)
    setup_experiment(params.mlflow)
    client = mlflow.MlflowClient()
    if run_id is None or not run_exists(run_id):
        log.warning(f"trial {best.number}'s MLflow run {run_id} is not in {redact(mlflow.get_tracking_uri())}:"
                    " its model is not registered")
        return
    registered = client.search_model_versions(f"run_id = '{run_id}'")
    if registered:
        log.info(f"trial {best.number}'s model is registered already: {registered[0].name} version "
                 f"{registered[0].version}")
        return
    register_run_model(client, run_id)


def register_run_model(client: mlflow.MlflowClient, run_id: str) -> None:
    """Register the model a trial's run logged, with the tags the training left for it (registration_tags)."""
    tags = client.get_run(run_id).data.tags
    model_ids = logged_models_of(client, run_id)
    measurement = Measurement.from_tags(tags)
    if not model_ids or measurement is None or REGISTERED_NAME_TAG not in tags:
        why = tags.get(NOT_REGISTERED_TAG, "it logged no model, or not as a trial")
        log.warning(f"the best trial's model (MLflow run {run_id}) is not registered: {why}")
        return
    name = tags[REGISTERED_NAME_TAG]
    version = register_and_promote(f"models:/{model_ids[0]}", name, measurement, float(tags["segmentation.val_miou"]),
                                   description=stored_card(client, model_ids[0]))
    keep_one_version(client, run_id, name, version.version)


def keep_one_version(client: mlflow.MlflowClient, run_id: str, name: str, mine: str) -> None:
    """Two workers ending at once may both register the best run: the first version stays, the later one goes
    (each checks after writing, as the champion's settling does) and the champion is settled again."""
    versions = sorted(int(version.version) for version in client.search_model_versions(f"run_id = '{run_id}'"))
    if int(mine) != versions[0]:
        client.delete_model_version(name, mine)
        settle_champion(client, name)
        log.info(f"{name} version {versions[0]} already holds this run's model: version {mine} removed")


def stored_card(client: mlflow.MlflowClient, model_id: str) -> str:
    """The model card the training stored with the logged model (store_card), or none."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    location = f"{client.get_logged_model(model_id).artifact_location}/{card.FILE_NAME}"
    shown = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get()
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)  # one small file: no progress bar over the summary
    try:
        return mlflow.artifacts.load_text(location)
    except Exception as error:  # the stores' clients share no error class; a version without a card still counts
        log.warning(f"the registered version gets no model card ({' '.join(str(error).split())[:200]})")
        return ""
    finally:
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(shown)
