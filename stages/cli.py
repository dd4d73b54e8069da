"""What every stage script shares: the --params argument, time-stamped log lines (pipeline/logs.py), one line and
a non-zero exit for an error that is the user's to fix (a bad key, a missing file; a bug keeps its traceback),
SIGTERM handled like Ctrl-C (so an MLflow run killed by `dvc queue kill` or a scheduler is closed as KILLED) and
ending in one line, a stage that ends with the DVC process that started it, and, when a `dvc exp run` in the
workspace fails, a last line saying how to get the workspace back."""
from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from pipeline.config import Params, load_params_or_exit
from pipeline.errors import UserError
from pipeline.logs import configure_logging
from pipeline.repo import repo_root
from pipeline.secrets import redact

log = logging.getLogger("stages")

# What a failed workspace experiment leaves changed: params.yaml (its -S values), dvc.lock (stages that ran before),
# and the outputs DVC removed before running the failed stage: git holds the cache: false ones (all under
# reports/, tests/test_stage_deps.py checks), the DVC cache the others, which `dvc checkout` restores per dvc.lock
RESTORE_PATHS = ("params.yaml", "dvc.lock", "reports")
RESTORE_COMMAND = f"git checkout HEAD -- {' '.join(RESTORE_PATHS)} && dvc checkout"


def interrupt_on_sigterm() -> None:
    """Raise KeyboardInterrupt on SIGTERM, so `finally` blocks and context managers run as on Ctrl-C. The training
    loop defers it, and Ctrl-C, to its next batch boundary (pipeline/training/graceful_stop.py)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


INTERRUPTED = 128 + signal.SIGINT  # the exit status of a command stopped by Ctrl-C, as shells report it
WATCH_INTERVAL = 0.5  # seconds between two checks that the process which started this stage is still there


def started_through() -> list[psutil.Process]:
    """This process, and the `$SHELL -c` through which DVC runs a command when that shell stayed in between:
    bash replaces itself by the command, dash (the /bin/sh DVC falls back to without $SHELL) does not."""
    this = psutil.Process()
    parent = this.parent()
    shell = os.environ.get("SHELL") or "/bin/sh"
    if parent is not None and parent.cmdline()[:1] == [shell] and "-c" in parent.cmdline():
        return [this, parent]
    return [this]


def stop_when_dvc_exits() -> None:
    """Under DVC, end this stage as on SIGTERM once the process that started it exits. DVC 3.67 has no SIGTERM
    handler (it dies at once) and ignores SIGINT while a stage runs, so a stage would go on as an orphan, write
    outputs and register a model. A torchrun worker (DVC_STAGE is inherited) follows its launcher, which
    follows DVC."""
    if "DVC_STAGE" not in os.environ:
        return
    chain = started_through()
    parents = [process.ppid() for process in chain]

    def watch() -> None:
        try:
            while all(process.ppid() == parent for process, parent in zip(chain, parents)):
                time.sleep(WATCH_INTERVAL)
        except psutil.NoSuchProcess:  # the shell exited right after this process's own check passed
            pass
        log.warning(f"stopping: process {parents[-1]}, which started this stage, has exited")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-when-dvc-exits", daemon=True).start()


def log_written(what: str, run_id: str | None) -> None:
    """A stage's last line: what it wrote, and which MLflow run holds it now."""
    log.info(f"wrote {what}; " + (f"attached to MLflow run {run_id}" if run_id else "attached to no MLflow run"))


def in_workspace_experiment() -> bool:
    """`dvc exp run` in the workspace: DVC names the experiment and runs the stage at the repository root. `--temp`
    and queued runs work in a copy under .dvc/tmp/exps/ that DVC throws away, so they leave nothing to restore."""
    return bool(os.environ.get("DVC_EXP_NAME")) and Path.cwd().resolve() == repo_root()


@contextlib.contextmanager
def restore_hint_on_failure() -> Iterator[None]:
    """A failed workspace experiment ends with the command that restores the last commit's params and outputs. It
    is printed at exit, after the error or traceback; under torchrun by rank 0 alone."""
    try:
        yield
    except BaseException as error:
        succeeded = isinstance(error, SystemExit) and error.code in (0, None)
        if not succeeded and in_workspace_experiment() and speaks_for_the_stage():
            atexit.register(print, "params.yaml keeps this experiment's values; to put it and the outputs back as in "
                            f"the last commit: {RESTORE_COMMAND}", file=sys.stderr)
        raise


def speaks_for_the_stage() -> bool:
    """Whether this process prints the stage's last words: any but torchrun's workers of rank 1 and up (read from the
    environment, as the process group is gone by then)."""
    return os.environ.get("RANK", "0") == "0"


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
