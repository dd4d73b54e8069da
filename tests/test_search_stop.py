"""Issue 28: Ctrl-C stops a search worker at the trial boundary; the same command resumes the study; Ctrl-C twice
stops the running trial too, its MLflow run closed as KILLED and the trial failed."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests.project_repo import clean_env, make_project
from tests.test_search import wait_for

pytestmark = pytest.mark.slow  # two tiny trainings through dvc exp run

SPACE = "params:\n  train.lr: {type: float, low: 0.001, high: 0.01, log: true}\npruner: {type: none}\n"


def created(storage: str) -> optuna.Study | None:
    """The study once the worker has created it: its database file exists a moment before its tables do, and a reader
    that opens it meanwhile races the worker's schema creation (`table ... already exists`)."""
    try:
        return optuna.load_study(study_name="stop", storage=storage)
    except (KeyError, sqlalchemy.exc.OperationalError):
        return None


def test_ctrl_c_stops_at_the_trial_boundary_and_twice_inside_the_trial(tmp_path):
    env = clean_env()
    root = make_project(tmp_path / "project", env)
    (tmp_path / "space.yaml").write_text(SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = [sys.executable, "-m", "pipeline.search", "--study", "stop", "--storage", storage, "--space",
               str(tmp_path / "space.yaml"), "--trials", "2", "-S", "train.epochs=1"]

    def start_and_interrupt(times: int) -> subprocess.CompletedProcess:
        worker = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        study = wait_for(lambda: (tmp_path / "optuna.db").exists() and created(storage), "the study")
        wait_for(lambda: any("mlflow_run_id" in t.user_attrs for t in study.get_trials(states=(TrialState.RUNNING,))),
                 "a trial training")
        for _ in range(times):
            worker.send_signal(signal.SIGINT)
            time.sleep(0.5)
        output, _ = worker.communicate(timeout=300)
        return subprocess.CompletedProcess(command, worker.returncode, output), study

    first, study = start_and_interrupt(1)
    assert first.returncode == 130, first.stdout[-3000:]
    assert "stopped at a trial boundary; the same command resumes study stop" in first.stdout
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]

    second, study = start_and_interrupt(2)
    assert second.returncode == 130, second.stdout[-3000:]
    assert "1 of 2 trials done; running up to 1" in second.stdout  # the same command resumed the study
    assert second.stdout.rstrip().endswith("stopped: stopped during trial 1")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    assert mlflow.MlflowClient().get_run(trials[1].user_attrs["mlflow_run_id"]).info.status == "KILLED"
