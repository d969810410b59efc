"""Pairwise ranking losses and the regression loss of the pointwise comparators.

In every pair loss, ``first`` and ``second`` are raw scores of the two architectures of
each pair and ``better[p] = 1`` means the second architecture is the better one.
"""

import torch
import torch.nn.functional as F

PAIR_LOSS_TYPES = ("margin_linear", "margin_l2", "binary_cross_entropy")


def margin_loss(first, second, better, margin, squared=False):
    """Hinge loss ``mean(max(0, m - y (s2 - s1)))`` with ``y = 2 better - 1``.

    With ``squared`` (aw_nas ``margin_l2``) each term is squared and divided by
    ``max(1, m)``. ``margin`` is a float or a per-pair tensor.
    """
    sign = 2.0 * better - 1.0
    hinge = F.relu(margin - sign * (second - first))
    if squared:
        scale = torch.clamp(torch.as_tensor(margin, dtype=hinge.dtype, device=hinge.device), min=1.0)
        hinge = hinge.pow(2) / scale
    return hinge.mean()


def pair_loss(first, second, better, loss_type="margin_linear", margin=0.01, margin_l2=False):
    """Pair loss selected by ``compare_loss_type``.

    ``binary_cross_entropy`` is ``BCE(sigmoid(s2 - s1), better)``, computed from logits.
    ``margin_l2`` is the squared hinge, the same as ``margin_linear`` with ``margin_l2=True``.
    """
    if loss_type == "margin_linear":
        return margin_loss(first, second, better, margin, squared=margin_l2)
    if loss_type == "margin_l2":
        return margin_loss(first, second, better, margin, squared=True)
    if loss_type == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(second - first, better)
    raise ValueError(f"compare_loss_type must be one of {list(PAIR_LOSS_TYPES)}, got {loss_type!r}")


def regression_loss(scores, labels):
    """MSE between ``sigmoid(scores)`` and labels, which must lie in [0, 1]."""
    return F.mse_loss(torch.sigmoid(scores), labels)
