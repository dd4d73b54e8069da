"""How the stages talk: time-stamped lines on stdout, readable in a CI log or a queue worker's file.

The project's loggers ("pipeline", "stages") say INFO and above; other libraries keep their WARNING threshold.
Progress bars show on a terminal only: ours are tqdm with `disable=None`, and MLflow's artifact bars, which draw
`\\r` frames into any file, are turned off when stderr is not a terminal."""
from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta

from pipeline.secrets import guard_outputs

PROJECT_LOGGERS = ("pipeline", "stages")
MLFLOW_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def configure_logging() -> None:
    """Call once, at a command's start (a user's own MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR wins); secrets are redacted
    from every line from then on (pipeline/secrets.py)."""
    logging.basicConfig(stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    guard_outputs()
    if not sys.stderr.isatty():
        os.environ.setdefault(MLFLOW_PROGRESS_BAR, "false")


def duration(seconds: float) -> str:
    """`0:04:07`: hours, minutes, seconds."""
    return str(timedelta(seconds=round(seconds)))
