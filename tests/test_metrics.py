"""Kendall's tau and top-K metrics on hand-made rankings."""

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from dele.metrics import TOPK_RATIOS, TopKResult, format_topk, kendall_tau, topk_metrics


@pytest.mark.parametrize(
    "true, predicted",
    [
        ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]),
        ([1, 1, 2, 2, 3], [1, 2, 2, 3, 3]),
        ([0.5, 0.5, 0.5, 0.9], [0.1, 0.3, 0.2, 0.1]),
        ([3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]),
    ],
)
def test_kendall_tau_matches_scipy(true, predicted):
    expected = kendalltau(true, predicted, variant="b").statistic
    assert kendall_tau(true, predicted) == pytest.approx(expected)


def test_kendall_tau_ties_hand_value():
    # Pair (0,1) is tied in true, pairs (0,2) and (1,2) are concordant, and predicted has
    # no ties, so tau-b = (2 - 0) / sqrt((3 - 1) * 3).
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


def test_kendall_tau_perfect_and_reversed():
    values = np.linspace(0, 1, 20)
    assert kendall_tau(values, values * 3 + 1) == pytest.approx(1.0)
    assert kendall_tau(values, -values) == pytest.approx(-1.0)


def test_kendall_tau_degenerate_is_nan():
    assert math.isnan(kendall_tau([0.5], [0.1]))
    assert math.isnan(kendall_tau([], []))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


# True ranking: item i has the i-th highest accuracy. Predicted order: 2, 0, 5, 1, 3, 4, ...
TRUE = np.linspace(0.9, 0.0, 10)
PREDICTED = np.empty(10)
PREDICTED[[2, 0, 5, 1, 3, 4, 6, 7, 8, 9]] = np.linspace(1.0, 0.1, 10)


def test_topk_hand_case():
    results = topk_metrics(TRUE, PREDICTED, ratios=(0.1, 0.3, 0.5, 1.0))

    assert [r.k for r in results] == [1, 3, 5, 10]
    assert [r.overlap for r in results] == [0, 2, 4, 10]
    assert [r.precision for r in results] == pytest.approx([0.0, 2 / 3, 0.8, 1.0])
    assert math.isnan(results[0].tau)
    # Top 3: items 0 and 2 overlap, and the prediction ranks 2 above 0.
    assert results[1].tau == pytest.approx(-1.0)
    # Top 5: items 0..3 overlap, predicted order 2, 0, 1, 3 has 4 concordant, 2 discordant pairs.
    assert results[2].tau == pytest.approx(1 / 3)
    assert results[3].tau == pytest.approx(kendall_tau(TRUE, PREDICTED))


def test_topk_result_fields():
    result = topk_metrics(TRUE, PREDICTED, ratios=(0.5,))[0]
    assert isinstance(result, TopKResult)
    assert result.ratio == 0.5
    assert result == (5, 0.5, 4, 0.8, result.tau)


def test_topk_default_ratios():
    results = topk_metrics(TRUE, PREDICTED)
    assert [r.ratio for r in results] == list(TOPK_RATIOS)
    assert [r.k for r in results] == [1, 1, 1, 1, 1, 5, 10]


def test_topk_small_set():
    results = topk_metrics([0.1, 0.5, 0.3, 0.9, 0.7], [0.2, 0.4, 0.3, 0.8, 0.9], ratios=(0.001,))

    assert len(results) == 1
    assert results[0].k == 1
    assert results[0].overlap == 0
    assert results[0].precision == 0.0
    assert math.isnan(results[0].tau)


def test_topk_single_overlap_tau_nan():
    # With k = 2 the true top is {3, 4} and the predicted top {4, 0}, so only item 4 overlaps.
    results = topk_metrics([0.1, 0.2, 0.3, 0.8, 0.9], [0.8, 0.1, 0.2, 0.3, 0.9], ratios=(0.4,))

    assert results[0].k == 2
    assert results[0].overlap == 1
    assert results[0].precision == 0.5
    assert math.isnan(results[0].tau)


def test_topk_perfect_prediction():
    values = np.arange(100.0)
    for result in topk_metrics(values, values):
        assert result.precision == 1.0
        assert result.overlap == result.k


def test_topk_ties_stable():
    # All predictions tie: the stable sort keeps file order, so the predicted top 2 is {0, 1}.
    results = topk_metrics([0.1, 0.2, 0.9, 0.8], [0.5, 0.5, 0.5, 0.5], ratios=(0.5,))
    assert results[0].overlap == 0


def test_topk_empty_raises():
    with pytest.raises(ValueError, match="at least one item"):
        topk_metrics([], [])


def test_format_topk():
    results = topk_metrics(TRUE, PREDICTED, ratios=(0.3, 1.0))
    assert format_topk(results) == "P@3=0.667 P@10=1.000"
