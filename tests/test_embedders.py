"""Architecture embedders: the LSTM against ``torch.nn.LSTM``, one GATES layer against a
per-edge reference, "none" edges, and every registered embedder on a tiny batch."""

import numpy as np
import pytest
import torch
from torch import nn

import dele.embedders  # noqa: F401 - registers the built-in embedders
from dele.embedders import build_embedder
from dele.embedders.gates import CellGraph, DenseGraphSimpleOpEdgeFlow, _distinct_rows
from dele.embedders.lstm import NasBench201LSTMEmbedder, SequenceLSTM
from dele.registry import list_names
from dele.spaces.nb201 import OPS, NasBench201SearchSpace, matrix_from_edges

TINY_FLOW = {
    "op_embedding_dim": 8,
    "node_embedding_dim": 8,
    "hid_dim": 12,
    "gcn_out_dims": [16, 16],
}
TINY_CFGS = {
    "nb201-flow": TINY_FLOW,
    "nb201-lstm": {"num_hid": 16, "emb_hid": 8},
}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run the module's tiny models on one thread: intra-op threads only add
    synchronisation, which costs much more when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def space():
    return NasBench201SearchSpace()


def _random_archs(space, count, seed):
    rng = np.random.default_rng(seed)
    return space.encode([space.random_sample(rng) for _ in range(count)])


# ---------------------------------------------------------------------------
# SequenceLSTM and nb201-lstm


@pytest.mark.parametrize("num_layers", [1, 2])
def test_sequence_lstm_matches_torch(num_layers):
    torch.manual_seed(0)
    reference = nn.LSTM(5, 7, num_layers=num_layers, batch_first=True)
    lstm = SequenceLSTM(5, 7, num_layers)
    lstm.load_state_dict(reference.state_dict())
    inputs = torch.randn(3, 6, 5)

    outputs, finals = lstm(inputs)
    expected_outputs, (expected_hidden, _) = reference(inputs)

    assert outputs.shape == (3, 6, 7)
    assert finals.shape == (num_layers, 3, 7)
    torch.testing.assert_close(outputs, expected_outputs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(finals, expected_hidden, rtol=1e-5, atol=1e-6)


def test_sequence_lstm_parameter_names():
    reference = nn.LSTM(4, 6, num_layers=2, batch_first=True)
    lstm = SequenceLSTM(4, 6, 2)
    assert {name: p.shape for name, p in lstm.named_parameters()} == {
        name: p.shape for name, p in reference.named_parameters()
    }


def test_sequence_lstm_gradients_match():
    torch.manual_seed(1)
    reference = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    lstm = SequenceLSTM(3, 4, 2)
    lstm.load_state_dict(reference.state_dict())
    inputs = torch.randn(2, 5, 3)

    lstm(inputs)[0].sum().backward()
    reference(inputs)[0].sum().backward()

    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(getattr(lstm, name).grad, parameter.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("option", ["last", "use_mean", "use_hid"])
def test_nb201_lstm_readout(space, option):
    torch.manual_seed(2)
    embedder = NasBench201LSTMEmbedder(
        space, num_hid=6, emb_hid=4, num_layers=2, use_mean=option == "use_mean", use_hid=option == "use_hid"
    )
    reference = nn.LSTM(4, 6, num_layers=2, batch_first=True)
    reference.load_state_dict(embedder.rnn.state_dict())
    archs = _random_archs(space, 5, 0)

    sequence = torch.stack([archs[:, 1, 0], archs[:, 2, 0], archs[:, 2, 1], archs[:, 3, 0], archs[:, 3, 1], archs[:, 3, 2]], 1)
    outputs, (hidden, _) = reference(embedder.op_emb(sequence))
    expected = {"last": outputs[:, -1], "use_mean": outputs.mean(1), "use_hid": hidden[-1]}[option]

    torch.testing.assert_close(embedder(archs), expected, rtol=1e-5, atol=1e-6)


def test_nb201_lstm_reads_edge_order(space):
    embedder = NasBench201LSTMEmbedder(space, num_hid=6, emb_hid=4)
    original = matrix_from_edges([1, 2, 3, 4, 0, 1])
    swapped = matrix_from_edges([2, 1, 3, 4, 0, 1])
    outputs = embedder(space.encode([original, swapped]))
    assert not torch.allclose(outputs[0], outputs[1])


# ---------------------------------------------------------------------------
# GATES


def _reference_layer(layer, features, adjacency, op_table, residual_only=None, reverse=False):
    """One GATES layer written edge by edge from the layer formula."""
    support = features @ layer.weight  # (B, V, out)
    batch, nodes, _ = support.shape

    def gate(embedding):
        return layer.gate_function(layer.op_attention(embedding)) * layer.attn_scale_factor

    outputs = []
    for b in range(batch):
        rows = []
        for i in range(nodes):
            message = torch.zeros_like(support[b, i])
            for j in range(i):
                op = int(adjacency[b, i, j])
                if op == 0:
                    continue
                if op == layer.skip_connection_index:
                    edge_gate = torch.ones_like(message)
                else:
                    edge_gate = gate(op_table[op])
                message = message + edge_gate * support[b, j]
            if layer.self_op_emb is not None:
                message = message + gate(layer.self_op_emb) * support[b, i]
            if layer.aggregate_op is not None:
                message = layer.aggregate_op(message)

            if residual_only is None:
                keeps_residual = True
            elif reverse:
                keeps_residual = i >= nodes - residual_only
            else:
                keeps_residual = i < residual_only
            row = message + support[b, i] if keeps_residual else message
            if layer.bias is not None:
                row = row + layer.bias
            rows.append(row)
        outputs.append(torch.stack(rows))
    return torch.stack(outputs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"residual_only": 1},
        {"residual_only": 2, "reverse": True},
        {"bias": True},
        {"nonlinear": "relu", "attn_scale_factor": 0.5},
        {"nonlinear": "softplus"},
        {"skip_connection_index": OPS.index("skip_connect")},
        {"plus_I": True},
        {"has_aggregate_op": True},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()) or "default",
)
def test_gates_layer_matches_reference(space, kwargs):
    torch.manual_seed(3)
    layer = DenseGraphSimpleOpEdgeFlow(6, 5, 4, **kwargs)
    adjacency = _random_archs(space, 4, 1)
    adjacency[0] = torch.as_tensor(matrix_from_edges([0, 0, 0, 0, 0, 0]))
    features = torch.randn(4, 4, 6)
    op_table = torch.randn(len(OPS), 4)

    rows = features.transpose(0, 1).reshape(16, 6)  # node-major, one row per (node, arch)
    output = layer(rows, CellGraph(adjacency, len(OPS), merge=False), op_table).reshape(4, 4, 5).transpose(0, 1)
    expected = _reference_layer(
        layer, features, adjacency, op_table, kwargs.get("residual_only"), kwargs.get("reverse", False)
    )

    assert output.shape == (4, 4, 5)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)


def test_cell_graph_merges_equal_prefixes(space):
    adjacency = space.encode([matrix_from_edges([1, 2, 3, 4, 0, 1]), matrix_from_edges([1, 2, 3, 1, 1, 1]),
                              matrix_from_edges([2, 2, 3, 4, 0, 1])])
    graph = CellGraph(adjacency, len(OPS))

    # Node 0 is shared by all, nodes 1-2 by the first two (same ops on edges into 1 and 2).
    assert graph.node_of_row.tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    assert graph.arch_rows[0].tolist() == [0, 0, 0]
    for node in (1, 2):
        first, second, third = graph.arch_rows[node].tolist()
        assert first == second
        assert first != third
        assert graph.node_of_row[first] == node
        assert graph.node_of_row[third] == node
    assert sorted(graph.arch_rows[3].tolist()) == [5, 6, 7]
    assert graph.edge_sources.numel() == 2 * 1 + 2 * 2 + 3 * 3
    unmerged = CellGraph(adjacency, len(OPS), merge=False)
    assert unmerged.num_rows == 12
    assert unmerged.edge_sources.numel() == 3 * 6


@pytest.mark.parametrize("num_ops", [5, 2**20])
def test_distinct_rows_groups_equal_rows(num_ops):
    # Up to 62 bits each row is packed into one integer. Wider rows are compared whole.
    codes = torch.tensor([[1, 2, 3, 4], [0, 2, 3, 4], [1, 2, 3, 4], [4, 4, 4, 4], [0, 2, 3, 4]])

    inverse, representatives = _distinct_rows(codes, num_ops, merge=True)

    assert representatives.numel() == 3
    assert inverse[0] == inverse[2]
    assert inverse[1] == inverse[4]
    assert len({int(inverse[0]), int(inverse[1]), int(inverse[3])}) == 3
    assert torch.equal(codes[representatives[inverse]], codes)


@pytest.mark.parametrize("use_final_only", [True, False])
def test_gates_merged_rows_match_unmerged(space, use_final_only):
    torch.manual_seed(4)
    embedder = build_embedder("nb201-flow", space, {**TINY_FLOW, "use_final_only": use_final_only,
                                                    "gcn_kwargs": {"residual_only": 1}})
    adjacency = _random_archs(space, 300, 2)

    merged = embedder(adjacency)
    merged_grads = torch.autograd.grad(merged.square().sum(), list(embedder.parameters()))
    embedder.merge_rows = False
    unmerged = embedder(adjacency)
    unmerged_grads = torch.autograd.grad(unmerged.square().sum(), list(embedder.parameters()))

    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-6)
    for merged_grad, unmerged_grad in zip(merged_grads, unmerged_grads):
        torch.testing.assert_close(merged_grad, unmerged_grad, rtol=1e-4, atol=1e-5)


def test_gates_dropout_disables_row_merging(space):
    embedder = build_embedder("nb201-flow", space, {**TINY_FLOW, "dropout": 0.5}).train()
    adjacency = _random_archs(space, 50, 3)

    torch.manual_seed(5)
    default = embedder(adjacency)
    embedder.merge_rows = False
    torch.manual_seed(5)
    unmerged = embedder(adjacency)

    # Dropout draws one mask per node of every architecture, so no rows were merged.
    torch.testing.assert_close(default, unmerged)


@pytest.mark.parametrize("merge_rows", [True, False])
@pytest.mark.parametrize("use_bn", [False, True])
def test_gates_empty_batch(space, merge_rows, use_bn):
    embedder = build_embedder("nb201-flow", space, {**TINY_FLOW, "use_bn": use_bn}).eval()
    embedder.merge_rows = merge_rows

    output = embedder(torch.zeros(0, 4, 4, dtype=torch.long))

    assert output.shape == (0, 16)


def _cell(ops):
    """Return a 4-node op matrix with ``ops[(target, source)]`` on those edges and none elsewhere."""
    cell = torch.zeros(4, 4, dtype=torch.long)
    for (target, source), op in ops.items():
        cell[target, source] = op
    return cell


# In each case the invalid cell packs into the same integer as the valid one for node 2
# (edge digits 1, 5 and 25), so only the range check can tell them apart.
@pytest.mark.parametrize(
    "valid, invalid, bad_op",
    [({(2, 1): 1}, {(2, 0): 5}, 5), ({(2, 0): 4}, {(2, 0): -1, (2, 1): 1}, -1)],
    ids=["too_large", "negative"],
)
def test_gates_rejects_op_out_of_range(space, valid, invalid, bad_op):
    embedder = build_embedder("nb201-flow", space, TINY_FLOW)

    with pytest.raises(ValueError, match=rf"architecture 1 has op index {bad_op} on edge 0 -> 2"):
        embedder(torch.stack([_cell(valid), _cell(invalid)]))


def test_gates_rejects_bad_shape_and_dtype(space):
    embedder = build_embedder("nb201-flow", space, TINY_FLOW)
    archs = _random_archs(space, 2, 0)

    with pytest.raises(ValueError, match=r"shape \(B, 4, 4\), got \(2, 3, 3\)"):
        embedder(archs[:, :3, :3])
    with pytest.raises(ValueError, match="long tensor of op indices, got dtype torch.int32"):
        embedder(archs.int())


def test_gates_runs_in_bfloat16(space):
    embedder = build_embedder("nb201-flow", space, TINY_FLOW).to(torch.bfloat16)

    output = embedder(_random_archs(space, 3, 0))

    assert output.dtype == torch.bfloat16
    assert output.shape == (3, 16)


def test_gates_layer_rejects_bad_options():
    with pytest.raises(ValueError, match="nonlinear"):
        DenseGraphSimpleOpEdgeFlow(4, 4, 4, nonlinear="tanh")
    with pytest.raises(ValueError, match="has_attention"):
        DenseGraphSimpleOpEdgeFlow(4, 5, 4, has_attention=False)
    with pytest.raises(ValueError, match="normalize"):
        DenseGraphSimpleOpEdgeFlow(4, 4, 4, normalize=True)


def _final_only_flow(space, **overrides):
    cfg = {**TINY_FLOW, "gcn_out_dims": [16, 16, 16], "gcn_kwargs": {"residual_only": 1}, "use_final_only": True}
    cfg.update(overrides)
    return build_embedder("nb201-flow", space, cfg).eval()


def test_flow_output_shape(space):
    embedder = build_embedder("nb201-flow", space, TINY_FLOW)
    assert embedder.out_dim == 16
    assert embedder(_random_archs(space, 7, 3)).shape == (7, 16)


def test_flow_output_node_without_inputs(space):
    torch.manual_seed(5)
    embedder = _final_only_flow(space)
    # Edges (1,0), (2,0), (2,1), (3,0), (3,1), (3,2): the output node 3 has only "none" inputs.
    archs = space.encode([matrix_from_edges(ops) for ops in ([1, 2, 3, 0, 0, 0], [4, 4, 4, 0, 0, 0], [0, 0, 0, 0, 0, 0])])

    outputs = embedder(archs)

    assert torch.count_nonzero(outputs) == 0


def test_flow_ignores_disconnected_edges(space):
    torch.manual_seed(6)
    embedder = _final_only_flow(space)
    # The output node reads only the input node, through edge (3,0). So the edges into
    # nodes 1 and 2 carry no message to it, whatever their ops.
    same = [matrix_from_edges(ops) for ops in ([1, 2, 3, 3, 0, 0], [4, 0, 2, 3, 0, 0], [0, 0, 0, 3, 0, 0])]
    other_op = matrix_from_edges([1, 2, 3, 2, 0, 0])

    outputs = embedder(space.encode(same + [other_op]))

    torch.testing.assert_close(outputs[1], outputs[0])
    torch.testing.assert_close(outputs[2], outputs[0])
    assert not torch.allclose(outputs[3], outputs[0])
    assert torch.count_nonzero(outputs[0]) > 0


def test_flow_none_edge_carries_no_message(space):
    torch.manual_seed(7)
    embedder = _final_only_flow(space)
    # Node 2 feeds the output node, but its input edge (2,1) is "none", so the op on
    # edge (1,0) cannot reach the output node.
    archs = space.encode([matrix_from_edges(ops) for ops in ([1, 3, 0, 0, 0, 2], [4, 3, 0, 0, 0, 2], [4, 3, 1, 0, 0, 2])])

    outputs = embedder(archs)

    torch.testing.assert_close(outputs[1], outputs[0])
    assert not torch.allclose(outputs[2], outputs[0])


def test_flow_mean_readout(space):
    torch.manual_seed(8)
    embedder = build_embedder("nb201-flow", space, {**TINY_FLOW, "gcn_kwargs": {"residual_only": 1}}).eval()
    final_only = build_embedder(
        "nb201-flow", space, {**TINY_FLOW, "gcn_kwargs": {"residual_only": 1}, "use_final_only": True}
    ).eval()
    final_only.load_state_dict(embedder.state_dict())
    # Only node 3 is connected: nodes 1 and 2 stay zero, so the mean over nodes 1..3 is a third of node 3.
    archs = space.encode([matrix_from_edges([0, 0, 0, 2, 0, 0])])

    torch.testing.assert_close(embedder(archs), final_only(archs) / 3)


def test_flow_rejects_unsupported_options(space):
    for option in ("share_op_attention", "share_self_op_emb"):
        with pytest.raises(ValueError, match=option):
            build_embedder("nb201-flow", space, {**TINY_FLOW, option: True})


def test_unknown_embedder_option_raises(space):
    with pytest.raises(ValueError, match="nb201-flow") as caught:
        build_embedder("nb201-flow", space, {**TINY_FLOW, "hidden_dim": 3})
    assert "hidden_dim" in str(caught.value)


# ---------------------------------------------------------------------------
# Every registered embedder


@pytest.mark.parametrize("name", list_names("arch_embedder"))
def test_registered_embedder_runs(space, name):
    if not name.startswith("nb201"):
        pytest.skip(f"{name} embeds architectures of another search space")
    if name not in TINY_CFGS:
        pytest.fail(f"add a tiny config for the arch_embedder {name!r} to TINY_CFGS")
    torch.manual_seed(9)
    embedder = build_embedder(name, space, TINY_CFGS[name])
    archs = _random_archs(space, 6, 4)

    output = embedder(archs)
    output.square().sum().backward()

    assert output.shape == (6, embedder.out_dim)
    assert torch.isfinite(output).all()
    for parameter_name, parameter in embedder.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name
