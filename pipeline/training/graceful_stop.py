"""Ctrl-C and SIGTERM stop a training at a safe point, not at whatever bytecode they land on.

Raised as KeyboardInterrupt straight from the signal handler (stages/lifecycle/signals.py), a stop could cut an MLflow
write to sqlite, whose open transaction then kept the database locked, so the run could not be closed as KILLED and
stayed RUNNING; or torch.save of the training state, whose zip writer then failed on its own (the run FAILED). So while
the training runs, the first SIGTERM or SIGINT is only recorded, and the loop stops itself at the next stop point (a
train or val batch boundary, between epochs) by raising KeyboardInterrupt there: the MLflow run closes as KILLED, the
state of the last finished epoch stays resumable, nothing is registered. Under torchrun the processes agree at every
train batch and between epochs (one all-reduce of the flag): a process that stopped alone would leave the others waiting
in the next gradient all-reduce. Validation shards may differ in length, so there a process only ends its shard early
and the agreement follows the val scores' own all-reduce.

A signal more than SAME_REQUEST_SECONDS after the first interrupts at once: a user insisting. Closer ones are the same
request delivered twice (a SIGTERM to the process group, then the one stages/lifecycle/signals.py sends when DVC has
exited), and are ignored even while the run is being closed. Outside `deferring()` (setting up, writing the final model)
the first signal interrupts at once, as before.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

from pipeline.training import distributed

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SAME_REQUEST_SECONDS = 2.0  # the DVC watch in stages/lifecycle/signals.py looks twice a second
Batch = TypeVar("Batch")

log = logging.getLogger(__name__)


class GracefulStop:
    """One training process's stop request and the points where the loop honours it."""

    def __init__(self) -> None:
        self.signal: int | None = None  # the first SIGTERM or SIGINT received while listening
        self.received_at = 0.0
        self.deferred = False

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """SIGTERM and SIGINT reach this object within the block (the MLflow run opens and closes inside it); the
        handlers from before come back afterwards. A signal the process ignores stays ignored."""
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        for number, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(number, self._on_signal)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """Within the block a signal is recorded and the loop stops at its next stop point; leaving the block
        normally is one more (every process leaves it together), so a request made during the last epoch's writes
        stops the training before its final model is written."""
        self.deferred = True
        try:
            yield
        finally:
            self.deferred = False
        self.stop_point("after the last epoch")

    def _on_signal(self, number: int, frame) -> None:
        if self.signal is not None:
            if time.monotonic() - self.received_at > SAME_REQUEST_SECONDS:
                raise KeyboardInterrupt(f"terminated by signal {number}, a second time")
            return
        self.signal, self.received_at = number, time.monotonic()
        if not self.deferred:
            raise KeyboardInterrupt(f"terminated by signal {number}")

    def stop_point(self, where: str) -> None:
        """Raise KeyboardInterrupt if this or any other process was asked to stop. Every process must call it at
        the same points."""
        asked = distributed.sum_over_processes(torch.tensor([float(self.signal is not None)])).item() > 0
        if not asked:
            return
        cause = signal.Signals(self.signal).name if self.signal is not None else "another process was signalled"
        if distributed.is_main():
            log.warning(f"stopping {where} ({cause}); the next run resumes after the last finished epoch")
        raise KeyboardInterrupt(f"stopped {where} ({cause})")

    def until_asked(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """`batches` until this process is asked to stop: for a loop whose processes need not agree batch by
        batch (validation), followed by a stop point."""
        for batch in batches:
            if self.signal is not None:
                return
            yield batch
