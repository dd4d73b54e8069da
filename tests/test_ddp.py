"""Data-parallel training: the real train stage under torchrun (2 processes, gloo on this CPU) on tiny generated data.

What is checked: one MLflow run with every epoch logged once, rank 0 alone writing files and talking to MLflow
(an audit hook in every torchrun worker records what it opens for writing), the best checkpoint written once,
the val mIoU of the two shards equal to a single-process score of the saved weights, the ranks seeing disjoint
samples, and a training killed under two processes resuming in the same run under two or one.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from pipeline.config import Params, load_params, parse
from pipeline.data.dataset import SegmentationArrays, read_manifest
from pipeline.models.checkpoint import load_checkpoint
from pipeline.paths import TrainOutputs
from pipeline.scoring.loader import score_loader
from pipeline.training.distributed import MULTI_NODE_SETTINGS, torchrun_arguments
from pipeline.training.losses import build_loss
from pipeline.training.setup import build_data
from pipeline.training.train import train
from tests.synthetic_data import processed_synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_TRAIN = 48
TINY = {"data": {"image_size": 64}, "models": {"unet": {"base_channels": 8, "depth": 3}},  # learns: it is registered
        "train": {"epochs": 3, "batch_size": 2, "lr": 0.01, "precision": "fp32", "num_threads": 1},
        "augment": {"crops_per_image": 1}, "mlflow": {"experiment": "tests", "log_onnx": False}}
ONE_DRAW = {"augment": {"crops_per_image": 1}}  # each training image once per epoch: sampler indices are image ids
# Loaded by every Python process started with this folder first on PYTHONPATH; records, per torchrun rank,
# the files under the project opened for writing, the renames into it and the sqlite stores opened.
AUDIT_HOOK = """
import os, sys
PROJECT, LOG = os.environ["AUDIT_PROJECT"], os.environ["AUDIT_LOG"]
RANK = os.environ.get("RANK")
busy = False

def record(event, args):
    global busy
    if busy or RANK is None or event not in ("open", "os.rename", "sqlite3.connect"):
        return
    path = args[1] if event == "os.rename" else args[0]
    if not isinstance(path, (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(path))
    writing = event != "open" or any(c in (args[1] or "") for c in "wax+") or args[2] & (os.O_WRONLY | os.O_RDWR)
    if writing and path.startswith(PROJECT):
        busy = True
        with open(f"{LOG}.{RANK}", "a") as log:
            log.write(f"{event} {os.path.relpath(path, PROJECT)}\\n")
        busy = False

sys.addaudithook(record)
"""


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    """16 training images (per process: 8, in 4 batches of 2), 7 val images (shards of 4 and 3)."""
    return processed_synthetic(tmp_path_factory.mktemp("ddp_data"), num_train=NUM_TRAIN, num_val=7, seed=3)


def make_project(tmp_path: Path, processed: Path) -> Path:
    """A working directory laid out as the repository: data/processed/synthetic, params.yaml, outputs."""
    project = tmp_path / "project"
    shutil.copytree(processed, project / "data" / "processed" / "synthetic")
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "sitecustomize.py").write_text(AUDIT_HOOK)
    return project


def write_params(project: Path, nproc_per_node: int, **train) -> None:
    raw = json.loads(json.dumps(TINY))
    raw["train"].update(train, distributed={"nproc_per_node": nproc_per_node})
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{project / 'mlflow.db'}"
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


def start_stage(project: Path, through_torchrun: bool = False) -> subprocess.Popen:
    """`python -m stages.train` in the project (it re-launches itself through torchrun), or that torchrun
    command itself (as on each node of a multi-node training; it skips one interpreter start)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MLFLOW_", "DVC_", "PET_")) and name not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(PYTHONPATH=os.pathsep.join([str(project.parent / "audit"), str(REPO_ROOT)]), OMP_NUM_THREADS="1",
               AUDIT_PROJECT=str(project), AUDIT_LOG=str(project.parent / "audit" / "writes"))
    command = ([sys.executable, "-m", "torch.distributed.run", *torchrun_arguments(2, "stages.train", [])]
               if through_torchrun else [sys.executable, "-m", "stages.train"])
    return subprocess.Popen(command, cwd=project, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts each worker in a session of its own: killpg misses them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def kill_after_first_epoch(process: subprocess.Popen, project: Path) -> dict:
    """SIGKILL to torchrun and every worker (a lost machine) once the first epoch's state is saved."""
    state_file = project / "models" / "train_state.pt"
    deadline = time.time() + 240
    while not state_file.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    for pid in [process.pid, *descendants(process.pid)]:
        os.kill(pid, signal.SIGKILL)
    process.communicate()
    state = torch.load(state_file, weights_only=False)
    assert not state["completed"], "the training finished before it could be killed"
    return state


def mlflow_runs(project: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("tests").experiment_id])


def logged_epochs(run_id: str) -> list[int]:
    return sorted(metric.step for metric in mlflow.MlflowClient().get_metric_history(run_id, "val_miou"))


def writes_by_rank(project: Path) -> dict[str, list[str]]:
    logs = sorted((project.parent / "audit").glob("writes.*"))
    return {log.suffix[1:]: log.read_text().splitlines() for log in logs}


@pytest.mark.slow  # two torchrun launches of two processes each (~40 s on 2 cores)
def test_ddp_killed_two_process_training_resumes_in_one_run_written_by_rank_0(processed, tmp_path):
    project = make_project(tmp_path, processed)
    write_params(project, nproc_per_node=2)
    killed = kill_after_first_epoch(start_stage(project, through_torchrun=True), project)
    output = finish(start_stage(project))
    assert f"resuming after epoch {killed['epoch']} in MLflow run {killed['run_id']}" in output

    state = torch.load(project / "models" / "train_state.pt", weights_only=False)
    assert state["completed"]
    assert [row["epoch"] for row in state["history"]] == [1, 2, 3]
    (run,) = mlflow_runs(project)
    assert run.info.run_id == killed["run_id"] and run.info.status == "FINISHED"
    assert logged_epochs(run.info.run_id) == [1, 2, 3]  # each epoch once, though two processes trained it
    assert run.data.params["num_processes"] == "2" and run.data.params["global_batch_size"] == "4"
    assert len(mlflow.MlflowClient().search_model_versions()) == 1  # registered once

    writes = writes_by_rank(project)
    assert list(writes) == ["0"], f"only rank 0 may write: {writes}"
    renames = Counter(line.split()[1] for line in writes["0"] if line.startswith("os.rename"))
    assert renames["models/model.pt"] == 1 and renames["reports/train/history.csv"] == 1
    assert renames["models/train_state.pt"] == 3 + 1  # after each epoch, then marked completed

    # each process scored its shard; the summed confusion matrices give the single-process number
    model = load_checkpoint(project / "models" / "model.pt")
    loader = DataLoader(SegmentationArrays(processed, "val"), batch_size=2)
    single = score_loader(model, loader, torch.device("cpu"), len(model.class_names), False,
                          build_loss("ce", len(model.class_names)))
    metrics = json.loads((project / "reports" / "train" / "metrics.json").read_text())
    assert single["miou"] == pytest.approx(metrics["val_miou"], abs=1e-12)
    assert single["pixel_accuracy"] == pytest.approx(metrics["val_pixel_accuracy"], abs=1e-12)
    assert single["loss"] == pytest.approx(metrics["val_loss"], rel=1e-5)


@pytest.mark.slow  # one torchrun launch, then a training in this process
def test_ddp_training_killed_under_two_processes_resumes_under_one(processed, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    project = make_project(tmp_path, processed)
    write_params(project, nproc_per_node=2)
    killed = kill_after_first_epoch(start_stage(project, through_torchrun=True), project)
    write_params(project, nproc_per_node=1)  # the process count is how it runs, not what it trains: it resumes
    train(load_params(project / "params.yaml"), project / "data" / "processed" / "synthetic",
          TrainOutputs.under(project))
    assert f"resuming after epoch {killed['epoch']} in MLflow run {killed['run_id']}" in caplog.text
    (run,) = mlflow_runs(project)
    assert logged_epochs(run.info.run_id) == [1, 2, 3]
    history = torch.load(project / "models" / "train_state.pt", weights_only=False)["history"]
    assert history[: killed["epoch"]] == killed["history"] and len(history) == 3


@pytest.mark.slow  # one torchrun launch of two processes
def test_ddp_diverged_training_stops_every_process_and_fails_its_run(processed, tmp_path):
    project = make_project(tmp_path, processed)
    write_params(project, nproc_per_node=2, lr=10.0)  # the largest train.lr takes
    process = start_stage(project, through_torchrun=True)
    output, _ = process.communicate(timeout=120)  # a process left waiting at a collective would hang here
    assert process.returncode != 0
    assert "error: training diverged in epoch 1 (" in output
    (run,) = mlflow_runs(project)
    assert run.info.status == "FAILED", output  # not KILLED by torchrun stopping rank 0 once rank 1 has exited
    assert [name for name in run.data.metrics if not name.startswith("system/")] == []  # CPU use may be there
    assert mlflow.MlflowClient().search_model_versions() == []
    assert not (project / "reports" / "train" / "metrics.json").exists()


def test_ddp_ranks_see_disjoint_training_samples_and_val_shards_that_cover_the_split(processed):
    params = parse(Params, {"data": {"image_size": 64}, "train": {"batch_size": 2}, **ONE_DRAW}, "")
    ranks = [build_data(params, processed, read_manifest(processed), rank=rank, world_size=2) for rank in (0, 1)]
    orders = []
    for epoch in (1, 2):
        for data in ranks:
            data.start_epoch(epoch, seed=epoch)
        seen = [list(data.train_loader.sampler) for data in ranks]
        assert len(seen[0]) == len(seen[1]) == NUM_TRAIN // 2 and not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == list(range(NUM_TRAIN))
        orders.append(seen)
    assert orders[0] != orders[1]  # a new shuffle every epoch
    shards = [list(data.val_loader.dataset.indices) for data in ranks]
    assert sorted(shards[0] + shards[1]) == list(range(7))  # every val image scored exactly once: no padding
    assert all(data.num_val == 7 and data.num_train == NUM_TRAIN for data in ranks)


def test_ddp_single_process_shuffle_is_the_seeded_permutation_of_the_epoch(processed):
    """One process is world size 1 of the same sampler: its order depends on train.seed and the epoch alone
    (not on the loader's generator, which also seeds the loader workers)."""
    params = parse(Params, {"data": {"image_size": 64}, **ONE_DRAW}, "")
    data = build_data(params, processed, read_manifest(processed))
    data.start_epoch(3, seed=45)
    expected = torch.randperm(NUM_TRAIN, generator=torch.Generator().manual_seed(params.train.seed + 3)).tolist()
    assert list(data.train_loader.sampler) == expected
    assert np.array_equal(data.val_loader.dataset.indices, range(7))


def test_ddp_launch_is_standalone_torchrun_unless_a_rendezvous_is_configured(monkeypatch):
    for name in MULTI_NODE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    arguments = torchrun_arguments(4, "stages.train", ["--params", "p.yaml"])
    assert arguments == ["--standalone", "--nproc-per-node=4", "-m", "stages.train", "--params", "p.yaml"]
    monkeypatch.setenv("PET_RDZV_ENDPOINT", "node0:29500")  # multi-node: torchrun reads PET_NNODES, PET_RDZV_*
    assert "--standalone" not in torchrun_arguments(4, "stages.train", [])
