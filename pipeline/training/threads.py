"""`train.num_threads: auto`: the machine's cores shared among the trainings running on it at once.

Each torch process takes every core as a thread by default, so two trainings on two cores run slower
together than one after the other. Every training (a DVC queue worker's, a `dvc exp run --temp`, each
torchrun worker) holds an exclusive `flock` on one slot file in a folder shared by the machine's users;
the number of locked slots is the number of trainings running now, and each takes its share of the cores.
The kernel drops a lock when its process dies, however it dies, so a killed training stops counting at once:
no server, no pid files to clean up. Each training looks again every few seconds, so one that started alone
gives cores up when others start and takes them back when they end.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

SLOT_DIR = Path(tempfile.gettempdir()) / "segmentation-pipeline-trainings"
MAX_SLOTS = 1024  # far more trainings than any machine runs at once; bounds the folder
RECHECK_SECONDS = 5.0


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def fair_share(cores: int, trainings: int) -> int:
    """Threads for one of `trainings` running at once on `cores`: an equal share, at least one."""
    return max(1, cores // max(trainings, 1))


class ThreadShare:
    """This process's slot among the running trainings; `refresh()` sets torch's threads to its share."""

    def __init__(self, slot_dir: Path = SLOT_DIR, cores: int | None = None):
        self.slot_dir = slot_dir
        self.cores = cores or usable_cores()
        self._slot = self._claim()
        self._checked_at = float("-inf")

    def _claim(self) -> int:
        """An exclusive lock on the first free slot file, held open until release or death."""
        self.slot_dir.mkdir(parents=True, exist_ok=True)
        if self.slot_dir.stat().st_uid == os.getuid():
            self.slot_dir.chmod(0o1777)  # every user's trainings count (sticky, like /tmp); mkdir's mode obeys umask
        for index in range(MAX_SLOTS):
            try:
                handle = os.open(self.slot_dir / f"slot-{index}", os.O_RDONLY | os.O_CREAT, 0o644)
            except PermissionError:  # another user's slot, where the kernel guards sticky folders (protected_regular)
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except OSError:
                os.close(handle)
        raise RuntimeError(f"{self.slot_dir}: all {MAX_SLOTS} training slots are taken")

    def trainings(self) -> int:
        """How many trainings hold a slot now, this one included."""
        held = 0
        for path in self.slot_dir.glob("slot-*"):
            try:
                handle = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                held += 1
            finally:
                os.close(handle)
        return max(held, 1)

    def threads(self) -> int:
        return fair_share(self.cores, self.trainings())

    def refresh(self) -> int:
        """Follow the share, looking at most every RECHECK_SECONDS; returns torch's thread count."""
        now = time.monotonic()
        if now - self._checked_at >= RECHECK_SECONDS:
            self._checked_at = now
            share = self.threads()
            if share != torch.get_num_threads():
                torch.set_num_threads(share)
        return torch.get_num_threads()

    def release(self) -> None:
        if self._slot is not None:
            os.close(self._slot)  # closing the only descriptor drops the lock
            self._slot = None

    def __enter__(self) -> ThreadShare:
        self.refresh()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def share_cores(setting: int | str) -> ThreadShare | nullcontext:
    """A held slot for `train.num_threads: auto`; nothing to hold for a fixed count (configure_torch sets it)."""
    return ThreadShare() if setting == "auto" else nullcontext()
