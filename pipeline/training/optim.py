"""Optimizers by name, and learning-rate schedules from torch.optim.lr_scheduler, stepped per iteration."""
from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch

from pipeline.config import OPTIMIZERS, SCHEDULERS


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """Optimizer `name` over `params`; `momentum` is used by sgd only.

    Pass all parameters, frozen ones included: they get no gradient while frozen, so they are left alone,
    and they train once unfrozen without rebuilding the optimizer.
    """
    if lr <= 0:
        raise ValueError(f"lr: expected a positive learning rate, got {lr}")
    # fused: one kernel per step for all parameters (on a CPU, half the time of the default per-tensor loop)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True)
    raise ValueError(f"optimizer: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


class Schedule:
    """torch.optim.lr_scheduler schedules behind two calls the loop makes: `after_batch()` and
    `after_epoch(val_miou)`.

    Warmup is linear over the first `warmup_epochs` worth of iterations (LinearLR), then cosine
    (CosineAnnealingLR) or poly (PolynomialLR) decay per iteration to 0 at the last iteration, or a
    constant lr (none). `plateau` warms up the same way and then multiplies the lr by
    `plateau_factor` once val mIoU has not improved for more than `plateau_patience` epochs
    (ReduceLROnPlateau, stepped per epoch).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, name: str, epochs: int, steps_per_epoch: int,
                 warmup_epochs: int = 0, poly_power: float = 0.9, plateau_patience: int = 2,
                 plateau_factor: float = 0.5):
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler: unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs: expected 0 <= warmup_epochs < epochs ({epochs}), got {warmup_epochs}")
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.build_per_iteration = lambda: self.per_iteration_schedule(name, epochs, warmup_epochs, poly_power)
        self.per_iteration = self.build_per_iteration()
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=plateau_factor,
                                                                   patience=plateau_patience, threshold=0)
                        if name == "plateau" else None)

    def per_iteration_schedule(self, name: str, epochs: int, warmup_epochs: int, poly_power: float):
        optimizer, lr_scheduler = self.optimizer, torch.optim.lr_scheduler
        total, warmup = epochs * self.steps_per_epoch, warmup_epochs * self.steps_per_epoch
        decay = {"cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup),
                 "poly": lambda: lr_scheduler.PolynomialLR(optimizer, total_iters=total - warmup, power=poly_power),
                 }.get(name, lambda: lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))()
        if not warmup:
            return decay
        ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
        return lr_scheduler.SequentialLR(optimizer, [ramp, decay], milestones=[warmup])

    def after_batch(self) -> None:
        self.per_iteration.step()

    def after_epoch(self, val_metric: float) -> None:
        """Call once after each epoch with the validation metric (higher is better)."""
        if self.plateau is not None:
            self.plateau.step(val_metric)

    def state_dict(self) -> dict:
        """What a resumed run needs to continue the schedule exactly."""
        return {"per_iteration": self.per_iteration.state_dict(), "steps_per_epoch": self.steps_per_epoch,
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Continue a saved schedule (after the optimizer's state is loaded). Saved with another number of steps
        per epoch (a training resumed under another number of processes), it continues after as many epochs,
        keeping the reductions `plateau` made."""
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
        saved_steps = state.get("steps_per_epoch", self.steps_per_epoch)
        if saved_steps == self.steps_per_epoch:
            self.per_iteration.load_state_dict(state["per_iteration"])
            return
        epochs_done = state["per_iteration"]["last_epoch"] // saved_steps
        saved = [group["lr"] for group in self.optimizer.param_groups]
        scheduled_then = self.replay(epochs_done * saved_steps)
        scheduled_now = self.replay(epochs_done * self.steps_per_epoch)
        for group, lr, then, now in zip(self.optimizer.param_groups, saved, scheduled_then, scheduled_now):
            group["lr"] = now * lr / then if then else now

    def replay(self, iterations: int) -> list[float]:
        """Restart the per-iteration schedule and step it `iterations` times; returns the learning rates."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.per_iteration = self.build_per_iteration()
        with warnings.catch_warnings():  # stepping without optimizer steps is the point here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(iterations):
                self.per_iteration.step()
        return [group["lr"] for group in self.optimizer.param_groups]

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int = 1,
                    warmup_epochs: int = 0, **options) -> Schedule:
    """Schedule `name` (one of SCHEDULERS); options: poly_power, plateau_patience, plateau_factor."""
    return Schedule(optimizer, name, epochs, steps_per_epoch, warmup_epochs, **options)
