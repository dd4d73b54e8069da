import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.training.losses import LOSSES, build_loss


def hard_logits(classes_map, num_classes):
    """Logits that put (practically) all probability on the given class per pixel."""
    return F.one_hot(torch.tensor(classes_map), num_classes).permute(2, 0, 1).unsqueeze(0).float() * 40 - 20


def test_dice_on_a_hand_checked_example_ignores_255():
    # target 0 1 / 1 255, prediction 0 0 / 1 1: per class 2*1 / (2 + 1) = 2/3 (the ignored pixel counts nowhere)
    logits = hard_logits([[0, 0], [1, 1]], 2)
    target = torch.tensor([[[0, 1], [1, 255]]])
    assert build_loss("dice", 2)(logits, target).item() == pytest.approx(1 / 3, abs=1e-6)


def test_dice_averages_only_classes_present_in_the_target():
    # p = 0.5 everywhere, all pixels class 0: Dice_0 = 2 * 0.5n / (0.5n + n) = 2/3; class 1 is left out
    logits = torch.zeros(1, 2, 3, 3)
    target = torch.zeros(1, 3, 3, dtype=torch.long)
    assert build_loss("dice", 2)(logits, target).item() == pytest.approx(1 / 3, abs=1e-6)


def test_dice_class_weights_weight_the_class_mean():
    logits = hard_logits([[0, 0], [2, 2]], 3)
    target = torch.tensor([[[0, 1], [2, 2]]])  # Dice: class 0 = 2/3, class 1 = 0, class 2 = 1
    loss = build_loss("dice", 3, class_weights=[1.0, 0.0, 3.0])(logits, target)
    assert loss.item() == pytest.approx(1 - (2 / 3 + 3) / 4, abs=1e-6)
    assert build_loss("dice", 3)(logits, target).item() == pytest.approx(1 - (2 / 3 + 1) / 3, abs=1e-6)


def test_ce_is_torch_weighted_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6))
    target[0, 0] = 255
    weights = [0.5, 1.0, 2.0, 1.5]
    ours = build_loss("ce", 4, class_weights=weights)(logits, target)
    theirs = F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=255)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_focal_down_weights_by_one_minus_p_to_the_gamma():
    # pixel 1: p_true = 0.5, loss 0.5**2 * ln 2; pixel 2 is ignored whatever its logits
    logits = torch.tensor([[0.0, 0.0], [100.0, -100.0]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 255]]])
    assert build_loss("focal", 2)(logits, target).item() == pytest.approx(0.25 * math.log(2), rel=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_all_ignored_gives_zero_not_nan(name):
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = build_loss(name, 3)(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_focal_gradient_is_finite_on_confident_pixels():
    logits = torch.tensor([[50.0, -50.0]]).reshape(1, 2, 1, 1).requires_grad_()
    build_loss("focal", 2, focal_gamma=0.5)(logits, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all()


def test_ignored_pixels_do_not_change_any_loss():
    torch.manual_seed(0)
    logits, target = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    target[0, 0] = 255
    changed = logits.clone()
    changed[0, :, 0] = torch.randn(3, 4) * 10
    for name in LOSSES:
        loss = build_loss(name, 3)
        assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), rel=1e-6)


def test_ce_plus_dice_is_the_sum():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    total = build_loss("ce+dice", 3)(logits, target)
    parts = build_loss("ce", 3)(logits, target) + build_loss("dice", 3)(logits, target)
    assert total.item() == pytest.approx(parts.item(), rel=1e-6)


def test_bf16_logits_give_a_float32_loss():
    logits = torch.randn(1, 3, 4, 4).bfloat16()
    target = torch.randint(0, 3, (1, 4, 4))
    assert all(build_loss(name, 3)(logits, target).dtype == torch.float32 for name in LOSSES)


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown loss 'lovasz'; choose one of ce, dice, focal, ce\\+dice"):
        build_loss("lovasz", 3)


def test_class_weights_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="class_weights: got 2 values for 3 classes"):
        build_loss("ce", 3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weights: expected non-negative"):
        build_loss("dice", 2, class_weights=[1.0, -1.0])
