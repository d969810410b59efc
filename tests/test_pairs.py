"""Comparison pairs: ``build_pairs`` against a brute-force reference."""

import math

import pytest
import torch

from dele.pairs import build_pairs


def _tied_values(count, seed):
    """Return random values with many ties: integers 0..9 scaled to [0, 0.9]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 10, (count,), generator=generator).double() / 10


def _reference_candidates(values, threshold):
    """Return every pair ``i < j`` with ``|v_i - v_j| > threshold`` as ``{(j, i): better}``."""
    values = values.tolist()
    candidates = {}
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            if abs(values[i] - values[j]) > threshold:
                candidates[(j, i)] = float(values[i] > values[j])
    return candidates


def _as_dict(first, second, better):
    return {(f, s): b for f, s, b in zip(first.tolist(), second.tolist(), better.tolist())}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.0, 0.15])
def test_unlimited_equals_reference(seed, threshold):
    values = _tied_values(30, seed)

    first, second, better = build_pairs(values, threshold=threshold, max_compare_ratio=1000.0)

    pairs = _as_dict(first, second, better)
    assert len(pairs) == first.numel()
    assert pairs == _reference_candidates(values, threshold)


def test_ties_dropped():
    values = torch.tensor([0.5, 0.5, 0.5])
    first, second, better = build_pairs(values, max_compare_ratio=10.0)
    assert first.numel() == 0
    assert second.numel() == 0
    assert better.numel() == 0


def test_pair_order_and_better():
    values = torch.tensor([0.2, 0.9, 0.4])

    first, second, better = build_pairs(values, max_compare_ratio=10.0)

    # better = 1 when the second item of the pair has the larger value.
    assert _as_dict(first, second, better) == {(1, 0): 0.0, (2, 0): 0.0, (2, 1): 1.0}
    assert torch.equal(better, (values[second] > values[first]).float())
    assert better.dtype == values.dtype


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ratio", [0.5, 1.5, 4.0])
def test_random_limit(seed, ratio):
    values = _tied_values(40, seed)
    candidates = _reference_candidates(values, 0.0)
    limit = math.floor(ratio * 40)
    assert len(candidates) > limit

    first, second, better = build_pairs(values, max_compare_ratio=ratio, generator=torch.Generator().manual_seed(seed))

    pairs = _as_dict(first, second, better)
    assert first.numel() == limit
    assert len(pairs) == limit
    for pair, label in pairs.items():
        assert candidates.get(pair) == label, pair


def test_random_limit_fractional_count():
    values = torch.arange(7, dtype=torch.float64)
    first, _, _ = build_pairs(values, max_compare_ratio=0.9)
    assert first.numel() == 6


def test_limit_above_candidates_keeps_all():
    values = _tied_values(12, 3)
    candidates = _reference_candidates(values, 0.0)

    first, second, better = build_pairs(values, max_compare_ratio=len(candidates) / 12)

    assert _as_dict(first, second, better) == candidates


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diff_keeps_largest(seed):
    values = _tied_values(40, seed)
    candidates = _reference_candidates(values, 0.0)
    limit = math.floor(1.5 * 40)
    all_gaps = sorted((abs(values[f] - values[s]).item() for f, s in candidates), reverse=True)

    first, second, better = build_pairs(values, max_compare_ratio=1.5, criterion="diff")

    pairs = _as_dict(first, second, better)
    assert len(pairs) == limit
    for pair, label in pairs.items():
        assert candidates.get(pair) == label, pair
    kept_gaps = sorted((abs(values[f] - values[s]).item() for f, s in pairs), reverse=True)
    assert kept_gaps == pytest.approx(all_gaps[:limit])
    smallest_kept = kept_gaps[-1]
    largest_dropped = max(abs(values[f] - values[s]).item() for f, s in candidates if (f, s) not in pairs)
    assert largest_dropped <= smallest_kept


def test_diff_is_deterministic():
    values = torch.rand(25, generator=torch.Generator().manual_seed(4))
    first_a, second_a, _ = build_pairs(values, max_compare_ratio=1.0, criterion="diff")
    first_b, second_b, _ = build_pairs(values, max_compare_ratio=1.0, criterion="diff")
    assert torch.equal(first_a, first_b)
    assert torch.equal(second_a, second_b)


def test_compare_split_even():
    values = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.4, 0.5, 0.7, 0.2])

    first, second, better = build_pairs(values, compare_split=True)

    # Item t is paired with item t + 4. The pair (2, 6) compares 0.5 with 0.7.
    assert first.tolist() == [4, 5, 6, 7]
    assert second.tolist() == [0, 1, 2, 3]
    assert better.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_compare_split_odd_and_ties():
    values = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.1, 0.2, 0.5, 0.6, 0.8])

    first, second, better = build_pairs(values, compare_split=True)

    # With n // 2 = 4 the pairs are (0, 4), (1, 5), (2, 6) and (3, 7), so item 8 is
    # unpaired. The tied pairs (0, 4) and (2, 6) are dropped.
    assert first.tolist() == [5, 7]
    assert second.tolist() == [1, 3]
    assert better.tolist() == [1.0, 0.0]


def test_compare_split_threshold():
    values = torch.tensor([0.0, 0.0, 0.05, 0.5])
    first, second, _ = build_pairs(values, threshold=0.1, compare_split=True)
    assert first.tolist() == [3]
    assert second.tolist() == [1]


def test_unknown_criterion_raises():
    with pytest.raises(ValueError, match="'largest'") as caught:
        build_pairs(torch.rand(5), criterion="largest")
    assert "random" in str(caught.value)
    assert "diff" in str(caught.value)


def test_seeded_generator_reproducible():
    values = torch.rand(50, generator=torch.Generator().manual_seed(0))

    runs = [build_pairs(values, max_compare_ratio=2.0, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    other = build_pairs(values, max_compare_ratio=2.0, generator=torch.Generator().manual_seed(8))

    for tensor_a, tensor_b in zip(runs[0], runs[1]):
        assert torch.equal(tensor_a, tensor_b)
    assert _as_dict(*runs[0]) != _as_dict(*other)


def test_empty_and_single_batch():
    for count in (0, 1):
        first, second, better = build_pairs(torch.rand(count))
        assert first.numel() == 0
        assert second.numel() == 0
        assert better.numel() == 0
