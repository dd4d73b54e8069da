"""params.yaml as frozen pydantic models, checked in full before any stage does work.

Pydantic gives the schema in one place (types, ranges, and the default of every key: params.yaml holds only what
experiments change, so `dvc exp show` stays legible); this package words its errors, one line per problem naming
the dotted key (`train.lr: must be > 0`), and prints every value a run uses (`python -m pipeline.config --show`).
types.py holds the value types and the bound of every number; data, models, training and reporting the sections;
params.py the whole file and the rules across sections; loading.py reads YAML safely; problems.py words errors.
"""
# A face: each import re-exports what the project imports from pipeline.config, packed a module a statement.
# ruff: noqa: F401, I001
from pipeline.config.problems import ConfigError, invalid, quote
from pipeline.config.types import (
    DATASETS, LOSSES, MAX_EPOCHS, MAX_TIME_BUDGET, MODELS, OPTIMIZERS, SCHEDULERS, Block, Bool, DatasetName,
    DeviceName, EpochCount, Epochs, Float, Int, LossName, OptimizerName, SchedulerName, Str, class_names_problem,
    image_size_problem)
from pipeline.config.data import DataParams
from pipeline.config.models import (
    POOLING_MODELS, PRETRAINED_MODELS, ModelsParams, MultiScaleUNetParams, SmpParams, UNetParams, smp_encoder_problem)
from pipeline.config.training import TrainParams
from pipeline.config.reporting import EvaluateParams, MlflowParams
from pipeline.config.params import Params
from pipeline.config.loading import expanded_size, load_params, parse
from pipeline.config.plain_data import active, as_dict, flatten
from pipeline.config.cli import load_params_or_exit, main
