"""Comparison pairs built from one batch of target values (aw_nas ``compare_data``)."""

import torch

PAIR_CRITERIA = ("random", "diff")
_TRIU_CACHE = {}


def _upper_pairs(count, device):
    key = (count, str(device))
    if key not in _TRIU_CACHE:
        _TRIU_CACHE[key] = torch.triu_indices(count, count, offset=1, device=device)
    return _TRIU_CACHE[key]


def build_pairs(values, threshold=0.0, max_compare_ratio=4.0, criterion="random", compare_split=False, generator=None):
    """Select comparison pairs among the items of a batch.

    Candidates are the pairs ``i < j`` (or, with ``compare_split``, item ``t`` with item
    ``t + n // 2``) whose values differ by more than ``threshold``, so ties are dropped.
    When more than ``floor(max_compare_ratio * n)`` remain, that many are kept: uniformly
    at random (``random``) or those with the largest difference (``diff``).

    Returns:
        ``(first, second, better)``: index tensors into the batch and a float tensor,
        ``better[p] = 1`` when item ``second[p]`` has the larger value.
    """
    if criterion not in PAIR_CRITERIA:
        raise ValueError(f"choose_pair_criterion must be one of {list(PAIR_CRITERIA)}, got {criterion!r}")
    count = values.shape[0]
    if compare_split:
        half = count // 2
        rows = torch.arange(half, device=values.device)
        cols = rows + half
    else:
        rows, cols = _upper_pairs(count, values.device)

    diff = values[rows] - values[cols]  # v_i - v_j
    keep = diff.abs() > threshold
    rows, cols, diff = rows[keep], cols[keep], diff[keep]

    limit = int(max_compare_ratio * count)
    if rows.numel() > limit:
        if criterion == "random":
            # Draw on the generator's device (the CPU generator of a run on CUDA, say).
            device = generator.device if generator is not None else values.device
            chosen = torch.randperm(rows.numel(), generator=generator, device=device)[:limit].to(values.device)
        else:
            chosen = torch.topk(diff.abs(), limit).indices
        rows, cols, diff = rows[chosen], cols[chosen], diff[chosen]

    # The original puts item j first and item i second, so better = v_i > v_j.
    return cols, rows, (diff > 0).to(values.dtype)
