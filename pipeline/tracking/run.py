"""The training's MLflow run: named and tagged after the DVC experiment that made it, its params and dataset, its
per-epoch metrics, and a probe of its artifact store before any epoch."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow.entities import RunStatus

from pipeline.digest import file_digest
from pipeline.errors import UserError
from pipeline.repo import repo_root
from pipeline.secrets import redact, without_credentials
from pipeline.tracking.store import is_server

log = logging.getLogger(__name__)
# MLflow says at INFO when it starts, stops and skips GPU sampling, three lines per training that tell nothing.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
# MLflow's REST retries during the artifact store's probe: a proxied store that fails answers HTTP 500, which MLflow
# retries for minutes by default (urllib3's backoff, 0 then 2 s here)
PROBE_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


class ArtifactStoreError(UserError):
    """The run's artifact store does not take files (no such bucket, credentials it refuses, a broken proxy)."""


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=repo_root()).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_tags(dataset: str, model: str) -> dict[str, str]:
    """Tags that lead from an MLflow run back to the DVC experiment and code that made it."""
    exp_name = os.environ.get("DVC_EXP_NAME")
    tags = {"dataset": dataset, "model": model, "dvc.stage": os.environ.get("DVC_STAGE", "")}
    if exp_name:
        tags["dvc.exp_name"] = exp_name
    sweep = sweep_of(exp_name)
    if sweep:
        tags["sweep"] = sweep
    baseline = os.environ.get("DVC_EXP_BASELINE_REV")
    if baseline:
        tags["dvc.baseline_rev"] = baseline
    commit = git_commit()
    if commit:
        tags["git.commit"] = commit
    how_back = (f"Restore this experiment's code, params and outputs with `dvc exp apply {exp_name}`."
                if exp_name else "Made by `dvc repro` on the committed workspace (see the git.commit tag).")
    tags["mlflow.note.content"] = how_back
    return tags


def sweep_of(exp_name: str | None) -> str | None:
    """NAME for the experiments DVC names NAME-1, NAME-2, ... (`dvc exp run --queue -n NAME -S 'key=a,b'`): the
    runs of one grid. DVC gives a run nothing else that ties it to the grid it was queued with (the random names
    of an unnamed grid are unrelated, and the environment of `dvc exp run --queue` does not reach the workers)."""
    member = re.fullmatch(r"(.+)-\d+", exp_name or "")
    return member.group(1) if member else None


@contextlib.contextmanager
def training_run(experiment_id: str, run_id: str | None, params) -> Iterator[mlflow.ActiveRun]:
    """A new run named and tagged after the DVC experiment, or the interrupted run `run_id` to continue.

    It ends FINISHED, FAILED on an error, or KILLED on Ctrl-C and SIGTERM (what `dvc queue kill` and schedulers send;
    stages/lifecycle/signals.py turns it into KeyboardInterrupt, which training/graceful_stop.py defers to a batch
    boundary), never left RUNNING. MLflow samples CPU, memory, disk, network (and NVIDIA GPUs, with nvidia-ml-py) into
    `system/*` metrics from a thread that ending the run stops: every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds,
    10 by default, under 10 ms of CPU each."""
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, log_system_metrics=True)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name(params.model, params.data.dataset),
                               tags=run_tags(params.data.dataset, params.model), log_system_metrics=True)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
    if is_server(mlflow.get_tracking_uri()):  # MLflow's own link printed the password (pipeline/secrets.py)
        log.info(f"MLflow run {run.info.run_name}: {run_link(run.info.experiment_id, run.info.run_id)}")


def run_link(experiment_id: str, run_id: str) -> str:
    """The run's page on the tracking server, without the login the tracking URI may hold."""
    return f"{without_credentials(mlflow.get_tracking_uri()).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def probe_artifact_store(path: Path, artifact_dir: str) -> None:
    """Log `path` to the active run before any training: the end of the run logs the model and reports to the same
    store, so one that does not take files is one line naming its URI and what failed, rather than a traceback after
    the whole training. Any exception counts: the stores' clients (boto3, MLflow's REST, the file system, ...) share
    no base class. The user's own MLFLOW_HTTP_REQUEST_* settings win over PROBE_RETRIES."""
    saved = {name: os.environ.get(name) for name in PROBE_RETRIES}
    os.environ.update({name: value for name, value in PROBE_RETRIES.items() if saved[name] is None})
    try:
        mlflow.log_artifact(str(path), artifact_dir)
    except Exception as error:
        raise ArtifactStoreError(
            f"the artifact store {redact(mlflow.get_artifact_uri())} of MLflow run {mlflow.active_run().info.run_id} "
            f"did not take {Path(path).name} ({artifact_failure(error)}); the end of the training logs the model "
            "there: fix the store or its credentials, or set mlflow.experiment to an experiment whose store works"
        ) from error
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def artifact_failure(error: Exception) -> str:
    """What failed, without the temporary paths and URLs around it: S3's error code and message, the HTTP status a
    tracking server that proxies the store answered, or the first words of anything else."""
    text = " ".join(str(error).split())
    s3 = re.search(r"An error occurred \(\w+\) when calling the \w+ operation: .*", text)
    if s3:
        return s3.group(0)
    proxied = re.search(r"too many (\d+) error responses", text)
    if proxied:
        return (f"the MLflow server {redact(mlflow.get_tracking_uri())} answered HTTP {proxied.group(1)}: its log says "
                "why its --artifacts-destination failed")
    return text[:200] or type(error).__name__


def log_run_params(flat_params: dict, resolved: dict) -> None:
    """The active params (credentials redacted) and the values resolved at run time that change the result
    (device, precision, threads, processes), so runs on different machines can be told apart."""
    mlflow.log_params({name: redact(value) for name, value in {**flat_params, **resolved}.items()})


def log_dataset(name: str, source: str, digest: str) -> None:
    """The processed arrays as the run's training input: name, where they came from, and the digest of their bytes
    (data_digest)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    location = redact(source if "://" in source else Path(source).resolve().as_uri())
    with warnings.catch_warnings():  # a file URI matches two of MLflow's equivalent local source types
        warnings.simplefilter("ignore", UserWarning)
        source_object = resolve_dataset_source(location)
    dataset = MetaDataset(source_object, name=name, digest=digest)
    try:
        mlflow.log_input(dataset, context="training")
    except mlflow.exceptions.MlflowException as error:
        # Two queue workers logging the same data first at once: the store finds no such dataset in either, and
        # the slower insert breaks its unique key (BAD_REQUEST, the database error over REST). It exists now,
        # and logging again links this run to it.
        if error.error_code != "BAD_REQUEST":
            raise
        mlflow.log_input(dataset, context="training")


def data_digest(processed_dir: Path) -> str:
    """A digest of the processed arrays: the dataset input's digest in MLflow, and the model card's."""
    return file_digest(sorted(Path(processed_dir).iterdir()))[:16]


def run_exists(run_id: str) -> bool:
    """Whether the run is in the store and not deleted (a deleted run cannot be continued)."""
    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage != "deleted"
    except mlflow.exceptions.MlflowException:
        return False


def close_abandoned_run(run_id: str) -> None:
    """Mark KILLED a run left RUNNING whose training state is being replaced by another training's."""
    if run_exists(run_id) and mlflow.MlflowClient().get_run(run_id).info.status == "RUNNING":
        mlflow.MlflowClient().set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


def log_epoch(row: dict) -> None:
    """One row of the history as metrics at step = epoch, in one call."""
    mlflow.log_metrics({name: value for name, value in row.items() if name != "epoch"}, step=row["epoch"])


def log_missing_epochs(run_id: str, history: list[dict]) -> None:
    """After a resume: log the epochs the state has but the run lacks (killed between the two writes)."""
    logged = {metric.step for metric in mlflow.MlflowClient().get_metric_history(run_id, "val_miou")}
    for row in history:
        if row["epoch"] not in logged:
            log_epoch(row)


def run_name(model: str, dataset: str) -> str:
    """The DVC experiment's name, so MLflow and `dvc exp show` speak of the same thing; for a plain
    `dvc repro`, what was trained on what."""
    return os.environ.get("DVC_EXP_NAME") or f"repro-{model}-{dataset}"
