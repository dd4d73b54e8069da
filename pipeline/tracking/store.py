"""MLflow: one store for every copy of the repo DVC runs a stage in, local or a team's tracking server.

DVC runs `--temp` and queued experiments in a copy under `.dvc/tmp/exps/` that it deletes
afterwards, so a relative sqlite path would silently lose those runs. Relative paths are resolved
against `DVC_ROOT` (the real repository root) and the experiment is created once, under a file
lock, with an explicit artifact location there too. A tracking server (`http(s)://`, selected with
MLFLOW_TRACKING_URI, credentials in MLFLOW_TRACKING_USERNAME/PASSWORD) keeps its own artifact store
and serialises writers itself: nothing local is locked or chosen for it.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import mlflow
from filelock import FileLock

from pipeline.errors import UserError
from pipeline.repo import repo_root, resolve
from pipeline.secrets import redact

SQLITE_PREFIX = "sqlite:///"
# Read once at import: mlflow.set_tracking_uri() writes this variable too, so a later read could not
# tell the user's setting from our own.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")
REFUSED = (401, 403)  # HTTP statuses of a tracking server that rejects the credentials
# What the experiment is for: training runs, not GenAI traces. MLflow 3.17's own UI ignores the tag and follows its
# sidebar switch (docs/how-to/mlflow.md); the tag tells tools and UIs that read it.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# Seconds to connect to a tracking server, and for it to answer, in the one probe made before any work: MLflow's
# own calls retry an unreachable server for minutes in silence (274 s with its defaults) before failing.
PROBE_TIMEOUT = (10, 20)


class TrackingStoreError(UserError):
    """The configured MLflow store cannot be opened or written (a read-only file, no server there)."""


def resolve_tracking_uri(configured: str) -> str:
    """MLFLOW_TRACKING_URI from the environment wins; a relative sqlite path is made absolute at the repo root."""
    uri = USER_TRACKING_URI or configured
    if uri.startswith(SQLITE_PREFIX):
        uri = SQLITE_PREFIX + str(resolve(uri[len(SQLITE_PREFIX):]))
    return uri


def setup_experiment(mlflow_params) -> str:
    """Point MLflow at the project's store and return the experiment id, creating it if needed."""
    uri = resolve_tracking_uri(mlflow_params.tracking_uri)
    mlflow.set_tracking_uri(uri)
    check_server(mlflow_params.tracking_uri)
    try:
        with store_lock():  # two workers creating a fresh database at once crash in its migration
            return experiment_id(mlflow_params.experiment, local_artifacts(uri, mlflow_params.experiment))
    except mlflow.exceptions.MlflowException as error:
        if error.get_http_status_code() in REFUSED:
            raise TrackingStoreError(f"the MLflow server {redact(uri)} refused the credentials (HTTP "
                                     f"{error.get_http_status_code()}): check MLFLOW_TRACKING_USERNAME and "
                                     "MLFLOW_TRACKING_PASSWORD, and that the user may edit experiments") from error
        raise store_error(uri, error) from error
    except OSError as error:
        raise store_error(uri, error) from error


def check_server(configured: str) -> None:
    """If the store (MLFLOW_TRACKING_URI, else `configured`) is a server, that it answers: said in one line before any
    work. The weights stage calls this too, so it is said before DVC removes train's outputs."""
    uri = resolve_tracking_uri(configured)
    if is_server(uri):
        check_reachable(uri, "MLFLOW_TRACKING_URI" if USER_TRACKING_URI else "mlflow.tracking_uri")


def check_reachable(uri: str, key: str) -> None:
    """One request to the server, without retries: any HTTP answer will do (the credentials and rights are for
    the calls that need them); none within PROBE_TIMEOUT is one line naming the server and `key`, the setting
    that chose it."""
    from mlflow.tracking._tracking_service.utils import get_default_host_creds  # the client's TLS and auth settings
    from mlflow.utils.rest_utils import http_request

    try:
        http_request(get_default_host_creds(uri), "/health", "GET", max_retries=0, timeout=PROBE_TIMEOUT,
                     raise_on_status=False)
    except mlflow.exceptions.MlflowException as error:
        raise TrackingStoreError(f"{key}: the MLflow server {redact(uri)} cannot be reached "
                                 f"({unreachable_reason(error)}); start it, or point {key} at one that runs") from None


def unreachable_reason(error: Exception) -> str:
    """The operating system's words (`[Errno 111] Connection refused`), not urllib3's paragraph around them."""
    if "timeout" in str(error):
        return f"no answer within {sum(PROBE_TIMEOUT)} s"
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(error))
    return found.group(0).strip() if found else " ".join(str(error).split())[:200]


def experiment_id(name: str, artifact_location: str | None) -> str:
    """The experiment's id, created if missing as a model-training experiment (an experiment made before, without
    the kind, gets it; one whose kind someone chose keeps it); on a server another worker may create it first."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        try:
            return mlflow.create_experiment(name, artifact_location=artifact_location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = mlflow.get_experiment_by_name(name)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def store_error(uri: str, error: Exception) -> TrackingStoreError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return TrackingStoreError(f"mlflow.tracking_uri: cannot use the MLflow store {redact(uri)} ({first_line})")


def local_artifacts(uri: str, experiment: str) -> str | None:
    """Artifacts of a local store go beside it at the repo root; a server decides where its artifacts go."""
    return None if is_server(uri) else (repo_root() / "mlartifacts" / experiment).as_uri()


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def store_lock() -> contextlib.AbstractContextManager:
    """A lock beside a sqlite store, for the few steps that parallel DVC queue workers must not interleave.
    A server needs none: it serialises its own database, and a file lock would not reach other machines."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith(SQLITE_PREFIX):
        return FileLock(Path(uri[len(SQLITE_PREFIX):] + ".lock"))
    return contextlib.nullcontext() if is_server(uri) else FileLock(repo_root() / ".mlflow.lock")
