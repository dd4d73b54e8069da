"""The search-space file (sweeps/*.yaml): which params.yaml keys a study varies and over what, what it optimises,
and the sampler and pruner that drive it. Checked in full before the first trial: the file's own shape by pydantic
(one line per problem, as params.yaml), then every range endpoint and every choice by building the params with it
through DVC's own `-S` code, so `train.lr: {low: 0}` is refused here, with the rule params.yaml has, not by trial 7.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field, model_validator

from pipeline.config import (
    Block,
    Bool,
    ConfigError,
    EpochCount,
    Epochs,
    Float,
    Int,
    Params,
    Str,
    invalid,
    load_params,
    parse,
)

HISTORY_COLUMNS = ("val_miou", "val_loss", "val_pixel_accuracy")  # what training reports each epoch


class NumericRange(Block):
    """What float and int ranges share: low <= high, a log range above 0, both ends checked as params."""

    @model_validator(mode="after")
    def _ordered(self) -> NumericRange:
        check_range(self.low, self.high, self.log)
        return self

    def endpoints(self) -> list[Any]:
        return [self.low, self.high]


class FloatRange(NumericRange):
    type: Literal["float"]
    low: Float
    high: Float
    log: Bool = False  # sample the exponent: for rates that span decades
    step: Float | None = None

    @model_validator(mode="after")
    def _no_step_on_log(self) -> FloatRange:
        if self.log and self.step is not None:
            raise invalid("step", "a log range takes no step")
        return self

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntRange(NumericRange):
    type: Literal["int"]
    low: Int
    high: Int
    step: Annotated[Int, Field(ge=1)] = 1
    log: Bool = False

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


class Choice(Block):
    type: Literal["choice"]
    values: Annotated[list[Str | Bool | Int | Float | None], Field(min_length=1)]

    def endpoints(self) -> list[Any]:
        return list(self.values)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, self.values)


def check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise invalid("high", f"must be >= {{0}} ({low:g}), got {high:g}", "low")
    if log and low <= 0:
        raise invalid("low", f"must be > 0 for a log range, got {low:g}")


class _Engine(Block):
    """A sampler or pruner spec: its fields, less `type`, are the keyword arguments of optuna's class."""
    optuna_class: ClassVar[str]

    def build(self, **overrides: Any) -> Any:
        import optuna

        group = optuna.samplers if self.optuna_class.endswith("Sampler") else optuna.pruners
        return getattr(group, self.optuna_class)(**{**self.model_dump(exclude={"type"}), **overrides})

    def as_json(self) -> str:
        """What build() calls, for a process that builds it without this module (training/pruning.py)."""
        return json.dumps({"class": self.optuna_class, "arguments": self.model_dump(exclude={"type"})})


class TpeSampler(_Engine):
    optuna_class = "TPESampler"
    type: Literal["tpe"]
    seed: Int | None = None  # each worker adds its --worker number, so parallel workers propose different trials
    n_startup_trials: Annotated[Int, Field(ge=0)] = 10  # random trials before the model of good and bad settings
    multivariate: Bool = True


class RandomSampler(_Engine):
    optuna_class = "RandomSampler"
    type: Literal["random"]
    seed: Int | None = None


class MedianPruner(_Engine):
    optuna_class = "MedianPruner"
    type: Literal["median"]
    n_startup_trials: Annotated[Int, Field(ge=0)] = 5  # trials that always run to the end, to learn the median from
    n_warmup_steps: EpochCount = 0  # epochs before a trial can be pruned
    interval_steps: Epochs = 1


class HyperbandPruner(_Engine):
    optuna_class = "HyperbandPruner"
    type: Literal["hyperband"]
    min_resource: Epochs = 1  # epochs every trial runs
    max_resource: Epochs | Literal["auto"] = "auto"
    reduction_factor: Annotated[Int, Field(ge=2)] = 3


class ThresholdPruner(_Engine):
    optuna_class = "ThresholdPruner"
    type: Literal["threshold"]
    lower: Float | None = None  # prune a trial whose epoch value is below this (maximize) ...
    upper: Float | None = None  # ... or above this
    n_warmup_steps: EpochCount = 0


class NoPruner(_Engine):
    optuna_class = "NopPruner"
    type: Literal["none"]


DISTRIBUTIONS = {"float": FloatRange, "int": IntRange, "choice": Choice}
SAMPLERS = {"tpe": TpeSampler, "random": RandomSampler}
PRUNERS = {"median": MedianPruner, "hyperband": HyperbandPruner, "threshold": ThresholdPruner, "none": NoPruner}
Raw = dict[Str, Any]


class SpaceFile(Block):
    """The file's top level; each range, the sampler and the pruner are checked by the class their `type` names."""
    params: Annotated[dict[Str, Raw], Field(min_length=1)]
    metric: Str = "val_miou"  # a key of metrics_file, the trial's value
    metrics_file: Str = "reports/train/metrics.json"
    direction: Literal["maximize", "minimize"] = "maximize"
    stage: Str = "train"  # `dvc exp run` runs up to this stage (it must write metrics_file)
    sampler: Raw = Field(default_factory=lambda: {"type": "tpe"})
    pruner: Raw = Field(default_factory=lambda: {"type": "median"})


@dataclass(frozen=True)
class Space:
    file: SpaceFile
    params: dict[str, FloatRange | IntRange | Choice]
    sampler: TpeSampler | RandomSampler
    pruner: MedianPruner | HyperbandPruner | ThresholdPruner | NoPruner

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's values, by params.yaml key."""
        return {key: distribution.suggest(trial, key) for key, distribution in self.params.items()}


def parse_typed(kinds: dict[str, type[_Engine | Block]], raw: dict, key: str) -> tuple[Any, list[str]]:
    """The block of the class `raw["type"]` names, or None and one line per problem."""
    kind = raw.get("type")
    if kind not in kinds:
        return None, [f"{key}.type: {kind!r} is not allowed; choose one of {', '.join(kinds)}"]
    try:
        return parse(kinds[kind], raw, key), []
    except ConfigError as error:
        return None, str(error).splitlines()


def parse_space(raw: Any) -> Space:
    """The space from the file's data, or a ConfigError with one line per problem."""
    top = parse(SpaceFile, raw if raw is not None else {}, "")
    params, problems = {}, []
    for key, spec in top.params.items():
        params[key], lines = parse_typed(DISTRIBUTIONS, spec, f"params.{key}")
        problems += lines
    sampler, lines = parse_typed(SAMPLERS, top.sampler, "sampler")
    pruner, more = parse_typed(PRUNERS, top.pruner, "pruner")
    problems += lines + more
    if pruner is not None and pruner.type != "none" and top.metric not in HISTORY_COLUMNS:
        problems.append(f"pruner: prunes on the metric's value at each epoch, and training reports "
                        f"{', '.join(HISTORY_COLUMNS)} only, not {top.metric!r}: set pruner.type: none or one of those "
                        "metrics")
    if problems:
        raise ConfigError("\n".join(problems))
    return Space(top, params, sampler, pruner)


def load_space(path: Path, params_file: Path, fixed: list[str]) -> Space:
    """The space in `path`, checked against `params_file` with the fixed `-S` overrides applied; a ConfigError
    holds one line per problem, each naming the file (or the overrides)."""
    problems = params_problems(params_file, fixed)
    if problems:
        raise ConfigError("\n".join(f"-S {' -S '.join(fixed)}: {line}" for line in problems))
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the search space ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    try:
        space = parse_space(raw)
    except ConfigError as error:
        raise ConfigError(prefixed(path, str(error))) from None
    problems = check_against_params(space, params_file, fixed)
    if problems:
        raise ConfigError(prefixed(path, "\n".join(problems)))
    return space


def prefixed(path: Path, lines: str) -> str:
    return "\n".join(f"{path}: {line}" for line in lines.splitlines())


def check_against_params(space: Space, params_file: Path, fixed: list[str]) -> list[str]:
    """One line per fixed override, range endpoint or choice that params.yaml's rules refuse (a problem that every
    value of a key shares, such as an unknown key, once)."""
    problems = []
    for key, distribution in space.params.items():
        seen: set[str] = set()
        for value in distribution.endpoints():
            for line in params_problems(params_file, [*fixed, override(key, value)]):
                if line not in seen:
                    seen.add(line)
                    problems.append(f"params.{key} = {value!r}: {line}")
    return problems


def params_problems(params_file: Path, overrides: list[str]) -> list[str]:
    """What params.yaml's schema says about `params_file` with `overrides` applied as `dvc exp run -S` does."""
    try:
        params_with(params_file, overrides)
    except ConfigError as error:
        return str(error).splitlines()
    return []


def params_with(params_file: Path, overrides: list[str]) -> Params:
    """The params of `params_file` with `overrides` applied by DVC's own `-S` code, in a copy."""
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        shutil.copy(params_file, copy)
        try:
            apply_overrides(str(copy), overrides)
        except Exception as error:  # Hydra's parser and DVC's writer have no common error class
            cause = error.__cause__ or error  # DVC's "Invalid `--set-param` value" wraps Hydra's reason
            raise ConfigError(" ".join(str(cause).split())[:300]) from None
        return load_params(copy)


def override(key: str, value: Any) -> str:
    """`++key=value` as `dvc exp run -S` takes it: `++` adds a key params.yaml leaves to its default."""
    return f"++{key}={format_value(value)}"


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back to the same type: null, true, numbers as Python writes
    them, strings quoted (unquoted, `1e-3` or `null` would become a number or None)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
