"""When a `dvc exp run` in the workspace fails, a last line saying how to get the workspace back."""
from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pipeline.repo import repo_root

# What a failed workspace experiment leaves changed: params.yaml (its -S values), dvc.lock (stages that ran before),
# and the outputs DVC removed before running the failed stage: git holds the cache: false ones (all under
# reports/, tests/test_stage_deps.py checks), the DVC cache the others, which `dvc checkout` restores per dvc.lock
RESTORE_PATHS = ("params.yaml", "dvc.lock", "reports")
RESTORE_COMMAND = f"git checkout HEAD -- {' '.join(RESTORE_PATHS)} && dvc checkout"


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
