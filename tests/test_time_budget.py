"""`train.time_budget`: the epochs that fit a budget, from measured step and validation times (a pure function),
the param's checks, and a budgeted `dvc exp run` whose resolved epochs, recorded in resolved.json and MLflow,
repeat the same val mIoU without the clock."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest

from pipeline.config import MAX_TIME_BUDGET, ConfigError, Params, parse
from pipeline.training.budget import (
    MAX_EPOCHS,
    SAFETY,
    BudgetTooSmall,
    Timing,
    epoch_seconds,
    fit_to_budget,
    resolve_epochs,
)
from pipeline.training.state import TrainState
from tests.project_repo import clean_env, make_project, run

# an epoch of 10 steps of 0.5 s, 4 val batches of 0.25 s and a 0.5 s state save: 6.5 s; 5 s already spent probing
TIMING = Timing(step=0.5, val_batch=0.25, save=0.5, spent=5.0)
STEPS, VAL_BATCHES = 10, 4


def test_an_epoch_is_its_steps_its_validation_and_its_state_save():
    assert epoch_seconds(TIMING, STEPS, VAL_BATCHES) == pytest.approx(6.5)


@pytest.mark.parametrize("budget, epochs", [(100, 13), (200, 28), (600, 86), (12.2, 1)])
def test_the_most_whole_epochs_that_end_within_the_budget_less_its_safety_share(budget, epochs):
    resolved = resolve_epochs(budget, TIMING, STEPS, VAL_BATCHES)
    assert resolved == epochs
    end = TIMING.spent + resolved * epoch_seconds(TIMING, STEPS, VAL_BATCHES)
    assert end <= budget * (1 - SAFETY) < end + epoch_seconds(TIMING, STEPS, VAL_BATCHES)


@pytest.mark.parametrize("budget", [12.0, 5.0, 1.0])
def test_a_budget_that_fits_no_epoch_is_one_error_naming_the_budget_that_would(budget):
    with pytest.raises(BudgetTooSmall) as error:
        resolve_epochs(budget, TIMING, STEPS, VAL_BATCHES)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"train.time_budget: {budget:g} s fits no whole schedule here")
    assert "an epoch takes about 6.5 s (10 steps of 0.5 s" in message and "probe and setup 5.0 s" in message
    needed = int(message.split("give at least ")[1].split(" s")[0])
    assert resolve_epochs(needed, TIMING, STEPS, VAL_BATCHES) == 1  # the budget it names is enough, and just


def test_the_warmup_must_fit_with_at_least_one_epoch_after_it():
    assert resolve_epochs(30, TIMING, STEPS, VAL_BATCHES) == 3
    assert resolve_epochs(30, TIMING, STEPS, VAL_BATCHES, warmup_epochs=2) == 3
    with pytest.raises(BudgetTooSmall, match="for one epoch after the 3 of train.warmup_epochs"):
        resolve_epochs(30, TIMING, STEPS, VAL_BATCHES, warmup_epochs=3)


def test_a_huge_budget_on_a_fast_epoch_stops_at_the_epoch_cap():
    fast = Timing(step=1e-4, val_batch=1e-4, save=1e-4, spent=1.0)
    assert resolve_epochs(MAX_TIME_BUDGET, fast, 1, 1) == MAX_EPOCHS


def budget_params(**train) -> Params:
    return parse(Params, {"train": train}, "")


@pytest.mark.parametrize("value, seconds", [(600, 600.0), (90.5, 90.5), ("600", 600.0), ("1e3", 1000.0),
                                            ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), (" 1.5h ", 5400.0)])
def test_the_budget_is_seconds_or_a_duration_with_a_unit(value, seconds):
    params = budget_params(time_budget=value)
    assert params.train.time_budget == seconds and params.train.epochs == params.models.unet.epochs  # until resolved


@pytest.mark.parametrize("value, message", [
    (-5, "train.time_budget: must be > 0, got -5"),
    (0, "train.time_budget: must be > 0, got 0"),
    ("-5m", "train.time_budget: expected seconds or a duration such as 600, 90s, 10m or 2h, got '-5m'"),
    ("ten minutes", "train.time_budget: expected seconds or a duration such as 600, 90s, 10m or 2h, got 'ten minutes'"),
    ("1h30m", "train.time_budget: expected seconds or a duration such as 600, 90s, 10m or 2h, got '1h30m'"),
    ("inf", "train.time_budget: expected a finite number, got inf"),
    (True, "train.time_budget: expected float, got True"),
    ("169h", f"train.time_budget: at most a week ({MAX_TIME_BUDGET} s), got 608400 s: plan longer trainings in "
             "epochs"),
])
def test_a_bad_budget_is_one_line_naming_the_key_and_what_is_expected(value, message):
    with pytest.raises(ConfigError) as error:
        budget_params(time_budget=value)
    assert str(error.value) == message


def test_a_budget_and_a_number_of_epochs_are_refused_together_saying_how_to_keep_either():
    with pytest.raises(ConfigError) as error:
        budget_params(time_budget="5m", epochs=7)
    assert str(error.value) == ("train.time_budget: 300 s and train.epochs: 7 both set how long the training runs; "
                                "set train.epochs to auto to fit the budget, or train.time_budget to null to train "
                                "7 epochs")
    assert budget_params(time_budget=None, epochs=7).train.epochs == 7


def test_the_warmup_is_checked_against_the_resolved_epochs_not_the_models_default():
    with pytest.raises(ConfigError, match="train.warmup_epochs: 6 must be less than train.epochs"):
        budget_params(warmup_epochs=6)
    assert budget_params(warmup_epochs=6, time_budget="1h").train.warmup_epochs == 6  # resolve_epochs checks it


def never_built(params: Params):
    raise AssertionError("the probe ran, but a resumed run keeps its planned epochs and an unbudgeted one has none")


def test_a_resumed_budgeted_run_keeps_the_epochs_it_planned_and_no_budget_changes_nothing(tmp_path):
    params = budget_params(time_budget=600)
    resumed = fit_to_budget(params, TrainState(fingerprint="x", epoch=2, planned_epochs=9), never_built, tmp_path)
    assert resumed.train.epochs == 9 and resumed.train.time_budget == 600
    plain = budget_params()
    assert fit_to_budget(plain, TrainState(fingerprint="x"), never_built, tmp_path) is plain


# -- through DVC ---------------------------------------------------------------------------------------------------

def experiment_data(root: Path, env: dict, name: str) -> dict:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env))
    experiments = {exp["name"]: exp for baseline in shown for exp in (baseline.get("experiments") or [])}
    metrics = experiments[name]["revs"][0]["data"]["metrics"]
    return {path: metrics[path]["data"] for path in ["reports/train/resolved.json", "reports/train/metrics.json"]}


def exp_run(root: Path, env: dict, name: str, *overrides: str) -> subprocess.CompletedProcess:
    """`dvc exp run --temp train` with `-S` overrides; the stage's log is in its output."""
    command = ["dvc", "exp", "run", "--temp", "train", "-n", name]
    for override in overrides:
        command += ["-S", override]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)


def mlflow_run(root: Path, name: str):
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("segmentation")
    (found,) = mlflow.MlflowClient().search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
    return found


@pytest.mark.slow  # three `dvc exp run`s of the tiny project: about a minute
def test_a_budgeted_run_records_its_epochs_and_repeats_without_the_clock(tmp_path):
    env = clean_env()
    root = make_project(tmp_path / "project", env)
    # 8 training images, so that an epoch is short next to the probe and setup even on a busy machine
    budgeted = exp_run(root, env, "budgeted", "train.epochs=auto", "++train.time_budget=30", "++train.num_threads=1",
                       "++data.subset.train=8")
    assert budgeted.returncode == 0, budgeted.stderr[-3000:]
    data = experiment_data(root, env, "budgeted")
    epochs = data["reports/train/resolved.json"]["epochs"]
    assert isinstance(epochs, int) and epochs > 2  # more than the tiny project's 2 fit in 30 s
    log = budgeted.stdout + budgeted.stderr
    assert f"-S train.time_budget=null -S train.epochs={epochs} repeats this run without the clock" in log
    assert f"epoch 1/{epochs}: " in log and f"| {epochs} epochs resolved from train.time_budget 30 s" in log
    first = mlflow_run(root, "budgeted")
    assert first.data.params["train.epochs"] == str(epochs) and first.data.params["train.time_budget"] == "30.0"
    assert len(mlflow.MlflowClient().get_metric_history(first.info.run_id, "val_miou")) == epochs

    assert exp_run(root, env, "repeated", f"train.epochs={epochs}", "++train.num_threads=1",
                   "++data.subset.train=8").returncode == 0
    again = experiment_data(root, env, "repeated")
    assert again["reports/train/resolved.json"]["epochs"] == epochs
    assert again["reports/train/metrics.json"]["val_miou"] == data["reports/train/metrics.json"]["val_miou"]
    assert mlflow_run(root, "repeated").data.metrics["best_val_miou"] == first.data.metrics["best_val_miou"]

    failed = exp_run(root, env, "too-small", "train.epochs=auto", "++train.time_budget=0.01")
    assert failed.returncode != 0
    assert "error: train.time_budget: 0.01 s fits no whole schedule here: an epoch takes about" in failed.stderr
    runs = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("segmentation").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["budgeted", "repeated"]  # said before any MLflow run starts
