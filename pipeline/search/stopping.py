"""How a search worker stops, and how a trial's `dvc exp run` stops with it.

Ctrl-C once: the running trial finishes and no other starts (a trial boundary). Twice, or SIGTERM (a scheduler's stop):
the trial's `dvc exp run` gets SIGTERM, of which DVC dies at once; its stage, which watches DVC, stops as on SIGTERM
(stages/lifecycle/signals.py, training/graceful_stop.py: the MLflow run ends KILLED), the worker waits for it, and the
trial is failed. The trial runs in its own session, so a terminal's Ctrl-C reaches the worker alone, which decides (a
signal to the whole session would reach the stage twice, once directly and once from its DVC watch). A worker killed
outright (SIGKILL, a lost node) cannot decide anything: on Linux its `dvc exp run` gets SIGTERM from the kernel
(PR_SET_PDEATHSIG), DVC dies at once, and the stage, which watches DVC, stops as KILLED; the heartbeat lets another
worker fail the trial and run it again (storage.py).
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PR_SET_PDEATHSIG = 1
SESSION_TIMEOUT = 120  # seconds for a stopped stage to close its MLflow run and exit
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
        self.child.terminate()

    def run(self, command: list[str], env: dict, cwd: Path) -> int:
        """Run one trial's command to its end (or until stopped) and whatever it started; its exit status."""
        self.child = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True, preexec_fn=die_with_parent)
        try:
            return self.child.wait()
        finally:
            wait_for_session(self.child.pid)
            self.child = None


def wait_for_session(leader: int, timeout: float = SESSION_TIMEOUT) -> None:
    """Wait until the processes of the trial's session have ended (a stopped stage closes its MLflow run first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(leader, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    log.warning(f"processes of the trial's session {leader} still run after {timeout:g} s")
