"""The real training loop on tiny generated data: it learns, it resumes after a kill in the same MLflow run,
and partially labelled data trains with the marginal loss and is scored per labelled class."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import EvaluateParams, Params, as_dict, parse
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources import synthetic
from pipeline.data.sources.single_class import read_single_class
from pipeline.data.sources.voc import read_custom_voc
from pipeline.evaluation.evaluate import evaluate
from pipeline.models.checkpoint import load_checkpoint
from pipeline.paths import TrainOutputs
from pipeline.tracking.attach import run_of_model
from pipeline.training.health import TrainingDiverged
from pipeline.training.state import read_state
from pipeline.training.threads import resolve_threads
from pipeline.training.train import train
from tests.synthetic_data import write_single_class_root

pytestmark = pytest.mark.slow  # trains models and runs real MLflow stores

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = {"data": {"image_size": 64}, "models": {"unet": {"base_channels": 4, "depth": 2}},
        "train": {"epochs": 3, "batch_size": 4, "lr": 0.01}, "augment": {"crop_size": 0, "crops_per_image": 1}}


def tiny_params(tmp_path: Path, **train_overrides) -> Params:
    raw = json.loads(json.dumps(TINY))
    raw["train"].update(train_overrides)
    raw["mlflow"] = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "tests", "log_onnx": False}
    return parse(Params, raw, "")


def outputs(tmp_path: Path) -> TrainOutputs:
    return TrainOutputs(model=tmp_path / "models/model.pt", state=tmp_path / "models/train_state.pt",
                        history=tmp_path / "reports/history.csv", metrics=tmp_path / "reports/metrics.json",
                        resolved=tmp_path / "reports/resolved.json",
                        progress=tmp_path / "reports/progress.npz")


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(root / "raw", num_train=24, num_val=6, seed=1)
    write_interim(read_custom_voc(root / "raw", None), root / "interim")
    preprocess(root / "interim", root / "processed", 64)
    return root / "interim", root / "processed"


def run_history(tmp_path: Path, run_id: str) -> list[int]:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "val_miou")]


def run_of(model_file: Path) -> str:
    """The run that wrote the checkpoint, found as the evaluate and plot stages find it (no run id in the file)."""
    run_id = run_of_model(mlflow.get_experiment_by_name("tests").experiment_id, model_file)
    assert run_id is not None, f"no run tagged with the digest of {model_file}"
    return run_id


def test_training_learns_and_writes_every_output(synthetic_data, tmp_path):
    _, processed = synthetic_data
    best = train(tiny_params(tmp_path, epochs=4), processed, outputs(tmp_path))
    history = pd.read_csv(tmp_path / "reports/history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    checkpoint = torch.load(tmp_path / "models/model.pt", weights_only=False)
    assert checkpoint["epoch"] == best["best_epoch"] == int(history["val_miou"].idxmax()) + 1
    model = load_checkpoint(tmp_path / "models/model.pt")
    assert model(torch.rand(2, 3, 50, 70)).shape == (2, 6, 50, 70)
    assert "mlflow_run_id" not in checkpoint
    assert run_history(tmp_path, run_of(tmp_path / "models/model.pt")) == [1, 2, 3, 4]
    assert json.loads((tmp_path / "reports/resolved.json").read_text()) == {
        "lr": 0.01, "epochs": 4, "crops_per_image": 1,
        "device": "cpu", "precision": mlflow.get_run(run_of(tmp_path / "models/model.pt")).data.params["precision"],
        "num_threads": resolve_threads("auto"), "global_batch_size": 4, "sync_batchnorm": False, "num_classes": 6}
    progress = np.load(tmp_path / "reports/progress.npz")
    assert list(progress["epochs"]) == [1, 2, 4] and progress["predictions"].shape[1:] == (4, 64, 64)


def test_a_val_split_without_labelled_pixels_stops_the_training_with_a_failed_run(synthetic_data, tmp_path):
    _, processed = synthetic_data
    shutil.copytree(processed, tmp_path / "processed")
    masks = np.load(tmp_path / "processed/val_masks.npy")
    np.save(tmp_path / "processed/val_masks.npy", np.full_like(masks, 255))  # every val pixel ignored
    with pytest.raises(TrainingDiverged, match=r"^epoch 1: val_miou is nan, val_pixel_accuracy is nan: no pixel of "
                                               r"the val split is labelled"):
        train(tiny_params(tmp_path), tmp_path / "processed", outputs(tmp_path))
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FAILED"
    assert [name for name in run.data.metrics if not name.startswith("system/")] == []  # CPU use may be there
    assert client.search_model_versions() == [] and not outputs(tmp_path).metrics.exists()


TRAIN_SCRIPT = """
import sys, json
sys.path.insert(0, {repo!r})
from pathlib import Path
from pipeline.config import Params, parse
from pipeline.paths import TrainOutputs
from pipeline.training.health import TrainingDiverged
from pipeline.training.train import train
from stages.lifecycle.signals import interrupt_on_sigterm
interrupt_on_sigterm()
params = parse(Params, json.loads({params!r}), "")
train(params, Path({processed!r}), TrainOutputs(**{{k: Path(v) for k, v in json.loads({outputs!r}).items()}}))
"""


def start_training_process(tmp_path: Path, processed: Path, params: Params,
                           stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, TrainOutputs]:
    """The training in a child process, returned once it has saved its first epoch (which it is logging to MLflow
    then: a signal that interrupted that write would leave the sqlite store locked)."""
    outs = outputs(tmp_path)
    script = TRAIN_SCRIPT.format(repo=str(REPO_ROOT), params=json.dumps(as_dict(params)),
                                 processed=str(processed),
                                 outputs=json.dumps({k: str(v) for k, v in dataclasses.asdict(outs).items()}))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # mlflow sets it in this process
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                               text=True)
    deadline = time.time() + 120
    while not outs.state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    return process, outs


def test_killed_training_resumes_at_the_next_epoch_in_the_same_mlflow_run(synthetic_data, tmp_path):
    _, processed = synthetic_data
    params = tiny_params(tmp_path, epochs=12)
    process, outs = start_training_process(tmp_path, processed, params)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(outs.state, weights_only=False)
    assert not saved["completed"], "training finished before it could be killed"

    train(params, processed, outs)
    resumed = torch.load(outs.state, weights_only=False)
    assert resumed["completed"] and resumed["run_id"] is None  # a finished state keeps no run id (dvc.lock md5)
    assert run_of(outs.model) == saved["run_id"]
    assert [row["epoch"] for row in resumed["history"]] == list(range(1, 13))
    assert resumed["history"][: saved["epoch"]] == saved["history"]
    assert run_history(tmp_path, saved["run_id"]) == list(range(1, 13))
    runs = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("tests").experiment_id])
    assert len(runs) == 1


def test_temporaries_a_killed_training_left_are_removed_by_the_next(synthetic_data, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    _, processed = synthetic_data
    outs = outputs(tmp_path)
    stale = [outs.state.parent / ".train_state.pt.k3_x9q2a.tmp", outs.model.parent / ".model.pt.0a1b2c3d.tmp",
             outs.history.parent / ".history.csv.zz_00000.tmp"]  # what SIGKILL mid-write leaves: no finally ran
    for file in stale:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(bytes(4096))
    unrelated = outs.state.parent / ".train_state.pt.backup"
    unrelated.write_bytes(b"not ours")
    train(tiny_params(tmp_path, epochs=1), processed, outs)
    assert not any(file.exists() for file in stale) and unrelated.exists()
    assert "removed 3 temporary files a killed training left" in caplog.text


def test_sigterm_stops_at_a_batch_boundary_with_the_run_killed(synthetic_data, tmp_path):
    """Ctrl-C takes the same path (tests/test_graceful_stop.py)."""
    _, processed = synthetic_data
    process, outs = start_training_process(tmp_path, processed, tiny_params(tmp_path, epochs=12),
                                           stderr=subprocess.PIPE)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert re.search(r"^stopping (before epoch|at a batch boundary of epoch|while validating epoch) \d+ \(SIGTERM\); "
                     "the next run resumes after the last finished epoch$", stderr, re.MULTILINE), stderr
    last_line = stderr.rstrip().splitlines()[-1]  # the stop itself, not an error in a write it cut
    assert re.fullmatch(r"KeyboardInterrupt: stopped .* \(SIGTERM\)", last_line), stderr
    saved = read_state(outs.state)  # as the next run reads it
    assert saved is not None and not saved.completed, "training finished before it could be terminated"
    assert saved.run_id and saved.epoch == len(saved.history) >= 1
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert mlflow.MlflowClient().get_run(saved.run_id).info.status == "KILLED"


def test_single_class_sets_train_with_the_marginal_loss_and_score_labelled_classes(synthetic_data, tmp_path):
    interim, _ = synthetic_data
    write_single_class_root(tmp_path / "root", interim.parent / "raw")
    source = read_single_class(tmp_path / "root", val_fraction=0.3, seed=0)
    write_interim(source, tmp_path / "interim")
    preprocess(tmp_path / "interim", tmp_path / "processed", 64)
    best = train(tiny_params(tmp_path, epochs=2), tmp_path / "processed", outputs(tmp_path))
    assert 0.0 <= best["val_miou"] <= 1.0
    metrics = evaluate(tmp_path / "processed", tmp_path / "interim", tmp_path / "models/model.pt",
                       tmp_path / "eval", EvaluateParams(batch_size=4))
    per_class = json.loads((tmp_path / "eval/per_class_iou.json").read_text())
    assert list(per_class) == ["background", "disc", "square"]
    scored = [iou for iou in per_class.values() if iou is not None]
    assert metrics["miou"] == pytest.approx(sum(scored) / len(scored))  # the partial-label IoU, not the plain one


@pytest.mark.parametrize("source", ["checkpoint", "mlflow"])
def test_fine_tuning_starts_from_the_given_model_on_a_seeded_subset(synthetic_data, tmp_path, source):
    _, processed = synthetic_data
    first = tmp_path / "first"
    train(tiny_params(tmp_path, epochs=1), processed, outputs(first))
    checkpoint = torch.load(first / "models/model.pt", weights_only=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    init_from = (str(first / "models/model.pt") if source == "checkpoint"
                 else f"runs:/{run_of(first / 'models/model.pt')}/model")
    mlflow.set_tracking_uri("sqlite:///" + str(tmp_path / "elsewhere.db"))  # train must select the project's store
    params = tiny_params(tmp_path, epochs=1, lr=1e-12, init_from=init_from)
    subset = params.data.subset.model_copy(update={"train": 8})
    params = params.model_copy(update={"data": params.data.model_copy(update={"subset": subset})})
    train(params, processed, outputs(tmp_path / "second"))
    tuned = torch.load(tmp_path / "second/models/model.pt", weights_only=False)
    for name, value in checkpoint["state_dict"].items():
        if name.endswith(".weight") and value.ndim == 4:  # convolutions: unchanged at a zero learning rate
            assert torch.allclose(tuned["state_dict"][name], value, atol=1e-6), name
    run = mlflow.MlflowClient().get_run(run_of(tmp_path / "second/models/model.pt"))
    assert run.data.params["data.num_train"] == "8" and run.data.params["train.init_from"] == init_from


def test_a_replaced_state_closes_its_run_and_a_missing_run_starts_afresh(synthetic_data, tmp_path, caplog):
    _, processed = synthetic_data
    process, outs = start_training_process(tmp_path, processed, tiny_params(tmp_path, epochs=12))
    process.send_signal(signal.SIGKILL)
    process.wait()
    abandoned = torch.load(outs.state, weights_only=False)["run_id"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert mlflow.MlflowClient().get_run(abandoned).info.status == "RUNNING"  # what SIGKILL leaves

    train(tiny_params(tmp_path, epochs=2), processed, outs)  # other params: a new training takes the state file
    assert mlflow.MlflowClient().get_run(abandoned).info.status == "KILLED"

    outs.state.unlink()  # so the next start is seen once it has saved its own first epoch
    process, outs = start_training_process(tmp_path, processed, tiny_params(tmp_path, epochs=12))
    process.send_signal(signal.SIGKILL)
    process.wait()
    mlflow.MlflowClient().delete_run(torch.load(outs.state, weights_only=False)["run_id"])  # or its store is gone
    best = train(tiny_params(tmp_path, epochs=12), processed, outs)
    assert "not in the store or was deleted; starting afresh" in caplog.text
    assert 0 <= best["val_miou"] <= 1 and torch.load(outs.state, weights_only=False)["completed"]
