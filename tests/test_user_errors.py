"""A mistake that is the user's to fix ends a stage with one line naming the key or file, and no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import tracking
from pipeline.config import MlflowParams

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_stage(stage: str, cwd: Path, params: str) -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text(params)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow  # starts a fresh interpreter
def test_a_missing_data_root_is_one_line_naming_the_key(tmp_path: Path):
    result = run_stage("download", tmp_path, f"data:\n  dataset: voc_layout\n  root: {tmp_path / 'nowhere'}\n")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: data.root: {tmp_path / 'nowhere'} is not a folder"]
    assert not (tmp_path / "data" / "raw" / "voc_layout").exists()


def test_an_unusable_mlflow_store_is_named(tmp_path: Path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the store's folder should be")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    with pytest.raises(tracking.TrackingStoreError, match=r"mlflow.tracking_uri: cannot use the MLflow store sqlite"):
        tracking.setup_experiment(MlflowParams(tracking_uri=uri, experiment="x"))
