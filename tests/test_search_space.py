"""Issue 28: the search-space file is checked in full before the first trial, with params.yaml's own rules applied
through DVC's own `-S` code, one line per problem; a refused file creates no study."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from pipeline.config import ConfigError
from pipeline.search.space import format_value, load_space, override
from tests.project_repo import REPO_ROOT, clean_env
from tests.team_services import free_port

PARAMS = REPO_ROOT / "params.yaml"
MSRC = ["data.dataset=voc_layout", "data.root=/data/msrc_v2", "train.precision=fp32"]


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


# a mistyped lr, a misspelt key and a choice params.yaml refuses, then what each test adds
BAD_PARAMS = """
params:
  train.lr: {type: float, low: 0, high: 0.01}
  train.los: {type: choice, values: [ce, dice]}
  train.loss: {type: choice, values: [ce, hinge]}
"""


def refusal(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    """The space file written from `text`, and the lines of the error that refuses it."""
    path = write_space(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_space(path, PARAMS, [])
    return path, str(refused.value).splitlines()


@pytest.mark.parametrize(("name", "fixed"), [("example.yaml", []), ("msrc.yaml", MSRC),
                                                    ("msrc_quick.yaml", MSRC)])
def test_the_shipped_spaces_are_valid(name, fixed):
    space = load_space(REPO_ROOT / "sweeps" / name, PARAMS, fixed)
    assert space.file.metric == "val_miou" and space.file.direction == "maximize"
    assert isinstance(space.pruner.build(), optuna.pruners.BasePruner)
    assert isinstance(space.sampler.build(seed=1), optuna.samplers.BaseSampler)


def test_every_problem_is_one_line_naming_the_file_and_the_key(tmp_path):
    path, lines = refusal(tmp_path, BAD_PARAMS + """\
  augment.crops_per_image: {type: int, low: 3, high: 1}
  train.epochs: {type: range, low: 1, high: 2}
pruner: {type: median, n_startup_trial: 3}
""")
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    text = "\n".join(lines)
    assert "params.augment.crops_per_image.high: must be >= params.augment.crops_per_image.low" in text
    assert "params.train.epochs.type: 'range' is not allowed; choose one of float, int, choice" in text
    assert "pruner.n_startup_trial: unknown key (did you mean 'n_startup_trials'?)" in text
    assert len(lines) == 3  # the shape first: params.yaml's rules apply to ranges that are ranges


def test_range_endpoints_and_choices_follow_params_yaml_rules(tmp_path):
    path, lines = refusal(tmp_path, BAD_PARAMS + "  augment.crops_per_image: {type: int, low: 1, high: 2}\n")
    lines = [line.removeprefix(f"{path}: ") for line in lines]
    assert lines[0] == "params.train.lr = 0.0: train.lr: expected a float in (0, 10] or auto, got 0.0"
    assert lines[1].startswith("params.train.los = 'ce': train.los: unknown key (did you mean 'loss'?)")
    assert lines[2] == ("params.train.loss = 'hinge': train.loss: 'hinge' is not allowed; choose one of ce, dice, "
                        "focal, ce+dice")
    assert len(lines) == 3  # the unknown key once, not once per choice


def test_fixed_overrides_are_checked_and_apply_to_every_value(tmp_path):
    path = write_space(tmp_path, "params:\n  train.warmup_epochs: {type: int, low: 0, high: 3}\n")
    with pytest.raises(ConfigError, match=r"^-S train\.epoch=3: Could not override 'train\.epoch'"):
        load_space(path, PARAMS, ["train.epoch=3"])
    assert load_space(path, PARAMS, ["train.epochs=4"])
    with pytest.raises(ConfigError) as refused:  # a warmup as long as the epochs a fixed value sets
        load_space(path, PARAMS, ["train.epochs=2"])
    assert str(refused.value).count("\n") == 0 and "params.train.warmup_epochs = 3: " in str(refused.value)


def test_pruning_needs_a_metric_training_reports_each_epoch(tmp_path):
    path = write_space(tmp_path, "params:\n  train.lr: {type: float, low: 0.001, high: 0.01}\nmetric: best_epoch\n")
    with pytest.raises(ConfigError, match="pruner: prunes on the metric's value at each epoch"):
        load_space(path, PARAMS, [])
    path.write_text(path.read_text() + "pruner: {type: none}\n")
    assert load_space(path, PARAMS, []).file.metric == "best_epoch"


@pytest.mark.parametrize("value", ["ce+dice", "auto", "1e-3", "null", None, True, 0.0005, 3, "a,b", "it's"])
def test_a_value_reaches_params_yaml_as_itself(tmp_path, value):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  loss: ce\n")
    apply_overrides(str(params), [override("train.loss", value)])
    assert yaml.safe_load(params.read_text())["train"]["loss"] == value, format_value(value)


def test_a_bad_space_is_refused_before_the_storage_is_touched(tmp_path):
    space = write_space(tmp_path, "params:\n  train.lr: {type: float, low: -1, high: 0.01}\n")
    storage = tmp_path / "optuna.db"
    result = subprocess.run([sys.executable, "-m", "pipeline.search", "--study", "s", "--storage",
                             f"sqlite:///{storage}", "--space", str(space), "--trials", "2"], cwd=REPO_ROOT,
                            env=clean_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {space}: params.train.lr = -1.0: train.lr: expected a float in (0, 10] "
                                     "or auto, got -1.0")
    assert not storage.exists()


def test_an_unreachable_storage_is_one_line_naming_it_without_its_password(tmp_path):
    space = write_space(tmp_path, "params:\n  train.lr: {type: float, low: 0.001, high: 0.01}\n")
    url = f"postgresql://alice:s3cret-pw@127.0.0.1:{free_port()}/optuna?sslpassword=s3cret-too"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pipeline.search", "--study", "s", "--storage", url, "--space",
                             str(space), "--trials", "2"], cwd=REPO_ROOT, env=clean_env(), capture_output=True,
                            text=True, timeout=120)
    assert time.monotonic() - started < 30
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: --storage postgresql://alice:***@127.0.0.1:")
    assert "s3cret" not in result.stderr and "sslpassword=***" in result.stderr
    assert "Connection refused" in result.stderr
