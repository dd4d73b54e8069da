"""Hyperparameter studies on Optuna: each trial a named DVC experiment of this repository, its training an MLflow
run tagged with the study and the trial, its per-epoch val scores reported to the trial so the pruner can stop it.
`python -m pipeline.search --help`; docs/how-to/search.md."""
from pipeline.search.cli import main

__all__ = ["main"]
