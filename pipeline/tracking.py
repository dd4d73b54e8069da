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
import logging
import os
import re
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
from filelock import FileLock
from mlflow.entities import Metric, RunStatus
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import Schema, TensorSpec

from pipeline.digest import file_digest
from pipeline.errors import UserError
from pipeline.model_registry import Measurement, describe_registered_model, register_and_promote
from pipeline.models import card
from pipeline.models.checkpoint import model_from_payload, read_checkpoint
from pipeline.models.onnx_graph import ARTIFACT_KEY as ONNX_ARTIFACT_KEY
from pipeline.models.onnx_graph import FILE_NAME as ONNX_FILE_NAME
from pipeline.models.onnx_graph import OnnxModelError, write_onnx
from pipeline.models.portable import ARTIFACT_KEY, FILE_NAME, write_portable
from pipeline.models.segmenter import SegmentationModel
from pipeline.repo import repo_root, resolve
from pipeline.secrets import redact, without_credentials

log = logging.getLogger(__name__)
SQLITE_PREFIX = "sqlite:///"
# Read once at import: mlflow.set_tracking_uri() writes this variable too, so a later read could not
# tell the user's setting from our own.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")
MODEL_DIGEST_TAG = "model_sha256"  # the sha256 of the checkpoint file a run wrote
PYFUNC_CODE = Path(__file__).resolve().parent / "models" / "pyfunc.py"
MODEL_PACKAGES = ("mlflow", "torch", "torchvision", "segmentation-models-pytorch", "timm", "huggingface-hub",
                  "safetensors", "numpy")
REFUSED = (401, 403)  # HTTP statuses of a tracking server that rejects the credentials
# What the experiment is for: training runs, not GenAI traces. MLflow 3.17's own UI ignores the tag and follows its
# sidebar switch (docs/how-to/mlflow.md); the tag tells tools and UIs that read it.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow says at INFO when it starts, stops and skips GPU sampling, three lines per training that tell nothing.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
# Seconds to connect to a tracking server, and for it to answer, in the one probe made before any work: MLflow's
# own calls retry an unreachable server for minutes in silence (274 s with its defaults) before failing.
PROBE_TIMEOUT = (10, 20)
# MLflow's REST retries during the artifact store's probe: a proxied store that fails answers HTTP 500, which MLflow
# retries for minutes by default (urllib3's backoff, 0 then 2 s here)
PROBE_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


class TrackingStoreError(UserError):
    """The configured MLflow store cannot be opened or written (a read-only file, no server there)."""


class ArtifactStoreError(UserError):
    """The run's artifact store does not take files (no such bucket, credentials it refuses, a broken proxy)."""


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


def model_signature() -> ModelSignature:
    """Any batch size, height and width: RGB floats in [0, 1] -> class indices (see models/pyfunc.py)."""
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
                          outputs=Schema([TensorSpec(np.dtype(np.int64), (-1, -1, -1))]))


@contextlib.contextmanager
def training_run(experiment_id: str, run_id: str | None, params) -> Iterator[mlflow.ActiveRun]:
    """A new run named and tagged after the DVC experiment, or the interrupted run `run_id` to continue.

    It ends FINISHED, FAILED on an error, or KILLED on Ctrl-C and SIGTERM (what `dvc queue kill` and schedulers
    send; stages/cli.py turns it into KeyboardInterrupt, which training/graceful_stop.py defers to a batch boundary),
    never left RUNNING. MLflow samples CPU, memory, disk, network (and NVIDIA GPUs, with nvidia-ml-py) into
    `system/*` metrics from a thread that ending the run stops: every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
    seconds, 10 by default, under 10 ms of CPU each."""
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


def log_model(checkpoint: Path, with_onnx: bool = True) -> ModelInfo:
    """Log the checkpoint as a "models from code" pyfunc: the weights as safetensors, the network rebuilt from
    the project's code, so neither MLflow nor the project unpickles anything to load it (a pickle runs code); and
    beside them, `with_onnx`, the same model as an ONNX graph, for onnxruntime and other runtimes."""
    with tempfile.TemporaryDirectory() as tmp:
        payload = read_checkpoint(checkpoint)
        weights = write_portable(payload, Path(tmp) / FILE_NAME)
        artifacts = {ARTIFACT_KEY: str(weights)}
        if with_onnx:
            artifacts.update(onnx_artifact(model_from_payload(payload, checkpoint), Path(tmp)))
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_CODE), artifacts=artifacts,
            code_paths=[str(PYFUNC_CODE.parents[1])], signature=model_signature(),
            input_example=np.full((1, 3, 8, 8), 0.5, dtype=np.float32), pip_requirements=model_requirements())


def onnx_artifact(model: SegmentationModel, folder: Path) -> dict[str, str]:
    """The model as an ONNX graph checked against torch (models/onnx_graph.py), for onnxruntime and other runtimes.
    A model that torch cannot export, or whose graph disagrees, is logged without one and a warning says why: the
    trained weights must not be lost to it."""
    started = time.perf_counter()
    try:
        parity = write_onnx(model, folder / ONNX_FILE_NAME)
    except OnnxModelError as error:
        log.warning(f"the model is logged without {ONNX_FILE_NAME}: {error}")
        return {}
    log.info(f"{ONNX_FILE_NAME}: exported and checked in {time.perf_counter() - started:.1f} s ({parity})")
    return {ONNX_ARTIFACT_KEY: str(folder / ONNX_FILE_NAME)}


def model_requirements() -> list[str]:
    """The installed versions of what the logged code imports (inferring them costs seconds and misses some)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in MODEL_PACKAGES]


def log_and_promote_model(checkpoint: Path, name: str, measurement: Measurement, val_miou: float,
                          metrics: dict[str, float], model_card: str, with_onnx: bool = True,
                          register: bool = True) -> None:
    """Log the model (see log_model) with its `metrics` and its card; if `register`, register it under `name` with the
    card as the version's description, and let the registry decide whether it is the new `champion`
    (model_registry.py)."""
    model = log_model(checkpoint, with_onnx)
    mlflow.log_metrics(metrics, model_id=model.model_id)
    store_card(model.model_id, model_card)
    if register:
        register_and_promote(model.model_uri, name, measurement, val_miou, description=model_card)


REGISTERED_NAME_TAG = "segmentation.registered_name"


def registration_tags(name: str, measurement: Measurement, val_miou: float) -> dict[str, str]:
    """What register_and_promote needs, on a run whose model is registered later (the best trial of a study)."""
    return {REGISTERED_NAME_TAG: name, **measurement.tags(), "segmentation.val_miou": repr(float(val_miou))}


def store_card(model_id: str, model_card: str) -> None:
    """The card as `model_card.md` among the logged model's files, which its registered versions share."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / card.FILE_NAME
        path.write_text(model_card)
        mlflow.MlflowClient().log_model_artifact(model_id, str(path))


def add_to_cards(run_id: str, title: str, body: str) -> None:
    """Put section `title` into the card of every version registered from the run: description and model_card.md,
    and the registered model's own description where it shows that version's card."""
    client = mlflow.MlflowClient()
    model_ids = logged_models_of(client, run_id)
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        model_card = card.with_section(version.description or "", title, body)
        client.update_model_version(version.name, version.version, description=model_card)
        for model_id in model_ids:
            if version.source == f"models:/{model_id}":  # the store keeps a version's model only in its source
                store_card(model_id, model_card)
        describe_registered_model(client, version.name)


def logged_models_of(client: mlflow.MlflowClient, run_id: str) -> list[str]:
    """The ids of the models the run logged (a training run logs one)."""
    outputs = client.get_run(run_id).outputs
    return [output.model_id for output in (outputs.model_outputs if outputs else [])]


def tag_model_file(model_file: Path) -> None:
    """Mark the active run as the maker of this checkpoint, so later stages find the run from the file alone:
    the run id stays out of DVC-tracked outputs, which identical runs must write byte for byte."""
    mlflow.set_tag(MODEL_DIGEST_TAG, file_digest([model_file]))


def run_of_model(experiment_id: str, model_file: Path) -> str | None:
    """The latest run of the experiment that wrote exactly this checkpoint (identical runs write equal bytes)."""
    digest = file_digest([model_file])
    runs = mlflow.search_runs([experiment_id], filter_string=f"tags.{MODEL_DIGEST_TAG} = '{digest}'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    return runs[0].info.run_id if runs else None


def run_name(model: str, dataset: str) -> str:
    """The DVC experiment's name, so MLflow and `dvc exp show` speak of the same thing; for a plain
    `dvc repro`, what was trained on what."""
    return os.environ.get("DVC_EXP_NAME") or f"repro-{model}-{dataset}"


METRIC_UNSAFE = re.compile(r"[^\w.\- ]")  # what MLflow allows in a metric name on every system, less `/` and `:`


def iou_metrics(per_class_iou: dict[str, float | None]) -> dict[str, float]:
    """Per-class IoU as MLflow metrics `iou/<class>`, to chart and compare runs class by class (a class absent from
    both the truth and the predictions has none). Characters MLflow refuses in a name, and `/`, become `_`."""
    return {"iou/" + (METRIC_UNSAFE.sub("_", name).strip(".") or "_"): value
            for name, value in per_class_iou.items() if value is not None}


def attach_to_run(mlflow_params, model_file: Path, metrics: dict[str, float], files: list[Path],
                  artifact_dir: str) -> str | None:
    """Add a later stage's metrics and files to the training run that wrote `model_file`, the metrics linked to the
    run's logged model too (they score it), and return the run's id; without such a run in the store (a model from
    a DVC remote, another store), warn, attach nothing and return None."""
    experiment_id = setup_experiment(mlflow_params)
    run_id = run_of_model(experiment_id, model_file)
    if run_id is None:
        log.warning(f"no run in MLflow experiment {mlflow_params.experiment!r} ({redact(mlflow.get_tracking_uri())})"
                    f" wrote {model_file}; its {artifact_dir} are not attached to any run")
        return None
    client = mlflow.MlflowClient()
    model_ids = logged_models_of(client, run_id) or [None]
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, value, now, 0, model_id=model_id, run_id=run_id)
                                      for name, value in metrics.items() for model_id in model_ids])
    for path in files:
        client.log_artifact(run_id, str(path), artifact_dir)
    return run_id
