"""The NAS-Bench-301 space, its NASLib conversion, the cell encoders and short real runs."""

import itertools
import json
import pickle

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO_ROOT, data_file
from dele import convert
from dele.data import Record, load_records, save_records
from dele.embedders import build_embedder
from dele.embedders.cell_gates import CellSSFlowEmbedder
from dele.predictors import DynamicEnsemblePointwiseComparator, PointwiseComparator
from dele.scripts import dynamic_ensemble_main, train_predictor_main
from dele.spaces import get_search_space
from dele.spaces.nb301 import (
    NASLIB_OPS,
    OPS,
    arch_to_naslib,
    genotype_to_arch,
    naslib_to_arch,
)

NASLIB_TYPES = {
    "epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacob_cov", "l2_norm",
    "relu_logdet", "params", "plain", "snip", "synflow",
}
# A DARTS genotype (DARTS_V2 from the DARTS paper's code) in this space's layout.
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


@pytest.fixture(scope="module")
def space():
    return get_search_space("nb301")


@pytest.fixture(scope="module")
def naslib_entries():
    path = data_file("naslib/zc_nasbench301.json")
    return json.loads(path.read_text())["cifar10"]


@pytest.fixture(scope="module")
def conversion():
    return convert.convert_naslib(data_file("naslib/zc_nasbench301.json"), search_space="nb301")


def _random_archs(space, count, seed=0):
    rng = np.random.default_rng(seed)
    return [space.random_sample(rng) for _ in range(count)]


# ---------------------------------------------------------------------------
# NASLib keys and the op order


def test_naslib_keys_round_trip(space, naslib_entries):
    assert len(naslib_entries) == 725
    for key in naslib_entries:
        arch = naslib_to_arch(key)
        genotype = space.genotype(arch)
        assert np.array_equal(space.from_genotype(genotype), arch), key
        assert arch_to_naslib(arch) == key


def test_naslib_keys_have_distinct_cells(space, naslib_entries):
    keys = {space.canonical_key(naslib_to_arch(key)) for key in naslib_entries}
    assert len(keys) == len(naslib_entries)


def _op_parameters(name, channels, reduction, source):
    """Weights of one DARTS op (BatchNorm inside ops has no affine parameters)."""
    if name.startswith(("sep_conv", "dil_conv")):
        kernel = int(name[-1])
        # depthwise k x k + pointwise 1x1; a separable conv stacks two of them
        single = kernel * kernel * channels + channels * channels
        return 2 * single if name.startswith("sep_conv") else single
    if name == "skip_connect" and reduction and source < 2:
        return channels * channels  # FactorizedReduce: two 1x1 convs to channels / 2
    return 0  # pooling, identity


def darts_parameter_count(cells, channels=32, layers=8, classes=10):
    """Parameters of the DARTS CIFAR network that NAS-Bench-301 trains (32 initial
    channels, 8 cells, reduce cells at 1/3 and 2/3 of the depth, no auxiliary head).

    ``cells`` contains the normal and the reduce cell as lists of ``(source, op name)``.
    BatchNorm affine parameters count in the stem and in the cell preprocessing only.
    """
    total = 3 * 3 * 3 * 3 * channels + 2 * 3 * channels  # stem conv 3x3 + BatchNorm
    before_previous, previous, current = 3 * channels, 3 * channels, channels
    previous_reduction = False
    for layer in range(layers):
        reduction = layer in (layers // 3, 2 * layers // 3)
        if reduction:
            current *= 2
        # preprocessing of the two cell inputs: a 1x1 conv (FactorizedReduce after a
        # reduce cell) + BatchNorm each
        if previous_reduction:
            total += 2 * before_previous * (current // 2) + 2 * current
        else:
            total += before_previous * current + 2 * current
        total += previous * current + 2 * current
        total += sum(_op_parameters(name, current, reduction, source) for source, name in cells[int(reduction)])
        before_previous, previous = previous, 4 * current
        previous_reduction = reduction
    return total + previous * classes + classes  # classifier


def _cells_with_names(key, naslib_ops):
    """Read a NASLib key with a given op-index table."""
    return [[(source, naslib_ops[op]) for source, op in cell] for cell in json.loads(
        key.replace("(", "[").replace(")", "]"))]


def _parameter_mismatches(entries, naslib_ops):
    return sum(
        darts_parameter_count(_cells_with_names(key, naslib_ops)) != round(entry["params"]["score"] * 1e6)
        for key, entry in entries.items()
    )


def test_op_order_matches_parameter_counts(naslib_entries):
    # The ``params`` score (millions) equals the exact DARTS count for every record when
    # the keys are read through this space (NASLib order -> space ops).
    for key, entry in naslib_entries.items():
        arch = naslib_to_arch(key)
        cells = [[(int(s), OPS[int(o)]) for s, o in zip(arch[c, 0], arch[c, 1])] for c in range(2)]
        assert darts_parameter_count(cells) == round(entry["params"]["score"] * 1e6), key


@pytest.mark.parametrize("first, second", [
    pair for pair in itertools.combinations(range(len(NASLIB_OPS)), 2) if pair != (0, 1)
])
def test_swapped_op_order_breaks_counts(naslib_entries, first, second):
    swapped = list(NASLIB_OPS)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    assert _parameter_mismatches(naslib_entries, swapped) > 100


def test_pool_order_not_identifiable(naslib_entries):
    # max_pool_3x3 and avg_pool_3x3 have no weights, so the counts cannot order them.
    swapped = ["avg_pool_3x3", "max_pool_3x3", *NASLIB_OPS[2:]]
    assert _parameter_mismatches(naslib_entries, swapped) == 0


# ---------------------------------------------------------------------------
# Conversion


def test_convert_counts_and_types(conversion):
    assert len(conversion.train) == 363
    assert len(conversion.valid) == 362
    assert not conversion.dropped
    for record in conversion.train + conversion.valid:
        assert set(record.low_fidelity) == NASLIB_TYPES
        assert 0.9 < record.acc < 0.95


def test_convert_split_is_seeded_permutation(conversion, naslib_entries):
    keys = list(naslib_entries)
    permutation = np.random.RandomState(0).permutation(len(keys))
    expected_train = [keys[index] for index in permutation[:363]]
    assert [arch_to_naslib(record.arch) for record in conversion.train] == expected_train
    train_accs = [naslib_entries[key]["val_accuracy"] / 100 for key in expected_train]
    assert [record.acc for record in conversion.train] == pytest.approx(train_accs)


def test_convert_command_line(tmp_path, space):
    source = data_file("naslib/zc_nasbench301.json")
    status = convert.main(["naslib", "--search-space", "nb301", "--input", str(source), "--out-dir", str(tmp_path)])
    assert status == 0
    for name, count in (("train", 363), ("valid", 362)):
        for suffix in (".json", ".pkl"):
            assert len(load_records(tmp_path / f"{name}{suffix}", space)) == count


# ---------------------------------------------------------------------------
# The space


def test_pickle_layout(space, tmp_path, conversion):
    arch = conversion.train[0].arch
    layout = space.to_pickle(arch)
    assert isinstance(layout, list) and len(layout) == 2
    for nodes, ops in layout:
        assert len(nodes) == len(ops) == 8
        assert all(type(value) is int for value in nodes + ops)

    path = tmp_path / "records.pkl"
    save_records(path, conversion.train[:3], space)
    with open(path, "rb") as stream:
        raw = pickle.load(stream)
    assert raw[0][0] == layout
    assert raw[0][1] == conversion.train[0].acc
    loaded = load_records(path, space)
    assert np.array_equal(loaded[0].arch, arch)


@pytest.mark.parametrize("arch, message", [
    (np.zeros((2, 2, 7)), "shape"),
    ([[[0, 1] * 4, [0] * 8]], "shape"),
    ("not an arch", "genotype"),
    (np.full((2, 2, 8), 0.5), "non-integer"),
    ([[[0, 1, 0, 3, 0, 1, 0, 1], [0] * 8]] * 2, "node 3 takes input from node 3"),
    ([[[0, 1, 0, 1, 0, 1, -1, 1], [0] * 8]] * 2, "from node -1"),
    ([[[0, 1, 0, 1, 0, 1, 0, 1], [0, 0, 0, 7, 0, 0, 0, 0]]] * 2, "op index 7"),
    ([[[0, 0, 0, 1, 0, 1, 0, 1], [0] * 8]] * 2, "both inputs from node 0"),
])
def test_validate_rejects(space, arch, message):
    with pytest.raises(ValueError, match=message):
        space.validate(arch)


def test_validate_names_cell(space):
    arch = [[[0, 1] * 4, [0] * 8], [[0, 1, 2, 2, 0, 1, 0, 1], [0] * 8]]
    with pytest.raises(ValueError, match="reduce cell, node 3"):
        space.validate(arch)


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "expected Genotype"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4]"), "concat"),
    (DARTS_V2.replace("'dil_conv_3x3'", "'conv_7x1_1x7'"), "unknown op"),
    (DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=len('x')"), "literals"),
    (DARTS_V2.replace("('max_pool_3x3', 1)]", "]"), "8 \\(op, from\\) pairs"),
    ("Genotype(normal=[])", "missing fields"),
    ("Genotype(", "invalid nb301 genotype"),
])
def test_genotype_parser_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        genotype_to_arch(text)


def test_genotype_darts_v2(space):
    arch = space.from_genotype(DARTS_V2)
    assert arch[0, 0].tolist() == [0, 1, 0, 1, 1, 0, 0, 2]
    assert arch[1, 1].tolist() == [OPS.index("max_pool_3x3")] * 2 + [OPS.index("skip_connect")] + [4, 4, 6, 6, 4]
    assert space.genotype(arch) == DARTS_V2
    assert np.array_equal(space.validate(DARTS_V2), arch)


def test_genotype_awnas_triples(space):
    arch = space.from_genotype(DARTS_V2)
    triples = []
    for cell in range(2):
        entries = [(OPS[int(o)], int(s), 2 + e // 2) for e, (s, o) in enumerate(zip(arch[cell, 0], arch[cell, 1]))]
        triples.append(list(reversed(entries)))  # any order of the triples is accepted
    text = (f"CNNGenotype(normal_0={triples[0]!r}, normal_0_concat=[2, 3, 4, 5], "
            f"reduce_1={triples[1]!r}, reduce_1_concat=[2, 3, 4, 5])")
    parsed = space.from_genotype(text)
    assert space.canonical_key(parsed) == space.canonical_key(arch)


def test_canonical_key_ignores_input_order(space):
    arch = _random_archs(space, 1)[0]
    swapped = arch.copy()
    swapped[:, :, [0, 1]] = arch[:, :, [1, 0]]
    assert space.canonical_key(swapped) == space.canonical_key(arch)

    changed = arch.copy()
    changed[1, 1, 0] = (arch[1, 1, 0] + 1) % len(OPS)
    assert space.canonical_key(changed) != space.canonical_key(arch)


def test_random_sample_is_valid(space):
    archs = _random_archs(space, 300)
    for arch in archs:
        assert np.array_equal(space.validate(arch), arch)
    keys = {space.canonical_key(arch) for arch in archs}
    assert len(keys) == len(archs)
    ops = np.stack(archs)[:, :, 1]
    assert set(np.unique(ops).tolist()) == set(range(len(OPS)))


@pytest.mark.parametrize("node_mutate_prob, row", [(1.0, 0), (0.0, 1)])
def test_mutate_changes_one_entry(space, node_mutate_prob, row):
    rng = np.random.default_rng(1)
    for arch in _random_archs(space, 200):
        mutated = space.mutate(arch, rng, node_mutate_prob=node_mutate_prob)
        space.validate(mutated)
        changed = np.argwhere(mutated != arch)
        assert len(changed) == 1
        assert changed[0][1] == row
        if row == 0:
            assert changed[0][2] >= 2  # node 2's sources 0 and 1 cannot change


def test_mutate_default_mixes_nodes_and_ops(space):
    rng = np.random.default_rng(2)
    rows = {int(np.argwhere(space.mutate(arch, rng) != arch)[0][1]) for arch in _random_archs(space, 50)}
    assert rows == {0, 1}


def test_encode_shape(space):
    archs = _random_archs(space, 4)
    encoded = space.encode(archs)
    assert encoded.shape == (4, 2, 2, 8)
    assert encoded.dtype == torch.long
    assert space.encode([]).shape == (0, 2, 2, 8)


# ---------------------------------------------------------------------------
# Encoders


def _reference_cellss_flow(embedder, arch):
    """cellss-flow on one arch with explicit loops over cells, layers and nodes."""
    outputs = []
    features0 = embedder.initial_features()[0]  # (G, V, hidden)
    for cell in range(2):
        features = features0[cell]
        for index, gcn in enumerate(embedder.gcns):
            support = features @ gcn.weight
            rows = []
            for node in range(6):
                incoming = torch.zeros(support.shape[-1])
                if node >= 2:
                    for entry in (2 * (node - 2), 2 * (node - 2) + 1):
                        source, op = int(arch[cell, 0, entry]), int(arch[cell, 1, entry])
                        gate = torch.sigmoid(gcn.op_attention(embedder.op_emb.weight[op]))
                        incoming = incoming + gate * support[source] / 2
                residual = support[node] if gcn.residual_only is None or node < gcn.residual_only else 0
                rows.append(incoming + residual)
            features = torch.stack(rows)
            if index != len(embedder.gcns) - 1:
                features = torch.relu(features)
        outputs.append(features[2:].mean(dim=0))
    return torch.cat(outputs)


@pytest.mark.parametrize("gcn_kwargs", [None, {"residual_only": 2}])
def test_cellss_flow_matches_reference(space, gcn_kwargs):
    torch.manual_seed(0)
    embedder = CellSSFlowEmbedder(space, gcn_out_dims=[16, 12], node_dim=8, op_dim=8, hidden_dim=10,
                                  gcn_kwargs=gcn_kwargs)
    embedder.other_node_emb.data.normal_()  # a trainable vector, non-zero after training
    archs = _random_archs(space, 3)
    embedded = embedder(space.encode(archs))
    for row, arch in zip(embedded, archs):
        torch.testing.assert_close(row, _reference_cellss_flow(embedder, arch))


@pytest.mark.parametrize("cfg, out_dim", [
    ({}, 256),
    ({"final_concat": True, "gcn_out_dims": [16]}, 128),
    ({"normalize": True, "gcn_out_dims": [16, 8], "other_node_zero": True}, 16),
    ({"other_node_independent": True, "gcn_out_dims": [8], "dropout": 0.1}, 16),
    ({"share_self_op_emb": True, "gcn_kwargs": {"plus_I": True, "share_self_op_emb": True}, "gcn_out_dims": [8]}, 16),
    ({"gcn_kwargs": {"plus_I": True, "bias": True, "use_sum": True, "has_aggregate_op": True}, "gcn_out_dims": [8]}, 16),
    ({"use_bn": True, "gcn_out_dims": [8, 8]}, 16),
])
def test_cellss_flow_options(space, cfg, out_dim):
    embedder = build_embedder("cellss-flow", space, cfg)
    embedded = embedder(space.encode(_random_archs(space, 5)))
    assert embedder.out_dim == out_dim
    assert embedded.shape == (5, out_dim)
    embedded.sum().backward()
    assert embedder.op_emb.weight.grad is not None
    if cfg.get("normalize"):
        torch.testing.assert_close(embedded.reshape(5, 2, -1).norm(dim=-1), torch.ones(5, 2))


@pytest.mark.parametrize("cfg, message", [
    ({"gcn_kwargs": {"normalize": True}}, "normalize"),
    ({"gcn_kwargs": {"share_self_op_emb": True, "plus_I": True}}, "share_self_op_emb"),
    ({"op_dim": 48, "node_dim": 8, "gcn_kwargs": {"has_attention": False}}, "op_dim"),
    ({"schedule_cfg": {"x": 1}}, "schedule_cfg"),
    ({"op_embedding_dim": 48}, "op_embedding_dim"),
])
def test_cellss_flow_rejects_options(space, cfg, message):
    with pytest.raises(ValueError, match=message):
        build_embedder("cellss-flow", space, cfg)


@pytest.mark.parametrize("name", ["cellss-flow", "nb301-lstm"])
def test_cell_encoders_reject_nb201(name):
    with pytest.raises(ValueError, match="needs a cell space"):
        build_embedder(name, get_search_space("nasbench-201"))


@pytest.mark.parametrize("name, cfg", [
    ("cellss-flow", {"gcn_out_dims": [16, 16]}),
    ("nb301-lstm", {"num_hid": 16, "emb_hid": 8}),
])
def test_encoders_ignore_node_input_order(space, name, cfg):
    embedder = build_embedder(name, space, cfg)
    archs = _random_archs(space, 4)
    swapped = [arch.copy() for arch in archs]
    for arch, original in zip(swapped, archs):
        arch[:, :, 0::2], arch[:, :, 1::2] = original[:, :, 1::2], original[:, :, 0::2]
    torch.testing.assert_close(embedder(space.encode(swapped)), embedder(space.encode(archs)))


@pytest.mark.parametrize("cfg, out_dim", [
    ({}, 100),
    ({"num_hid": 12, "emb_hid": 6, "num_layers": 2, "use_hid": True, "dropout": 0.1}, 12),
    ({"num_hid": 12, "emb_hid": 6, "use_mean": True}, 12),
])
def test_nb301_lstm_forward_backward(space, cfg, out_dim):
    embedder = build_embedder("nb301-lstm", space, cfg)
    embedded = embedder(space.encode(_random_archs(space, 3)))
    assert embedded.shape == (3, out_dim)
    embedded.sum().backward()
    assert embedder.node_emb.weight.grad is not None


def test_nb301_lstm_tells_cells_apart(space):
    embedder = build_embedder("nb301-lstm", space, {"num_hid": 8, "emb_hid": 4})
    arch = _random_archs(space, 1)[0]
    flipped = arch[::-1].copy()  # normal and reduce cell exchanged
    assert not torch.allclose(embedder(space.encode([arch])), embedder(space.encode([flipped])))


@pytest.mark.parametrize("name, cfg", [
    ("cellss-flow", {"gcn_out_dims": [16, 16], "gcn_kwargs": {"residual_only": 2}, "dropout": 0.1}),
    ("nb301-lstm", {"num_hid": 16, "emb_hid": 8}),
])
def test_ensemble_with_cell_encoders(space, name, cfg):
    torch.manual_seed(0)
    model = DynamicEnsemblePointwiseComparator(
        space, auxiliary_head_num=3, arch_embedder_type=name, arch_embedder_cfg=cfg, mlp_hiddens=[16]
    )
    encoded = space.encode(_random_archs(space, 6))
    experts = model.expert_scores(encoded)
    assert experts.shape == (3, 6)
    assert not torch.allclose(experts[0], experts[1])  # independently initialised experts
    loss = model.score(encoded).sum() + experts.sum()
    loss.backward()
    assert all(p.grad is not None for p in model.experts.params.values())
    assert all(p.grad is not None for p in model.gate_parameters())

    # Expert k of the batched stack equals a single network with its weights.
    single = PointwiseComparator(space, arch_embedder_type=name, arch_embedder_cfg=cfg, mlp_hiddens=[16])
    single.load_state_dict(model.experts.member_state_dict(1))
    model.eval()
    single.eval()
    torch.testing.assert_close(single.score(encoded), model.expert_scores(encoded)[1])


# ---------------------------------------------------------------------------
# Short real runs


def _tiny_config(path, source, replace):
    cfg = yaml.safe_load((REPO_ROOT / "cfgs" / source).read_text())
    cfg["arch_network_cfg"].update(replace.pop("arch_network_cfg", {}))
    cfg.update(replace)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run_files(conversion, tmp_path_factory, space):
    """Training records (a third of the split) and a validation file of (arch, acc) pairs."""
    folder = tmp_path_factory.mktemp("nb301_records")
    save_records(folder / "train.json", conversion.train[:120], space)
    pairs = [Record(record.arch, record.acc, None) for record in conversion.valid[:150]]
    save_records(folder / "valid.pkl", pairs, space)
    with open(folder / "valid.pkl", "rb") as stream:
        assert all(len(item) == 2 for item in pickle.load(stream))
    return folder / "train.json", folder / "valid.pkl"


def _common_args(cfg, run_files, train_dir):
    train, valid = run_files
    return [str(cfg), "--search-space", "nb301", "--train-pkl", str(train), "--valid-pkl", str(valid),
            "--train-dir", str(train_dir), "--seed", "0", "--test-every", "2"]


def _valid_lines(train_dir):
    return [line for line in (train_dir / "train.log").read_text().splitlines() if "Valid:" in line]


def test_train_predictor_real_nb301(tmp_path, run_files):
    cfg = _tiny_config(tmp_path / "cfg.yaml", "train_nb301_gates_config.yaml", {
        "arch_network_cfg": {"arch_embedder_cfg": {"gcn_out_dims": [16, 16], "gcn_kwargs": {"residual_only": 2}},
                             "mlp_hiddens": [16]},
        "finetune_epochs": 4, "batch_size": 64,
    })
    train_dir = tmp_path / "vanilla"
    train_predictor_main([*_common_args(cfg, run_files, train_dir), "--no-pretrain", "--train-ratio", "0.5"])

    assert (train_dir / "final.ckpt").is_file()
    with open(train_dir / "output.pkl", "rb") as stream:
        output = pickle.load(stream)
    assert len(output["score"]) == len(output["real_acc"]) == 150
    lines = _valid_lines(train_dir)
    assert lines and all("kendall tau real" in line for line in lines)


def test_dynamic_ensemble_real_nb301(tmp_path, run_files):
    cfg = _tiny_config(tmp_path / "cfg.yaml", "dynamic_ensemble_nb301_gates_config.yaml", {
        "arch_network_cfg": {"auxiliary_head_num": 3, "arch_embedder_cfg": {"gcn_out_dims": [16]},
                             "mlp_hiddens": [16]},
        "low_fidelity_type": ["synflow", "jacob_cov", "flops"],
        "pretrain_epochs": 2, "epochs": 2, "batch_size": 64,
    })
    train_dir = tmp_path / "dele"
    dynamic_ensemble_main([*_common_args(cfg, run_files, train_dir), "--train-ratio", "0.25"])

    assert (train_dir / "pre_final.ckpt").is_file()
    assert (train_dir / "final.ckpt").is_file()
    with open(train_dir / "output.pkl", "rb") as stream:
        output = pickle.load(stream)
    assert output["low_fidelity"] == {}
    assert len(output["score"]) == 150
    # The validation pairs carry no low-fidelity scores: only actual accuracy is ranked.
    lines = _valid_lines(train_dir)
    assert len(lines) == 2
    for line in lines:
        assert "kendall tau real" in line
        assert "kendall tau synflow" not in line
