"""Pair losses and the regression loss, checked against hand-computed values."""

import math

import pytest
import torch

from dele.losses import margin_loss, pair_loss, regression_loss

# Three pairs: the second item is better in pairs 0 and 2.
FIRST = torch.tensor([0.0, 0.5, 0.3])
SECOND = torch.tensor([0.3, 0.2, 0.35])
BETTER = torch.tensor([1.0, 0.0, 1.0])


def test_margin_linear_hand_values():
    # Hinge terms max(0, 0.1 - y (s2 - s1)): 0.1 - 0.3 -> 0, 0.1 - 0.3 -> 0, 0.1 - 0.05 -> 0.05.
    loss = pair_loss(FIRST, SECOND, BETTER, "margin_linear", margin=0.1)
    assert loss.item() == pytest.approx(0.05 / 3)


def test_margin_linear_wrong_order():
    # Pair 1 labelled the other way round: 0.1 + 0.3 = 0.4.
    better = torch.tensor([1.0, 1.0, 1.0])
    loss = pair_loss(FIRST, SECOND, better, "margin_linear", margin=0.1)
    assert loss.item() == pytest.approx((0.0 + 0.4 + 0.05) / 3)


def test_margin_l2_small_margin():
    better = torch.tensor([1.0, 1.0, 1.0])
    # Hinge terms with margin 0.5 are 0.2, 0.8 and 0.45, squared and divided by max(1, 0.5) = 1.
    loss = pair_loss(FIRST, SECOND, better, "margin_l2", margin=0.5)
    assert loss.item() == pytest.approx((0.2**2 + 0.8**2 + 0.45**2) / 3)


def test_margin_l2_large_margin():
    better = torch.tensor([1.0, 1.0, 1.0])
    # Hinge terms with margin 2 are 1.7, 2.3 and 1.95, squared and divided by max(1, 2) = 2.
    loss = pair_loss(FIRST, SECOND, better, "margin_l2", margin=2.0)
    assert loss.item() == pytest.approx((1.7**2 + 2.3**2 + 1.95**2) / 3 / 2)


def test_margin_l2_flag_matches_type():
    flagged = pair_loss(FIRST, SECOND, BETTER, "margin_linear", margin=1.5, margin_l2=True)
    named = pair_loss(FIRST, SECOND, BETTER, "margin_l2", margin=1.5)
    assert flagged.item() == pytest.approx(named.item())


def test_margin_per_pair_tensor():
    margins = torch.tensor([0.5, 0.1, 0.0])
    # Hinge terms: 0.5 - 0.3 = 0.2, 0.1 - 0.3 -> 0, 0 - 0.05 -> 0.
    loss = margin_loss(FIRST, SECOND, BETTER, margins)
    assert loss.item() == pytest.approx(0.2 / 3)


def test_binary_cross_entropy_formula():
    difference = SECOND - FIRST
    probability = torch.sigmoid(difference)
    expected = -(BETTER * torch.log(probability) + (1 - BETTER) * torch.log(1 - probability)).mean()

    loss = pair_loss(FIRST, SECOND, BETTER, "binary_cross_entropy")

    assert loss.item() == pytest.approx(expected.item())


def test_binary_cross_entropy_hand_value():
    loss = pair_loss(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]), "binary_cross_entropy")
    assert loss.item() == pytest.approx(math.log(2.0))


def test_binary_cross_entropy_ignores_margin():
    low = pair_loss(FIRST, SECOND, BETTER, "binary_cross_entropy", margin=0.01)
    high = pair_loss(FIRST, SECOND, BETTER, "binary_cross_entropy", margin=5.0)
    assert low.item() == high.item()


def test_bce_large_scores_finite():
    loss = pair_loss(torch.tensor([-200.0]), torch.tensor([200.0]), torch.tensor([0.0]), "binary_cross_entropy")
    assert loss.item() == pytest.approx(400.0)


def test_regression_loss_hand_value():
    scores = torch.tensor([0.0, math.log(3.0)])  # sigmoid: 0.5 and 0.75
    labels = torch.tensor([1.0, 0.25])
    assert regression_loss(scores, labels).item() == pytest.approx((0.25 + 0.25) / 2)


def test_losses_differentiable():
    first = FIRST.clone().requires_grad_()
    second = SECOND.clone().requires_grad_()

    pair_loss(first, second, torch.tensor([1.0, 1.0, 1.0]), "margin_linear", margin=0.1).backward()

    # Pairs 1 and 2 are inside the margin, each contributing (0.1 - (s2 - s1)) / 3.
    assert first.grad.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3])
    assert second.grad.tolist() == pytest.approx([0.0, -1 / 3, -1 / 3])


def test_unknown_loss_type_raises():
    with pytest.raises(ValueError, match="'hinge'") as caught:
        pair_loss(FIRST, SECOND, BETTER, "hinge")
    assert "binary_cross_entropy" in str(caught.value)
