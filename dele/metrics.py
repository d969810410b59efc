"""Ranking metrics: Kendall's tau, precision at top-K and Kendall's tau within the top-K."""

import math
from typing import NamedTuple

import numpy as np
from scipy.stats import kendalltau

TOPK_RATIOS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class TopKResult(NamedTuple):
    """Top-K agreement of a ranking: ``k``, its ratio of N, the size of the overlap of the
    true and predicted top-k sets, ``precision = overlap / k`` and Kendall's tau on the
    overlapping items (NaN when fewer than 2 overlap)."""

    k: int
    ratio: float
    overlap: int
    precision: float
    tau: float


def kendall_tau(true, predicted):
    """Kendall's tau-b (scipy); NaN when either input is constant or has fewer than 2 items."""
    true, predicted = np.asarray(true, dtype=float), np.asarray(predicted, dtype=float)
    if true.size < 2:
        return math.nan
    return float(kendalltau(true, predicted).statistic)


def topk_metrics(true, predicted, ratios=TOPK_RATIOS):
    """Precision at top-K and Kendall's tau among the overlap, for each ratio of N.

    ``k = max(1, floor(N * ratio))``, so small validation sets get k = 1 instead of the
    division by zero of the original ``test_xk``. Ties are broken by a stable sort.
    """
    true, predicted = np.asarray(true, dtype=float), np.asarray(predicted, dtype=float)
    count = true.size
    if count == 0:
        raise ValueError("topk_metrics needs at least one item")
    true_order = np.argsort(-true, kind="stable")
    predicted_order = np.argsort(-predicted, kind="stable")

    results = []
    for ratio in ratios:
        k = min(count, max(1, int(count * ratio)))
        overlap = np.intersect1d(true_order[:k], predicted_order[:k])
        tau = kendall_tau(true[overlap], predicted[overlap]) if overlap.size >= 2 else math.nan
        results.append(TopKResult(k, ratio, int(overlap.size), overlap.size / k, tau))
    return results


def format_topk(results):
    """Return ``"P@k=precision"`` pairs for a log line."""
    return " ".join(f"P@{r.k}={r.precision:.3f}" for r in results)
