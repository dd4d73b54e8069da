"""How a stage stops: SIGTERM handled like Ctrl-C (so an MLflow run killed by `dvc queue kill` or a scheduler is
closed as KILLED), and a stage that ends with the DVC process that started it."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

import psutil

log = logging.getLogger("stages")
WATCH_INTERVAL = 0.5  # seconds between two checks that the process which started this stage is still there


def interrupt_on_sigterm() -> None:
    """Raise KeyboardInterrupt on SIGTERM, so `finally` blocks and context managers run as on Ctrl-C. The training
    loop defers it, and Ctrl-C, to its next batch boundary (pipeline/training/graceful_stop.py)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


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
