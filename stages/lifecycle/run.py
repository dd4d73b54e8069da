"""What every stage script runs through: the --params argument, time-stamped log lines (pipeline/logs.py), one line
and a non-zero exit for an error that is the user's to fix (a bad key, a missing file; a bug keeps its traceback),
one line when stopped (signals.py), the restore hint of a failed workspace experiment (restore_hint.py), and the
stage's last line saying what it wrote."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

from pipeline.config import Params, load_params_or_exit
from pipeline.errors import UserError
from pipeline.logs import configure_logging
from pipeline.secrets import redact
from stages.lifecycle.restore_hint import restore_hint_on_failure, speaks_for_the_stage
from stages.lifecycle.signals import interrupt_on_sigterm, stop_when_dvc_exits

log = logging.getLogger("stages")
INTERRUPTED = 128 + signal.SIGINT  # the exit status of a command stopped by Ctrl-C, as shells report it


def log_written(what: str, run_id: str | None) -> None:
    """A stage's last line: what it wrote, and which MLflow run holds it now."""
    log.info(f"wrote {what}; " + (f"attached to MLflow run {run_id}" if run_id else "attached to no MLflow run"))


def run_stage(description: str, stage: Callable[[Params], None]) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args()
    configure_logging()
    with restore_hint_on_failure():
        params = load_params_or_exit(args.params)
        interrupt_on_sigterm()
        stop_when_dvc_exits()
        try:
            stage(params)
        except (UserError, FileNotFoundError) as error:
            sys.exit(redact(f"error: {error}"))
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: what stopped where is all the user needs
            if speaks_for_the_stage():  # torchrun's workers stop together
                print(f"stopped: {stop}" if str(stop) else "stopped by Ctrl-C", file=sys.stderr)
            sys.exit(INTERRUPTED)
