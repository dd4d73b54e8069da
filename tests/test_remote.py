"""Issue 12: a DVC remote shares data, processed arrays and models. After `dvc repro` and `dvc push` to a local
folder and to an S3-compatible store (moto's server on 127.0.0.1), a fresh clone pulls and `dvc status` finds
every stage up to date: nothing is retrained, and the models are the pushed bytes."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.project_repo import clean_env, make_project, run
from tests.team_services import S3_KEYS, S3Server

pytestmark = pytest.mark.slow  # a real dvc repro of the tiny pipeline and an S3 server

BUCKET = "dvc-store"
UP_TO_DATE = "Data and pipelines are up to date."
OUTPUTS = ["data/processed/synthetic/val_masks.npy", "models/model.pt", "models/train_state.pt"]


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """The project after `dvc repro`, pushed to both remotes; credentials only in .dvc/config.local."""
    base = tmp_path_factory.mktemp("remote")
    with S3Server(base) as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        env = clean_env()
        root = make_project(base / "project", env)
        run(["dvc", "repro"], root, env)
        run(["dvc", "remote", "add", "-d", "shared", str(base / "dvc-store")], root, env)
        run(["dvc", "remote", "add", "s3", f"s3://{BUCKET}/segmentation"], root, env)
        run(["dvc", "remote", "modify", "s3", "endpointurl", s3.url], root, env)
        run(["dvc", "remote", "modify", "--local", "s3", "access_key_id", S3_KEYS["AWS_ACCESS_KEY_ID"]], root, env)
        run(["dvc", "remote", "modify", "--local", "s3", "secret_access_key", S3_KEYS["AWS_SECRET_ACCESS_KEY"]],
            root, env)
        run(["git", "add", "-A"], root, env)
        run(["git", "commit", "-qm", "results and remotes"], root, env)
        run(["dvc", "push"], root, env)
        run(["dvc", "push", "-r", "s3"], root, env)
        yield root, base, s3


def fresh_clone(root: Path, target: Path, env: dict) -> Path:
    run(["git", "clone", "-q", str(root), str(target)], target.parent, env)
    return target


def assert_nothing_to_rerun(clone: Path, root: Path, env: dict) -> None:
    assert run(["dvc", "status"], clone, env).strip() == UP_TO_DATE
    for path in OUTPUTS:
        assert (clone / path).read_bytes() == (root / path).read_bytes(), path
    assert "Running stage" not in run(["dvc", "repro"], clone, env)
    assert not (clone / "mlflow.db").exists()  # no training ran, so no MLflow run was made


def test_no_secret_is_committed(pushed):
    root, _, _ = pushed
    committed = run(["git", "show", "HEAD:.dvc/config"], root, clean_env())
    assert "endpointurl" in committed and S3_KEYS["AWS_SECRET_ACCESS_KEY"] not in committed
    assert ".dvc/config.local" not in run(["git", "ls-files", ".dvc"], root, clean_env())


def test_fresh_clone_pulls_from_a_local_folder_remote(pushed):
    root, base, _ = pushed
    env = clean_env()
    clone = fresh_clone(root, base / "clone-local", env)
    run(["dvc", "pull"], clone, env)
    assert_nothing_to_rerun(clone, root, env)


def test_fresh_clone_pulls_from_an_s3_compatible_remote_with_keys_from_the_environment(pushed):
    root, base, s3 = pushed
    assert any(key.startswith("segmentation/files/md5/") for key in s3.keys(BUCKET))
    env = {**clean_env(), "AWS_ACCESS_KEY_ID": S3_KEYS["AWS_ACCESS_KEY_ID"],
           "AWS_SECRET_ACCESS_KEY": S3_KEYS["AWS_SECRET_ACCESS_KEY"]}
    clone = fresh_clone(root, base / "clone-s3", env)
    run(["dvc", "pull", "-r", "s3"], clone, env)
    assert_nothing_to_rerun(clone, root, env)
