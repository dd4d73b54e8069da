"""Data-parallel training with PyTorch's own engine: torchrun starts one process per device, each joins the
process group (NCCL between GPUs, gloo between CPU processes) and DistributedDataParallel averages gradients.

Without torchrun every helper here is the single-process case: rank 0 of 1, barriers and sums do nothing.
`python -m stages.train` re-launches itself through torchrun when `train.distributed.nproc_per_node` > 1;
under torchrun (LOCAL_RANK and WORLD_SIZE set, also by a multi-node launch) it runs as one of the processes.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import run as torchrun
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.nn.parallel import DistributedDataParallel

from pipeline.errors import UserError

log = logging.getLogger(__name__)

SMALL_BATCH = 16  # below this many images per process, batch-norm statistics are noisy (Wu & He 2018, fig. 1)
MULTI_NODE_SETTINGS = ("PET_NNODES", "PET_RDZV_ENDPOINT", "PET_MASTER_ADDR")  # torchrun reads PET_<OPTION>
Picklable = TypeVar("Picklable")


class DistributedSetupError(UserError):
    """A distributed option that cannot work on this machine."""


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_arguments(nproc_per_node: int, module: str, args: list[str]) -> list[str]:
    """torchrun's arguments for `python -m module args`: `--standalone` (one node), or, when torchrun's own
    environment variables name a rendezvous (PET_NNODES, PET_RDZV_ENDPOINT or PET_MASTER_ADDR), none, so that
    the processes join those of the other nodes (docs/how-to/gpus.md)."""
    standalone = [] if any(os.environ.get(name) for name in MULTI_NODE_SETTINGS) else ["--standalone"]
    return [*standalone, f"--nproc-per-node={nproc_per_node}", "-m", module, *args]


def relaunch_under_torchrun(nproc_per_node: int, module: str) -> NoReturn:
    """Run torchrun in this process, starting `module` with the same arguments in `nproc_per_node` processes
    (it forwards SIGTERM and Ctrl-C to them, and fails as a whole when one of them fails). In this process, not
    exec'd, so that the launcher keeps the thread with which stages/lifecycle/signals.py watches DVC: when DVC exits,
    the launcher is signalled and stops the workers."""
    arguments = torchrun_arguments(nproc_per_node, module, sys.argv[1:])
    log.info("launching: python -m torch.distributed.run " + shlex.join(arguments))
    try:
        torchrun.main(arguments)
    except SignalException as signalled:  # the workers have stopped and said where: one line here, not a traceback
        raise KeyboardInterrupt(f"torchrun's workers were stopped by {signal.Signals(signalled.sigval).name}") from None
    sys.exit(0)


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join the processes torchrun started, for the duration of the block; yields this process's device
    (under torchrun on CUDA: GPU number LOCAL_RANK of its node)."""
    if not launched_by_torchrun():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """The one process that writes files, talks to MLflow and prints the epoch lines."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo reduces CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over all processes (all_reduce), on the tensor's own device."""
    if not dist.is_initialized():
        return tensor
    summed = tensor.to(_collective_device(), copy=True)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed.to(tensor.device)


def from_main(value: Picklable) -> Picklable:
    """Rank 0's `value` in every process (for decisions only rank 0 can make, such as whether to resume)."""
    if not dist.is_initialized():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0, device=_collective_device())
    return holder[0]


def copy_buffers_from_main(model: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics). DDP broadcasts them before each
    training forward, so after the last step each process holds statistics of its own last batch; validation
    must score the weights rank 0 saves."""
    if not dist.is_initialized():
        return
    for buffer in model.buffers():
        synced = buffer.to(_collective_device())
        dist.broadcast(synced, src=0)
        buffer.copy_(synced)


def use_sync_batchnorm(setting: bool | str, per_process_batch: int, device: torch.device) -> bool:
    """`train.distributed.sync_batchnorm`: auto = on for several CUDA processes with fewer than SMALL_BATCH
    images each (torch's SyncBatchNorm runs on GPUs only)."""
    several = world_size() > 1
    if setting == "auto":
        return several and device.type == "cuda" and per_process_batch < SMALL_BATCH
    if setting and several and device.type != "cuda":
        raise DistributedSetupError(f"train.distributed.sync_batchnorm: true needs CUDA devices (torch's "
                                    f"SyncBatchNorm runs on GPUs only), this training runs on {device.type}; "
                                    "set it to auto or false")
    return bool(setting) and several


def data_parallel(model: nn.Module, device: torch.device, sync_batchnorm: bool,
                  find_unused_parameters: bool) -> nn.Module:
    """`model` wrapped in DistributedDataParallel (unchanged in a single process); the wrapper shares its
    parameters, so the unwrapped model keeps serving state dicts, snapshots and checkpoints.
    `find_unused_parameters` is needed while part of the model gets no gradient (a frozen encoder)."""
    if not dist.is_initialized():
        return model
    if sync_batchnorm:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters)
