"""How a search worker stops, and how a trial's `dvc exp run` stops with it.

Ctrl-C once: the running trial finishes and no other starts (a trial boundary). Twice, or SIGTERM (a scheduler's
stop): the trial's training is stopped now, its MLflow run closed as KILLED (stages/cli.py, training/graceful_stop.py),
and the trial is failed. The trial runs in its own session, so a terminal's Ctrl-C reaches the worker alone, which
decides. A worker killed outright (SIGKILL, a lost node) cannot decide anything: on Linux its `dvc exp run` gets
SIGTERM from the kernel (PR_SET_PDEATHSIG), DVC dies at once, and the stage, which watches DVC, stops as KILLED; the
heartbeat lets another worker fail the trial and run it again (storage.py).
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


def die_with_parent() -> None:
    """In the trial's process, before exec: SIGTERM when the worker thread that started it dies (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class StopRequest:
    """The worker's Ctrl-C and SIGTERM, and the trial process they may have to stop."""

    def __init__(self) -> None:
        self.asked = False  # no new trial
        self.now = False  # the running trial was stopped too
        self.child: subprocess.Popen | None = None

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        previous = {number: signal.signal(number, self._on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _on_signal(self, number: int, frame) -> None:
        if number == signal.SIGINT and not self.asked:
            self.asked = True
            log.warning("Ctrl-C: no new trial starts once this one ends; Ctrl-C again stops this one now")
            return
        self.asked = self.now = True
        if self.child is None or self.child.poll() is not None:
            raise KeyboardInterrupt(f"stopped by {signal.Signals(number).name}")
        log.warning(f"{signal.Signals(number).name}: stopping the running trial")
        os.killpg(self.child.pid, signal.SIGTERM)

    def run(self, command: list[str], env: dict, cwd: Path) -> int:
        """Run one trial's command to its end (or until stopped); its exit status."""
        self.child = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True, preexec_fn=die_with_parent)
        try:
            return self.child.wait()
        finally:
            self.child = None
