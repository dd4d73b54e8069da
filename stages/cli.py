"""What every stage script shares: the --params argument, time-stamped log lines (pipeline/logs.py), one line and
a non-zero exit for an error that is the user's to fix (a bad key, a missing file; a bug keeps its traceback), and
SIGTERM handled like Ctrl-C (so an MLflow run killed by `dvc queue kill` or a scheduler is closed as KILLED)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

from pipeline.config import ConfigError, Params, load_params
from pipeline.errors import UserError
from pipeline.logs import configure_logging

log = logging.getLogger("stages")


def interrupt_on_sigterm() -> None:
    """Raise KeyboardInterrupt on SIGTERM, so `finally` blocks and context managers run as on Ctrl-C."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def log_written(what: str, run_id: str | None) -> None:
    """A stage's last line: what it wrote, and which MLflow run holds it now."""
    log.info(f"wrote {what}; " + (f"attached to MLflow run {run_id}" if run_id else "attached to no MLflow run"))


def run_stage(description: str, stage: Callable[[Params], None]) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args()
    configure_logging()
    try:
        params = load_params(args.params)
    except ConfigError as error:
        sys.exit(f"error in {args.params}: {error}")
    interrupt_on_sigterm()
    try:
        stage(params)
    except (UserError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
