"""Optimizers and per-epoch learning-rate schedules behind one call: `scheduler.step(val_miou)` after each epoch."""
from __future__ import annotations

import math
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
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


class EpochScheduler:
    """Sets the learning rate of every param group once per epoch: linear warmup, then the schedule.

    lr(epoch) = base_lr * factor(epoch). Warmup epochs e < W get (e + 1) / (W + 1); after that, with
    t = (e - W) / (epochs - W) in [0, 1): cosine 0.5 * (1 + cos(pi t)), poly (1 - t) ** poly_power,
    none 1, plateau the current plateau scale (multiplied by plateau_factor whenever the validation
    metric has not improved for more than plateau_patience epochs: ReduceLROnPlateau with threshold 0).
    The lr for epoch 0 is set at construction; step() after epoch e sets it for epoch e + 1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, name: str, epochs: int, warmup_epochs: int = 0,
                 poly_power: float = 0.9, plateau_patience: int = 2, plateau_factor: float = 0.5):
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler: unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs: expected 0 <= warmup_epochs < epochs ({epochs}), got {warmup_epochs}")
        if name == "plateau" and not 0 < plateau_factor < 1:
            raise ValueError(f"plateau_factor: expected a value in (0, 1), got {plateau_factor}")
        self.optimizer, self.name, self.epochs, self.warmup_epochs = optimizer, name, epochs, warmup_epochs
        self.poly_power, self.plateau_patience, self.plateau_factor = poly_power, plateau_patience, plateau_factor
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.epoch, self.plateau_scale, self.best, self.bad_epochs = 0, 1.0, -math.inf, 0
        self._apply()

    def step(self, val_metric: float | None = None) -> None:
        """Call once after each epoch with the validation metric (higher is better; plateau needs it)."""
        if self.name == "plateau":
            if val_metric is None:
                raise ValueError("scheduler: plateau needs the validation metric: call step(val_miou)")
            self._track(val_metric)
        self.epoch += 1
        self._apply()

    def state_dict(self) -> dict:
        """What a resumed run needs to continue the schedule exactly."""
        return {"epoch": self.epoch, "plateau_scale": self.plateau_scale, "best": self.best,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.plateau_scale = state["epoch"], state["plateau_scale"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
        self._apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def factor(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        t = min(1.0, (epoch - self.warmup_epochs) / (self.epochs - self.warmup_epochs))
        if self.name == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        if self.name == "poly":
            return (1 - t) ** self.poly_power
        return self.plateau_scale  # stays 1.0 for "none"

    def _track(self, val_metric: float) -> None:
        if val_metric > self.best:
            self.best, self.bad_epochs = val_metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.plateau_patience:
                self.plateau_scale *= self.plateau_factor
                self.bad_epochs = 0

    def _apply(self) -> None:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * self.factor(self.epoch)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int = 0,
                    **options) -> EpochScheduler:
    """Schedule `name` (one of SCHEDULERS); options: poly_power, plateau_patience, plateau_factor."""
    return EpochScheduler(optimizer, name, epochs, warmup_epochs, **options)
