"""Issue 28: one Optuna study run by two workers in two clones of a project at once, against a throwaway PostgreSQL
on loopback; one worker SIGKILLed mid-trial and started again. Every trial is a DVC experiment and an MLflow run
tagged with the study and the trial; a trial is pruned before its last epoch; the killed trial is failed by the
heartbeat and run again; the study registers one model, its best trial's; the best experiment, pushed, pulled into
the other clone and re-run with `dvc repro`, gives its value again."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from tests.project_repo import clean_env, make_project, run
from tests.team_services import Postgres

pytestmark = pytest.mark.slow  # starts PostgreSQL, runs 7-8 tiny trainings through dvc exp run

STUDY, TRIALS, HEARTBEAT = "tiny", 6, 1
# Every val mIoU is below 1.0, so the threshold pruner, which waits 2 epochs, stops each 3-epoch trial after its
# second epoch and lets each 2-epoch trial complete (trained enough to beat the majority class, so its model may be
# registered): which trials are pruned follows from their params alone
SPACE = """
params:
  train.lr: {type: float, low: 0.01, high: 0.02, log: true}
  train.epochs: {type: choice, values: [2, 3]}
sampler: {type: random, seed: 0}
pruner: {type: threshold, lower: 1.0, n_warmup_steps: 2}
"""
FIRST = {"train.lr": 0.01, "train.epochs": 3}  # enqueued: at least one trial is pruned
MODEL = "segmentation-synthetic-6cls"
DEADLINE = 600


def wait_for(condition, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


class Workers:
    """`python -m pipeline.search` processes, one per clone, their output in a log file each."""

    def __init__(self, storage: str, space: Path, env: dict, logs: Path):
        self.storage, self.space, self.env, self.logs = storage, space, env, logs
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def start(self, clone: Path, number: int) -> subprocess.Popen:
        log = self.logs / f"worker-{len(self.started)}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.search", "--study", STUDY, "--storage", self.storage, "--space",
                 str(self.space), "--trials", str(TRIALS), "--heartbeat", str(HEARTBEAT), "--worker", str(number)],
                cwd=clone, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append((process, log))
        return process

    def wait_all(self) -> None:
        for process, log in self.started:
            if process.returncode == -signal.SIGKILL:
                continue
            code = process.wait(timeout=DEADLINE)
            assert code == 0, log.read_text()[-5000:]


def running_in(study: optuna.Study, clone: Path):
    """A trial of the worker in `clone` whose training has opened its MLflow run."""
    return next((trial for trial in study.get_trials(states=(TrialState.RUNNING,))
                 if trial.user_attrs.get("worker", "").endswith(f":{clone}") and "mlflow_run_id" in trial.user_attrs),
                None)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """The study after two workers (one of them killed and restarted) have run it to TRIALS finished trials."""
    base = tmp_path_factory.mktemp("search")
    env = {**clean_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}"}
    origin = make_project(base / "origin", env)
    run(["dvc", "remote", "add", "-d", "team", str(base / "dvc-remote")], origin, env)
    run(["git", "commit", "-qam", "the team's DVC remote"], origin, env)
    clones = []
    for name in ("clone-a", "clone-b"):
        run(["git", "clone", "-q", str(origin), name], base, env)
        for key, value in (("user.email", "test@localhost"), ("user.name", "test")):
            run(["git", "config", key, value], base / name, env)
        clones.append(base / name)
    (base / "space.yaml").write_text(SPACE)
    with Postgres() as db:
        storage = db.create_database("optuna")
        study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
        study.enqueue_trial(FIRST)
        workers = Workers(storage, base / "space.yaml", env, base)
        victim = workers.start(clones[0], 0)
        workers.start(clones[1], 1)
        killed = wait_for(lambda: running_in(study, clones[0]), "a trial of the first worker training")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        time.sleep(HEARTBEAT * 5)  # past the grace period: the restarted worker fails the trial first thing
        workers.start(clones[0], 0)  # the same command again
        workers.wait_all()
        best = subprocess.run([sys.executable, "-m", "pipeline.search", "--study", STUDY, "--storage", storage,
                               "--best"], cwd=clones[0], env=env, capture_output=True, text=True, timeout=120)
        yield {"study": study, "trials": study.get_trials(), "killed": killed.number, "clones": clones,
               "env": env, "best": best, "origin": origin}


def exp_refs(clone: Path, env: dict) -> dict[str, str]:
    """The clone's experiments by name (refs/exps/<baseline, split 2/38>/<name>)."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], clone, env).split()
    return {ref.rsplit("/", 1)[1]: ref for ref in refs if ref.count("/") == 4}


def exp_names(clone: Path, env: dict) -> set[str]:
    return set(exp_refs(clone, env))


def study_runs(env: dict) -> dict[str, mlflow.entities.Run]:
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.study = '{STUDY}'",
                              output_format="list")
    return {run.data.tags["trial"]: run for run in runs}


def test_every_finished_trial_is_a_dvc_experiment_and_a_tagged_mlflow_run(searched):
    finished = [t for t in searched["trials"] if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= TRIALS
    names = [exp_names(clone, searched["env"]) for clone in searched["clones"]]
    assert not names[0] & names[1]
    assert {f"{STUDY}-{trial.number}" for trial in finished} <= names[0] | names[1]
    runs = study_runs(searched["env"])
    for trial in finished:
        found = runs[str(trial.number)]
        assert found.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert found.info.status == "FINISHED" and found.info.run_name == f"{STUDY}-{trial.number}"
        assert found.data.tags["dvc.exp_name"] == f"{STUDY}-{trial.number}"


def test_a_three_epoch_trial_is_pruned_after_its_second_and_recorded_as_such(searched):
    pruned = [t for t in searched["trials"] if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["train.epochs"] == 3 for t in pruned)
    complete = [t for t in searched["trials"] if t.state == TrialState.COMPLETE]
    assert complete and all(t.params["train.epochs"] == 2 for t in complete)
    trial = pruned[0]
    assert list(trial.intermediate_values) == [1, 2]
    run_info = study_runs(searched["env"])[str(trial.number)]
    assert run_info.data.tags["pruned"] == "true" and run_info.data.tags["pruned_after_epoch"] == "2"
    assert [m.step for m in mlflow.MlflowClient().get_metric_history(run_info.info.run_id, "val_miou")] == [1, 2]
    clone = next(c for c in searched["clones"] if trial.user_attrs["worker"].endswith(f":{c}"))
    ref = exp_refs(clone, searched["env"])[f"{STUDY}-{trial.number}"]
    metrics = json.loads(run(["git", "show", f"{ref}:reports/train/metrics.json"], clone, searched["env"]))
    assert metrics["pruned"] == 1 and metrics["best_epoch"] in (1, 2)
    history = run(["git", "show", f"{ref}:reports/train/history.csv"], clone, searched["env"]).splitlines()
    assert len(history) == 3  # the header and epochs 1 and 2 of 3


def test_the_killed_workers_trial_is_failed_and_run_again(searched):
    trials = {trial.number: trial for trial in searched["trials"]}
    killed = trials[searched["killed"]]
    assert killed.state == TrialState.FAIL
    retries = [t for t in trials.values() if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    killed_run = mlflow.MlflowClient().get_run(killed.user_attrs["mlflow_run_id"])
    assert killed_run.info.status in ("KILLED", "FAILED")
    assert not exp_names(searched["clones"][0], searched["env"]) & {f"{STUDY}-{killed.number}"}


def test_the_study_registers_its_best_trial_only(searched):
    best = searched["study"].best_trial
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [v.run_id for v in versions] == [best.user_attrs["mlflow_run_id"]]
    assert client.get_model_version_by_alias(MODEL, "champion").version == versions[0].version
    assert searched["best"].returncode == 0, searched["best"].stderr
    assert f"best: trial {best.number}, experiment {STUDY}-{best.number}, val_miou {best.value:.4f}" in \
        searched["best"].stdout


def test_the_best_experiment_pulled_into_another_clone_and_reproduced_gives_its_value(searched):
    best, env = searched["study"].best_trial, searched["env"]
    name = f"{STUDY}-{best.number}"
    ran_in = next(c for c in searched["clones"] if best.user_attrs["worker"].endswith(f":{c}"))
    other = next(c for c in searched["clones"] if c != ran_in)
    run(["dvc", "exp", "push", "origin", name], ran_in, env)
    run(["dvc", "exp", "pull", "origin", name], other, env)
    run(["dvc", "exp", "apply", name], other, env)
    run(["dvc", "repro", "--force", "--single-item", "train"], other, env)
    metrics = json.loads((other / "reports/train/metrics.json").read_text())
    assert metrics["val_miou"] == best.value
    assert "pruned" not in metrics  # a plain run: no study to report to
