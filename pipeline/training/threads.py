"""The threads a stage computes with: fixed by the machine and the launch, never by the machine's load.

A different thread count changes fp32 sums: on a 2-core AMD EPYC (Zen 3) the default U-Net's forward pass and its
training steps give other bytes at one thread than at two. A count that followed the trainings running beside this
one would make the DVC-tracked outputs, and dvc.lock, follow the machine's load. So `train.num_threads: auto` is the
cores this process may run on, divided among the processes of one torchrun launch, for the whole run; evaluate
scores with the same count.

Trainings running at once (`dvc queue start -j 2`, several `--temp` runs, search workers) still share the cores,
through the kernel's scheduler: OpenMP's threads wait passively at the end of each parallel region, so a waiting
thread hands its core to the other process instead of spinning on it. With the default active wait, two trainings
of two threads on two cores spin against each other and ran 5x slower; passive, they ran as fast as one after the
other. The wait policy is read once, when torch loads OpenMP, so stages/__init__.py sets it before any stage
imports torch.
"""
from __future__ import annotations

import os

import torch


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def resolve_threads(setting: int | str) -> int:
    """torch's intra-op threads for `train.num_threads`: a number as given (0: torch's default, OMP_NUM_THREADS or
    every core); `auto`: this process's equal share of its cores among the processes of its torchrun launch."""
    if setting == "auto":
        return max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return setting or torch.get_num_threads()


def use_threads(setting: int | str) -> int:
    """Set torch's intra-op threads for the whole run; returns the count."""
    threads = resolve_threads(setting)
    torch.set_num_threads(threads)
    return threads
