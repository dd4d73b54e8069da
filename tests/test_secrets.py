"""Issue 32: a password in MLFLOW_TRACKING_URI (and the basic-auth password, and S3 keys in the environment) reaches
no output of a real `dvc exp run` against a tracking server on loopback: not the stage logs (MLflow's own "View run
... at:" lines printed it twice), not a file the run wrote, not the server's store. Then, with the server gone, the
weights stage says so in one line before DVC removes train's outputs: models/model.pt stays."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from pipeline.secrets import redact, without_credentials
from tests.project_repo import clean_env, make_project
from tests.team_services import Process, answers, free_port, wait_until

pytestmark = pytest.mark.slow  # an MLflow server, and a full tiny pipeline through dvc exp run

URI_PASSWORD, BASIC_PASSWORD, S3_SECRET = "s3cretPW-in-uri", "basic-auth-s3cret", "aws-secret-key-s3cret"
SECRETS = (URI_PASSWORD, BASIC_PASSWORD, S3_SECRET)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a sqlite store and proxied artifacts; it ignores the login clients send."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {**clean_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = Process([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                       f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
                       "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], folder / "server.log", env)
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), "mlflow server", folder / "server.log", 180)
    yield port, folder
    process.stop()


def secret_env(port: int) -> dict:
    return {**clean_env(), "MLFLOW_TRACKING_URI": f"http://alice:{URI_PASSWORD}@127.0.0.1:{port}",
            "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": BASIC_PASSWORD,
            "AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": S3_SECRET}


def files_holding_secrets(*folders: Path) -> list[str]:
    """Every file under `folders` whose bytes hold one of SECRETS: the working tree, DVC's cache and tmp, the stores.
    Not .git, where the user's own remote URL holds a password (the run writes only compressed objects there)."""
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if ".git" in path.relative_to(folder).parts or not path.is_file() or path.is_symlink():
                continue
            if any(secret.encode() in path.read_bytes() for secret in SECRETS):
                found.append(str(path))
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_secret_in_any_output_and_an_unreachable_server_leaves_the_model(server, tmp_path):
    port, server_folder = server
    env = secret_env(port)
    root = make_project(tmp_path / "project", clean_env())
    subprocess.run(["git", "remote", "add", "origin", f"https://bob:{URI_PASSWORD}@git.invalid/project.git"], cwd=root,
                   check=True)  # MLflow tags runs with the remote's URL
    trained = subprocess.run(["dvc", "exp", "run", "-n", "secret-run"], cwd=root, env=env, capture_output=True,
                             text=True)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    logs = trained.stdout + trained.stderr
    assert "View run" not in logs and "View experiment" not in logs
    assert f"MLflow run secret-run: http://127.0.0.1:{port}/#/experiments/" in logs
    assert not [secret for secret in SECRETS if secret in logs]
    assert files_holding_secrets(root, server_folder) == []
    mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
    (found,) = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("segmentation").experiment_id])
    values = [*found.data.params.values(), *found.data.tags.values()]
    assert found.info.status == "FINISHED" and not [v for v in values if any(s in v for s in SECRETS)]
    mlflow.set_tracking_uri(None)

    model = root / "models" / "model.pt"
    before = sha256(model)
    closed = free_port()  # nothing listens there
    env["MLFLOW_TRACKING_URI"] = f"http://alice:{URI_PASSWORD}@127.0.0.1:{closed}"
    failed = subprocess.run(["dvc", "exp", "run", "-S", "train.lr=0.002"], cwd=root, env=env, capture_output=True,
                            text=True)
    assert failed.returncode != 0
    assert (f"error: MLFLOW_TRACKING_URI: the MLflow server http://***@127.0.0.1:{closed} cannot be reached "
            "([Errno 111] Connection refused); start it, or point MLFLOW_TRACKING_URI at one that runs"
            ) in failed.stderr
    assert "Running stage 'weights'" in failed.stdout and "Running stage 'train'" not in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr
    assert not [secret for secret in SECRETS if secret in failed.stdout + failed.stderr]
    assert sha256(model) == before


def test_logging_warnings_and_tracebacks_are_redacted(tmp_path):
    """The guards behind every command (pipeline/secrets.py), in a real process: a library's log line, a logged
    exception, a warning and an uncaught exception, each naming a URL with a password."""
    code = ("from pipeline.logs import configure_logging; import logging, os, warnings; configure_logging(); "
            f"print(os.environ['{MLFLOW_SWITCH}']); "
            f"url = 'http://bob:{URI_PASSWORD}@example.invalid/x?token=abc'; "
            "logging.getLogger('urllib3').warning('retrying %s', url); warnings.warn(url); "
            "logging.getLogger('pipeline').exception('x', exc_info=ValueError(url)); raise RuntimeError(url)")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, env={**os.environ, MLFLOW_SWITCH: "false"})
    output = result.stdout + result.stderr
    assert result.returncode == 1 and URI_PASSWORD not in output and "abc" not in output
    assert output.count("http://***@example.invalid/x?token=***") == 4
    assert result.stdout.startswith("true\n")  # MLflow's URL lines off, whatever the environment said


MLFLOW_SWITCH = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def test_links_lose_their_login():
    assert without_credentials("http://alice:pw@host:5000/#/x") == "http://host:5000/#/x"
    assert redact("s3://bucket/x?sig=1&a=2") == "s3://bucket/x?sig=***&a=2"
