"""Optimizers by name, and learning-rate schedules from torch.optim.lr_scheduler, stepped per iteration."""
from __future__ import annotations

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
        total, warmup = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
        lr_scheduler = torch.optim.lr_scheduler
        decay = {"cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup),
                 "poly": lambda: lr_scheduler.PolynomialLR(optimizer, total_iters=total - warmup, power=poly_power),
                 }.get(name, lambda: lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))()
        if warmup:
            ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
            decay = lr_scheduler.SequentialLR(optimizer, [ramp, decay], milestones=[warmup])
        self.per_iteration = decay
        self.plateau = (lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=plateau_factor,
                                                       patience=plateau_patience, threshold=0)
                        if name == "plateau" else None)

    def after_batch(self) -> None:
        self.per_iteration.step()

    def after_epoch(self, val_metric: float) -> None:
        """Call once after each epoch with the validation metric (higher is better)."""
        if self.plateau is not None:
            self.plateau.step(val_metric)

    def state_dict(self) -> dict:
        """What a resumed run needs to continue the schedule exactly."""
        return {"per_iteration": self.per_iteration.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.per_iteration.load_state_dict(state["per_iteration"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int = 1,
                    warmup_epochs: int = 0, **options) -> Schedule:
    """Schedule `name` (one of SCHEDULERS); options: poly_power, plateau_patience, plateau_factor."""
    return Schedule(optimizer, name, epochs, steps_per_epoch, warmup_epochs, **options)
