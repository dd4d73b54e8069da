"""The real pipeline end to end: `dvc repro` and `dvc exp run` in a temporary git repository on tiny params,
with every MLflow run read back through the MLflow client."""
from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.config import flatten
from stages.lifecycle.restore_hint import RESTORE_COMMAND
from tests.project_repo import REPO_ROOT, TINY, clean_env, make_project, run

pytestmark = pytest.mark.slow  # trains models and runs real MLflow stores

FIGURES = ["per_class_iou.png", "sample_predictions.png", "training_history.png", "confusion_matrix.png",
           "model_progress.gif"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh git + DVC repository holding the project with tiny params, after a real `dvc repro`."""
    env = clean_env()
    root = make_project(tmp_path_factory.mktemp("project"), env)
    run(["dvc", "repro"], root, env)
    return root, env


def mlflow_runs(root: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("segmentation")
    return mlflow.MlflowClient().search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_repro_writes_every_output_and_is_up_to_date(project):
    root, env = project
    metrics = json.loads((root / "reports/eval/metrics.json").read_text())
    assert {"miou", "pixel_accuracy", "mean_accuracy", "loss"} <= set(metrics)
    assert not any(name.endswith("_processed") for name in metrics)  # the train stage's val_* already say it
    assert all(isinstance(value, float) for value in metrics.values())
    per_class = json.loads((root / "reports/eval/per_class_iou.json").read_text())
    assert list(per_class)[:2] == ["background", "disc"]
    history = (root / "reports/train/history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_loss,val_miou,val_pixel_accuracy,lr" and len(history) == 3
    for name in FIGURES:
        with Image.open(root / "reports/figures" / name) as image:
            assert min(image.size) > 100
    assert "up to date" in run(["dvc", "status"], root, env).lower()


def test_repro_run_is_in_mlflow_with_metrics_artifacts_and_a_loadable_model(project):
    root, _ = project
    (run_info,) = mlflow_runs(root)
    assert run_info.info.run_name == "repro-unet-synthetic"
    assert run_info.data.params["model"] == "unet" and run_info.data.params["train.epochs"] == "2"
    history = mlflow.MlflowClient().get_metric_history(run_info.info.run_id, "val_miou")
    assert [m.step for m in history] == [1, 2]
    assert "eval_miou" in run_info.data.metrics
    client = mlflow.MlflowClient()
    artifacts = {a.path for folder in ["reports/figures", "reports/eval", "reports/train"]
                 for a in client.list_artifacts(run_info.info.run_id, folder)}
    assert {f"reports/figures/{name}" for name in FIGURES} <= artifacts
    assert {"reports/eval/metrics.json", "reports/eval/per_class_iou.json", "reports/eval/confusion_matrix.csv",
            "reports/train/history.csv", "reports/train/metrics.json"} <= artifacts
    model = mlflow.pyfunc.load_model(f"runs:/{run_info.info.run_id}/model")  # the logged code, no pickle
    for shape in [(1, 3, 40, 56), (3, 3, 64, 64)]:
        assert model.predict(np.random.rand(*shape).astype(np.float32)).shape == (shape[0], *shape[2:])
    assert run_info.data.tags["model_sha256"] == hashlib.sha256((root / "models/model.pt").read_bytes()).hexdigest()


def test_an_identical_second_run_gives_a_byte_identical_dvc_lock(project):
    """No run id, temporary file name or timestamp in any DVC-tracked output: training, evaluating and plotting
    again on the same machine writes the same md5s, and evaluate and plot find the new run by the checkpoint's
    digest."""
    root, env = project
    first = (root / "dvc.lock").read_text()
    run(["dvc", "repro", "-f", "--downstream", "train"], root, env)  # train, evaluate and plot again
    second = (root / "dvc.lock").read_text()
    assert second == first, "".join(difflib.unified_diff(first.splitlines(True), second.splitlines(True)))
    first_run, second_run = mlflow_runs(root)
    assert second_run.data.tags["model_sha256"] == first_run.data.tags["model_sha256"]
    assert "eval_miou" in second_run.data.metrics
    resolved = json.loads((root / "reports/train/resolved.json").read_text())  # a DVC metric, and in MLflow
    recipe = {"lr": "train.lr", "epochs": "train.epochs", "crops_per_image": "augment.crops_per_image"}
    assert set(resolved) == {*recipe, "device", "precision", "num_threads", "global_batch_size", "sync_batchnorm",
                             "num_classes"}
    assert {name: str(value) for name, value in resolved.items()} == {
        name: second_run.data.params[recipe.get(name, name)] for name in resolved}


# a CPU-heavy neighbour: a training step of a convolutional net, over and over, on torch's default threads
NEIGHBOUR = """
import torch
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 8, 3, padding=1))
optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
images = torch.rand(8, 3, 128, 128)
print("running", flush=True)
while True:
    optimizer.zero_grad()
    net(images).square().mean().backward()
    optimizer.step()
"""


def test_evaluate_writes_the_same_bytes_beside_a_cpu_heavy_neighbour(project):
    """The thread count evaluate scores with is the machine's, not its load's (training/threads.py)."""
    root, env = project
    outputs = [root / "reports/eval" / name for name in ("metrics.json", "per_class_iou.json", "confusion_matrix.csv")]
    alone = [path.read_bytes() for path in outputs]
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], stdout=subprocess.PIPE, text=True,
                                 env={k: v for k, v in env.items() if k != "OMP_NUM_THREADS"})
    try:
        assert neighbour.stdout.readline().strip() == "running"
        run(["dvc", "repro", "-f", "-s", "evaluate"], root, env)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert [path.read_bytes() for path in outputs] == alone


def test_experiments_land_in_the_root_store_named_after_the_experiment(project):
    root, env = project
    run(["dvc", "exp", "run", "-S", "train.epochs=1", "-n", "in-workspace"], root, env)
    # up to evaluate, whose metrics `dvc exp show` must list: plot adds nothing here (the workspace run has it,
    # which the later tests' `dvc status` needs)
    run(["dvc", "exp", "run", "--temp", "evaluate", "-S", "train.epochs=1", "-n", "temp-one"], root, env)
    runs = mlflow_runs(root)
    assert [r.info.run_name for r in runs][-2:] == ["in-workspace", "temp-one"]
    assert runs[-1].data.tags["dvc.exp_name"] == "temp-one" and "dvc exp apply temp-one" in runs[-1].data.tags[
        "mlflow.note.content"]
    champion = mlflow.MlflowClient().get_model_version_by_alias("segmentation-synthetic-6cls", "champion")
    best = max(runs, key=lambda r: r.data.metrics["best_val_miou"])
    assert champion.run_id == best.info.run_id
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env))
    experiments = {exp["name"]: exp for baseline in shown for exp in (baseline.get("experiments") or [])}
    for name in ["in-workspace", "temp-one"]:
        revision = experiments[name]["revs"][0]["data"]
        assert "miou" in revision["metrics"]["reports/eval/metrics.json"]["data"]
    columns = run(["dvc", "exp", "show", "--csv"], root, env).splitlines()[0].split(",")
    tiny_only = [".".join(keys) for keys in TINY if ".".join(keys) not in flatten(yaml.safe_load(
        (REPO_ROOT / "params.yaml").read_text()))]  # the test project's own keys, each a column
    # 75 bare: 69 plus resolved.json's num_threads and num_classes, the data root's hash (a dependency of download),
    # and stages/__init__.py, pipeline/digest.py and pipeline/secrets.py among the data stages' dependencies
    assert set(tiny_only) <= set(columns) and len(columns) - len(tiny_only) <= 77, columns
    assert {"model", "data.dataset", "lr", "epochs", "precision", "val_miou", "miou", "pipeline"} <= set(columns)


def commit_workspace(root: Path, env: dict) -> dict[str, bytes]:
    """Commit params, dvc.lock and outputs; returns the bytes of a cached and a git-held output to compare later."""
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "--allow-empty", "-m", "results"], root, env)
    return {name: (root / name).read_bytes() for name in ["models/model.pt", "reports/train/metrics.json"]}


def failing(command: list[str], root: Path, env: dict) -> list[str]:
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode != 0, result.stdout[-2000:]
    return (result.stdout + result.stderr).splitlines()


def test_imagenet_weights_missing_offline_fail_before_any_output_is_removed(project, tmp_path):
    root, env = project
    outputs = commit_workspace(root, env)
    offline = {**{k: v for k, v in env.items() if not k.startswith("HF_")}, "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_OFFLINE": "1"}
    lines = failing(["dvc", "exp", "run", "-S", "model=resnet34_unet"], root, offline)
    assert any("models.resnet34_unet.encoder_weights: imagenet needs" in line for line in lines)
    assert {name: (root / name).read_bytes() for name in outputs} == outputs
    run(["git", "checkout", "HEAD", "--", "params.yaml"], root, env)
    assert "up to date" in run(["dvc", "status"], root, env).lower()


def test_a_failed_workspace_experiment_ends_with_the_command_that_restores_it(project):
    root, env = project
    outputs = commit_workspace(root, env)
    lines = failing(["dvc", "exp", "run", "-S", "train.init_from=missing.pt"], root, env)  # fails in train
    stage_lines = [line for line in lines if line.strip() and not line.startswith("ERROR")]
    assert stage_lines[-1].endswith(f"last commit: {RESTORE_COMMAND}")
    assert not (root / "models/model.pt").exists() and not (root / "reports/train/metrics.json").exists()
    run(["bash", "-c", RESTORE_COMMAND], root, env)
    assert run(["git", "status", "--porcelain"], root, env) == ""
    assert {name: (root / name).read_bytes() for name in outputs} == outputs
    assert "up to date" in run(["dvc", "status"], root, env).lower()


def test_a_named_grid_runs_through_the_queue_as_one_sweep_in_mlflow(project):
    root, env = project
    # up to train, which names, tags and closes the runs: evaluate and plot would only add stage start-ups
    run(["dvc", "exp", "run", "--queue", "train", "-n", "tiny", "-S", "train.epochs=1", "-S", "train.lr=0.02,0.03"],
        root, env)
    run(["dvc", "exp", "run", "--run-all", "-j", "1"], root, env)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("segmentation")
    runs = mlflow.MlflowClient().search_runs([experiment.experiment_id], "tags.sweep = 'tiny'")
    assert sorted((r.info.run_name, r.data.params["train.lr"], r.data.params["train.epochs"]) for r in runs) == [
        ("tiny-1", "0.02", "1"), ("tiny-2", "0.03", "1")]
    assert {r.info.status for r in runs} == {"FINISHED"}
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env))
    assert {"tiny-1", "tiny-2"} <= {exp["name"] for baseline in shown for exp in (baseline.get("experiments") or [])}


def test_a_bf16_training_reruns_to_a_byte_identical_dvc_lock(project):
    """The bf16 path that `precision: auto` takes on CPUs with native bf16 (emulated where there is none). Last in the
    module: it commits the workspace and restores it."""
    root, env = project
    commit_workspace(root, env)  # for the restore at the end
    run(["dvc", "exp", "run", "-S", "train.precision=bf16", "-n", "bf16"], root, env)
    first = (root / "dvc.lock").read_text()
    assert json.loads((root / "reports/train/resolved.json").read_text())["precision"] == "bf16"
    run(["dvc", "repro", "-f", "--downstream", "train"], root, env)
    second = (root / "dvc.lock").read_text()
    assert second == first, "".join(difflib.unified_diff(first.splitlines(True), second.splitlines(True)))
    run(["bash", "-c", RESTORE_COMMAND], root, env)
