import math

import pytest
import torch

from pipeline.training.optim import build_optimizer, build_scheduler


def optimizer(lr=1.0, extra_group_lr=None):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}]
    if extra_group_lr is not None:
        groups.append({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": extra_group_lr})
    return torch.optim.SGD(groups, lr=lr)


def lr_sequence(scheduler, metrics):
    """The lr of each epoch with one batch per epoch, stepped as the training loop does."""
    lrs = [scheduler.lr]
    for metric in metrics:
        scheduler.optimizer.step()
        scheduler.after_batch()
        scheduler.after_epoch(metric)
        lrs.append(scheduler.lr)
    return lrs


def test_warmup_then_poly():
    scheduler = build_scheduler("poly", optimizer(), epochs=5, warmup_epochs=2, poly_power=0.9)
    assert lr_sequence(scheduler, [None] * 4) == pytest.approx([1 / 3, 2 / 3, 1.0, (2 / 3) ** 0.9, (1 / 3) ** 0.9])


def test_cosine_scales_every_param_group():
    opt = optimizer(lr=1.0, extra_group_lr=0.1)
    scheduler = build_scheduler("cosine", opt, epochs=4)
    expected = [0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert lr_sequence(scheduler, [0.1] * 3) == pytest.approx(expected)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * expected[-1])


def test_none_keeps_the_lr_after_warmup():
    scheduler = build_scheduler("none", optimizer(), epochs=4, warmup_epochs=1)
    assert lr_sequence(scheduler, [None] * 3) == pytest.approx([0.5, 1.0, 1.0, 1.0])


def test_plateau_matches_torch_reduce_on_plateau():
    metrics = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.65, 0.8]
    ours = lr_sequence(build_scheduler("plateau", optimizer(), epochs=10, plateau_patience=1, plateau_factor=0.5),
                       metrics)
    opt = optimizer()
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=1, factor=0.5, threshold=0)
    theirs = [opt.param_groups[0]["lr"]]
    for metric in metrics:
        reference.step(metric)
        theirs.append(opt.param_groups[0]["lr"])
    assert ours == pytest.approx(theirs)
    assert ours[-1] == 0.25


def test_poly_steps_per_iteration_and_resumes_exactly():
    scheduler = build_scheduler("poly", optimizer(), epochs=2, steps_per_epoch=3, warmup_epochs=1, poly_power=1.0)
    lrs = [scheduler.lr]
    for _ in range(3):
        scheduler.optimizer.step()
        scheduler.after_batch()
        lrs.append(scheduler.lr)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0])  # warmup spans the first epoch's iterations
    resumed = build_scheduler("poly", optimizer(), epochs=2, steps_per_epoch=3, warmup_epochs=1, poly_power=1.0)
    resumed.optimizer.load_state_dict(scheduler.optimizer.state_dict())  # as a resumed training does
    resumed.load_state_dict(scheduler.state_dict())
    for schedule in (scheduler, resumed):
        schedule.optimizer.step()
        schedule.after_batch()
    assert resumed.lr == pytest.approx(scheduler.lr) == pytest.approx(2 / 3)


def run_epochs(scheduler, steps_per_epoch, metrics):
    for metric in metrics:
        for _ in range(steps_per_epoch):
            scheduler.optimizer.step()
            scheduler.after_batch()
        scheduler.after_epoch(metric)


@pytest.mark.parametrize("name, metrics", [("poly", [None] * 3), ("cosine", [None] * 3),
                                           ("plateau", [0.5, 0.4, 0.4])])
def test_a_schedule_resumed_with_other_steps_per_epoch_continues_after_as_many_epochs(name, metrics):
    """A training resumed under another number of processes has another number of steps per epoch."""
    options = {"epochs": 6, "warmup_epochs": 2, "plateau_patience": 1, "poly_power": 0.9}
    saved = build_scheduler(name, optimizer(), steps_per_epoch=8, **options)  # 2 processes...
    run_epochs(saved, 8, metrics)
    uninterrupted = build_scheduler(name, optimizer(), steps_per_epoch=4, **options)  # ...or 4 from the start
    run_epochs(uninterrupted, 4, metrics)
    resumed = build_scheduler(name, optimizer(), steps_per_epoch=4, **options)
    resumed.optimizer.load_state_dict(saved.optimizer.state_dict())
    resumed.load_state_dict(saved.state_dict())
    assert resumed.lr == pytest.approx(uninterrupted.lr)
    if name == "plateau":
        assert resumed.lr == pytest.approx(0.5)  # the reduction after two epochs without improvement is kept
    for schedule in (resumed, uninterrupted):
        run_epochs(schedule, 4, [0.3, 0.3])
    assert resumed.lr == pytest.approx(uninterrupted.lr)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "step"}, "unknown scheduler 'step'; choose one of plateau, cosine, poly, none"),
    ({"name": "cosine", "warmup_epochs": 3}, "warmup_epochs: expected 0 <= warmup_epochs < epochs"),
])
def test_scheduler_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_scheduler(optimizer=optimizer(), epochs=3, **kwargs)


def test_optimizers_by_name():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer("adam", params, lr=1e-3), torch.optim.Adam)
    assert isinstance(build_optimizer("adamw", params, lr=1e-3, weight_decay=0.01), torch.optim.AdamW)
    sgd = build_optimizer("sgd", params, lr=0.1, momentum=0.8)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; choose one of adam, adamw, sgd"):
        build_optimizer("lion", params, lr=1e-3)
    with pytest.raises(ValueError, match="lr: expected a positive"):
        build_optimizer("adam", params, lr=0.0)


def test_frozen_parameters_are_left_alone_even_with_weight_decay():
    frozen, trained = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    frozen.requires_grad_(False)
    opt = build_optimizer("adamw", [*frozen.parameters(), *trained.parameters()], lr=0.1, weight_decay=0.5)
    before = frozen.weight.clone()
    trained(frozen(torch.ones(1, 2))).sum().backward()
    opt.step()
    assert torch.equal(frozen.weight, before)
