"""Issue 12: the pipeline, unchanged, against a team's tracking server: `mlflow server --app-name basic-auth`
on PostgreSQL with artifacts in an S3-compatible bucket, all started here on 127.0.0.1. Two queued DVC
experiments run in parallel; their runs, artifacts (listed in the bucket) and the champion are read back."""
from __future__ import annotations

import random
import re
import subprocess
import sys
import threading

import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import predict
from pipeline.tracking.registry import CHAMPION, Measurement, register_and_promote
from tests.project_repo import REPO_ROOT, clean_env, make_project, run
from tests.synthetic_data import tiny_training
from tests.team_services import ADMIN, ADMIN_PASSWORD, S3_KEYS, MlflowServer, Postgres, S3Server

pytestmark = pytest.mark.slow  # starts PostgreSQL, an S3 server and an MLflow server; trains two tiny models

BUCKET = "mlflow-artifacts"
USER, PASSWORD = "alice", "alice-password-1234"
REGISTERED = "segmentation-synthetic-6cls"
EXPERIMENTS = {"lr-low": "0.005", "lr-high": "0.01"}


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    logs = tmp_path_factory.mktemp("services")
    with Postgres() as db, S3Server(logs) as s3, MlflowServer(db, s3, BUCKET, logs) as server:
        server.create_user(USER, PASSWORD)
        yield server, s3


def client_env(server: MlflowServer, password: str = PASSWORD) -> dict:
    """What a team member sets: the server and their own login; no bucket keys (clean_env drops AWS_*)."""
    return {**clean_env(), "MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": password}


@pytest.fixture(scope="module")
def queued(team, tmp_path_factory):
    """Two experiments queued and run by two parallel DVC workers, up to the train stage."""
    server, _ = team
    env = client_env(server)
    root = make_project(tmp_path_factory.mktemp("project"), env)
    for name, lr in EXPERIMENTS.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}", "train"], root, env)
    run(["dvc", "exp", "run", "--run-all", "-j", "2"], root, env)  # exits 0 even when an experiment failed
    status = run(["dvc", "queue", "status"], root, env)
    failed = [name for name in EXPERIMENTS if not re.search(rf"^\S+\s+{name}\s.*\bSuccess\b", status, re.MULTILINE)]
    logs = [subprocess.run(["dvc", "queue", "logs", name], cwd=root, env=env, capture_output=True, text=True)
            for name in failed]
    server_log = (server.log_dir / "mlflow-server.log").read_text()[-3000:]
    assert not failed, "\n".join([status, *(log.stdout[-4000:] + log.stderr[-2000:] for log in logs), server_log])
    return root, env


@pytest.fixture
def as_user(team, monkeypatch):
    server, _ = team
    for name, value in client_env(server).items():
        if name.startswith("MLFLOW_"):
            monkeypatch.setenv(name, value)
    mlflow.set_tracking_uri(server.url)
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_parallel_queue_lands_two_runs_artifacts_in_the_bucket_and_one_champion(queued, team, as_user):
    _, s3 = team
    experiment = as_user.get_experiment_by_name("segmentation")
    runs = as_user.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(EXPERIMENTS)
    assert {r.info.run_name: r.info.status for r in runs} == dict.fromkeys(EXPERIMENTS, "FINISHED")
    assert not any(PASSWORD in str(value) for r in runs for value in {**r.data.params, **r.data.tags}.values())
    keys = s3.keys(BUCKET)
    for r in runs:
        assert f"{experiment.experiment_id}/{r.info.run_id}/artifacts/reports/train/history.csv" in keys
    assert sum(key.endswith("/artifacts/MLmodel") for key in keys) >= 2  # each run's model, in the bucket
    versions = as_user.search_model_versions(f"name = '{REGISTERED}'")
    assert len(versions) == 2
    best = max(runs, key=lambda r: r.data.metrics["best_val_miou"])
    assert as_user.get_model_version_by_alias(REGISTERED, CHAMPION).run_id == best.info.run_id


def test_a_wrong_password_is_refused_in_one_line(queued, team):
    root, env = queued
    server, _ = team
    run(["dvc", "repro", "preprocess"], root, env)  # the data the train stage checks params against first
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=root, env=client_env(server, "wrong"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: the MLflow server {server.url} refused the credentials (HTTP 401): "
                                     "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, and that the "
                                     "user may edit experiments")


def test_predict_and_fine_tune_from_the_champion_through_the_server(queued, team, tmp_path, as_user):
    root, env = queued
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    run([sys.executable, "-m", "pipeline.predict", str(image), "--model", f"models:/{REGISTERED}@{CHAMPION}",
         "--out", str(tmp_path / "out"), "--device", "cpu"], root, env)
    with Image.open(tmp_path / "out" / "photo_mask.png") as mask:
        assert mask.size == (56, 40)
    from pipeline.training.finetune import initial_weights

    assert initial_weights(f"models:/{REGISTERED}@{CHAMPION}")  # train.init_from reads the same URI


def test_concurrent_promotions_through_the_server_settle_on_the_best(team, as_user, tmp_path):
    """Four writers register and promote at once; the alias must end on the best version, with no lock."""
    np.save(tmp_path / "val_masks.npy", np.zeros((2, 4, 4), dtype=np.uint8))
    measurement = Measurement.of("synthetic", ["background", "thing"], tmp_path, None)
    experiment = as_user.create_experiment("promotion-race")
    scores = random.Random(0).sample(range(100), 4)
    errors = []

    def promote(score: int) -> None:
        try:
            run_id = as_user.create_run(experiment).info.run_id
            model = mlflow.create_external_model(name="model", source_run_id=run_id, experiment_id=experiment)
            register_and_promote(model.model_uri, "race-2cls", measurement, score / 100)
        except Exception as error:  # reported below: an assertion in a thread would be lost
            errors.append(error)

    threads = [threading.Thread(target=promote, args=(score,)) for score in scores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    champion = as_user.get_model_version_by_alias("race-2cls", CHAMPION)
    assert float(champion.tags["segmentation.val_miou"]) == max(scores) / 100


def test_a_user_who_may_not_register_the_model_is_told_before_training(team, tmp_path):
    """Bob may log runs (the server's default EDIT) but is denied the registered model his training would add a
    version to (a READ grant would not do: the default is a floor under positive grants). Without the preflight he
    trained in full, then failed on HTTP 403 with a traceback, his run FAILED."""
    server, _ = team
    name = "preflight-synthetic-6cls"
    server.as_admin("/api/2.0/mlflow/registered-models/create", {"name": name})
    server.create_user("bob", "bob-password-1234")
    server.as_admin("/api/3.0/mlflow/users/permissions/grant", {"username": "bob", "resource_type": "registered_model",
                                                                "resource_id": name, "permission": "DENY"})
    params = tiny_training(tmp_path)
    params["mlflow"]["experiment"] = "preflight"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**client_env(server), "MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "bob-password-1234",
           "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the MLflow server {server.url} does not let user 'bob' register models as '{name}' (HTTP 403 on "
        "create), which the end of the training needs: ask its admin for EDIT on that registered model, or set "
        "mlflow.experiment to register under another name")
    assert "epoch 1" not in result.stdout
    admin = mlflow.MlflowClient(server.url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        assert admin.search_runs([admin.get_experiment_by_name("preflight").experiment_id]) == []
        assert admin.search_model_versions(f"name = '{name}'") == []


def test_an_artifact_store_that_does_not_take_files_is_one_line_before_training(team, as_user, tmp_path):
    """The experiment's artifacts go straight to a bucket that does not exist, with the user's own S3 keys (an
    experiment made with an s3:// artifact location). Without the probe the training ran in full, then failed on
    logging its reports with a traceback."""
    server, s3 = team
    experiment = as_user.create_experiment("artifact-probe", artifact_location="s3://no-such-bucket/runs")
    params = tiny_training(tmp_path)
    params["mlflow"]["experiment"] = "artifact-probe"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**client_env(server), **S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3.url, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    (run,) = as_user.search_runs([experiment])
    run_id = run.info.run_id
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the artifact store s3://no-such-bucket/runs/{run_id}/artifacts of MLflow run {run_id} did not take "
        "resolved.json (An error occurred (NoSuchBucket) when calling the PutObject operation: The specified bucket "
        "does not exist); the end of the training logs the model there: fix the store or its credentials, or set "
        "mlflow.experiment to an experiment whose store works")
    assert "epoch 1" not in result.stdout and not (tmp_path / "reports/train/history.csv").exists()
    assert run.info.status == "FAILED"


def test_predict_with_a_wrong_password_says_so_first(team, tmp_path, monkeypatch):
    server, _ = team
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    for variable, value in client_env(server, "wrong").items():
        if variable.startswith("MLFLOW_"):
            monkeypatch.setenv(variable, value)
    mlflow.set_tracking_uri(server.url)
    try:
        with pytest.raises(SystemExit) as exit_info:
            predict.main([str(image), "--model", f"models:/{REGISTERED}@{CHAMPION}", "--out", str(tmp_path / "out")])
    finally:
        mlflow.set_tracking_uri(None)
    assert exit_info.value.code == (f"error: --model models:/{REGISTERED}@{CHAMPION}: the MLflow server {server.url} "
                                    "refused the credentials (HTTP 401): check MLFLOW_TRACKING_USERNAME and "
                                    "MLFLOW_TRACKING_PASSWORD")
