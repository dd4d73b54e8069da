"""Later stages' results on the training run: evaluate's metrics and plot's figures go to the run that wrote the
checkpoint, found by the checkpoint's digest, since no run id may sit in DVC's outputs."""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric

from pipeline.digest import file_digest
from pipeline.secrets import redact
from pipeline.tracking.logged_model import logged_models_of
from pipeline.tracking.store import setup_experiment

log = logging.getLogger(__name__)
MODEL_DIGEST_TAG = "model_sha256"  # the sha256 of the checkpoint file a run wrote


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
