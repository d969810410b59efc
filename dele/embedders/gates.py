"""GATES encoder for NAS-Bench-201 cells (``nb201-flow``).

GATES (Ning et al., "A Generic Graph-based Neural Architecture Encoding Scheme for
Predictor-based NAS", ECCV 2020) treats each op as a gate on the information flowing
along its edge. One layer computes, for node i,

    Y'_i = sum_{j < i, A_ij != none} phi(U e(A_ij) + c) * (Y_j W)  +  residual_i,

where ``e`` is the op embedding, ``phi`` the gate non-linearity (sigmoid by default) and
the residual keeps ``Y_i W`` for the first ``residual_only`` nodes (all nodes if None).
Defaults and key names follow aw_nas's ``nb201-flow`` embedder.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from dele.embedders.base import ArchEmbedder

_GATE_FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "softplus": F.softplus,
    "none": lambda x: x,
}


class DenseGraphSimpleOpEdgeFlow(nn.Module):
    """One GATES layer (ops on edges) over the feature rows of a :class:`CellGraph`."""

    def __init__(
        self,
        in_features,
        out_features,
        op_emb_dim,
        *,
        has_attention=True,
        plus_I=False,
        bias=False,
        residual_only=None,
        reverse=False,
        has_aggregate_op=False,
        nonlinear="sigmoid",
        skip_connection_index=None,
        attn_scale_factor=1.0,
        normalize=False,
    ):
        super().__init__()
        if nonlinear not in _GATE_FUNCTIONS:
            raise ValueError(f"gcn_kwargs.nonlinear must be one of {sorted(_GATE_FUNCTIONS)}, got {nonlinear!r}")
        if not has_attention and op_emb_dim != out_features:
            raise ValueError(
                f"gcn_kwargs.has_attention=False needs op_embedding_dim == gcn out dim, got {op_emb_dim} != {out_features}"
            )
        if normalize:
            raise ValueError("gcn_kwargs.normalize is not supported by nb201-flow (aw_nas ignored it)")

        self.residual_only = residual_only
        self.reverse = reverse
        self.gate_function = _GATE_FUNCTIONS[nonlinear]
        self.skip_connection_index = skip_connection_index
        self.attn_scale_factor = attn_scale_factor

        bound = 1.0 / math.sqrt(out_features)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.op_attention = nn.Linear(op_emb_dim, out_features) if has_attention else nn.Identity()
        self.aggregate_op = nn.Linear(out_features, out_features) if has_aggregate_op else None
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None
        self.self_op_emb = nn.Parameter(torch.randn(op_emb_dim)) if plus_I else None

    def gate_table(self, op_table):
        """Return the ``(P, out)`` gate of every op; "none" (index 0) gates nothing."""
        gates = self.gate_function(self.op_attention(op_table)) * self.attn_scale_factor
        keep = torch.ones(op_table.shape[0], 1, device=op_table.device, dtype=gates.dtype)
        keep[0] = 0.0
        gates = gates * keep
        if self.skip_connection_index is not None:
            is_skip = torch.zeros_like(keep, dtype=torch.bool)
            is_skip[self.skip_connection_index] = True
            gates = torch.where(is_skip, torch.ones_like(gates), gates)
        return gates

    def forward(self, features, graph, op_table):
        """Update the features of every row of a :class:`CellGraph`.

        Args:
            features: ``(R, in)`` features, one row per distinct node state.
            graph: the :class:`CellGraph` of the batch.
            op_table: ``(P, op_dim)`` op embeddings.

        Returns:
            ``(R, out)`` features.
        """
        support = features @ self.weight  # (R, out)

        # Each edge j -> i carries gate(op) * support_j into the row of node i.
        gates = graph.edge_one_hot.to(support.dtype) @ self.gate_table(op_table)  # (M, out)
        carried = gates * support[graph.edge_sources]  # (M, out)
        messages = graph.sum_into_targets(carried)  # (R, out)

        if self.self_op_emb is not None:
            self_gate = self.gate_function(self.op_attention(self.self_op_emb)) * self.attn_scale_factor
            messages = messages + self_gate * support
        if self.aggregate_op is not None:
            messages = self.aggregate_op(messages)
        messages = messages + self._residual(graph, support.dtype) * support
        if self.bias is not None:
            messages = messages + self.bias
        return messages

    def _residual(self, graph, dtype):
        """Return a ``(R, 1)`` 0/1 mask of the rows whose node keeps ``Y_i W``."""
        nodes = graph.node_of_row
        if self.residual_only is None:
            keep = torch.ones_like(nodes, dtype=torch.bool)
        elif self.reverse:
            keep = nodes >= graph.num_nodes - self.residual_only
        else:
            keep = nodes < self.residual_only
        return keep.unsqueeze(1).to(dtype)


class CellGraph:
    """The GATES computation of a batch of op matrices as a graph of feature rows.

    The features of node i depend only on the ops of the edges that end at nodes 0..i.
    With ``merge=True``, architectures that agree on those ops share one row for node i.
    A batch of NAS-Bench-201 cells then needs at most 1 + 5 + 125 rows for nodes 0-2 and
    one row per architecture for the output node, instead of four rows per architecture.
    The result is the same, because only repeated work is skipped. With ``merge=False`` every
    (node, architecture) pair has its own row, laid out node-major, which dropout and
    batch normalisation over nodes need.

    NOTE: the ops used here (``torch.unique``, ``scatter_reduce_``, split sums) have CUDA
    kernels, but this class has not yet been run on a GPU.

    Attributes:
        node_of_row: ``(R,)`` node index of each row.
        edge_sources: ``(M,)`` source row of each edge ``j -> i``. Edges are grouped by
            target node i, then by source j, then ordered like node i's rows.
        edge_ops: ``(M,)`` op index of each edge, and ``edge_one_hot`` the same one-hot ``(M, P)``.
        arch_rows: ``V`` tensors ``(B,)``, the row of node i for each architecture.
    """

    def __init__(self, adjacency, num_ops, merge=True):
        batch, nodes = adjacency.shape[0], adjacency.shape[-1]
        device = adjacency.device
        targets, sources = torch.tril_indices(nodes, nodes, offset=-1, device=device)
        edge_ops = adjacency[:, targets, sources]  # (B, E), edges ordered by target node
        _check_op_range(edge_ops, targets, sources, num_ops)
        self.num_nodes = nodes
        self.batch_size = batch

        node_of_row, edge_sources, ops, self.arch_rows, self.rows_per_node = [], [], [], [], []
        offset = 0
        for node in range(nodes):
            inverse, representatives = _distinct_rows(edge_ops[:, : node * (node + 1) // 2], num_ops, merge)
            count = representatives.numel()
            for source in range(node):
                edge_sources.append(self.arch_rows[source][representatives])
                ops.append(adjacency[representatives, node, source])
            node_of_row.append(torch.full((count,), node, device=device))
            self.arch_rows.append(inverse + offset)
            self.rows_per_node.append(count)
            offset += count

        self.num_rows = offset
        self.node_of_row = torch.cat(node_of_row)
        self.edge_sources = torch.cat(edge_sources)
        self.edge_ops = torch.cat(ops)
        self.edge_one_hot = F.one_hot(self.edge_ops, num_ops).float()

    def sum_into_targets(self, carried):
        """Sum ``(M, out)`` edge values into ``(R, out)`` rows of their target nodes.

        Every row of node i has exactly i incoming edges, stored as an ``(i, rows_i, out)``
        block, so the sum is a fixed-order reduction: deterministic on every device, and
        its backward pass is one concatenation.
        """
        sizes = [node * count for node, count in enumerate(self.rows_per_node)]
        blocks = torch.split(carried, sizes)
        sums = [carried.new_zeros(self.rows_per_node[0], carried.shape[-1])]
        for node in range(1, self.num_nodes):
            sums.append(blocks[node].reshape(node, self.rows_per_node[node], carried.shape[-1]).sum(dim=0))
        return torch.cat(sums)


def _check_op_range(edge_ops, targets, sources, num_ops):
    """Raise ValueError for an op index outside ``0..num_ops - 1``.

    Shared rows are found by packing op indices into integers, so an index out of range
    could otherwise pack like a valid architecture and silently take its row.
    """
    invalid = (edge_ops < 0) | (edge_ops >= num_ops)
    if invalid.any():
        arch, edge = (int(i) for i in invalid.nonzero()[0])
        raise ValueError(
            f"architecture {arch} has op index {int(edge_ops[arch, edge])} on edge "
            f"{int(sources[edge])} -> {int(targets[edge])}, expected 0 to {num_ops - 1}"
        )


def _distinct_rows(codes, num_ops, merge):
    """Return ``(inverse, representatives)`` for the rows of a ``(B, C)`` matrix of op
    indices: the distinct row index of each entry and one entry of each distinct row.
    Without ``merge`` every entry is its own row."""
    batch, columns = codes.shape
    everyone = torch.arange(batch, device=codes.device)
    if not merge:
        return everyone, everyone
    if columns == 0:
        return torch.zeros_like(everyone), everyone[:1]
    if columns * math.log2(num_ops) < 62:
        # One integer per row (base num_ops digits) lets a 1-D unique replace the slower unique over rows.
        digits = num_ops ** torch.arange(columns, device=codes.device)
        distinct, inverse = torch.unique((codes * digits).sum(dim=1), return_inverse=True)
    else:
        distinct, inverse = torch.unique(codes, dim=0, return_inverse=True)
    # The first member of each distinct row (any would do: they agree on every code).
    representatives = torch.full((distinct.shape[0],), batch, dtype=torch.long, device=codes.device)
    representatives.scatter_reduce_(0, inverse, everyone, reduce="amin")
    return inverse, representatives


class NasBench201FlowEmbedder(ArchEmbedder):
    """GATES embedding of NAS-Bench-201 op matrices; ``out_dim = gcn_out_dims[-1]``."""

    NAME = "nb201-flow"

    #: Whether architectures share the rows of equal node states (see :class:`CellGraph`).
    #: False computes every node of every architecture, for comparison.
    merge_rows = True

    def __init__(
        self,
        search_space=None,
        op_embedding_dim=48,
        node_embedding_dim=48,
        hid_dim=96,
        gcn_out_dims=(128, 128),
        share_op_attention=False,
        gcn_kwargs=None,
        use_bn=False,
        use_final_only=False,
        share_self_op_emb=False,
        dropout=0.0,
        num_op_choices=5,
        num_vertices=4,
        schedule_cfg=None,
    ):
        super().__init__(search_space)
        if share_op_attention:
            raise ValueError("share_op_attention is not supported (aw_nas built but never applied it)")
        if share_self_op_emb:
            raise ValueError("share_self_op_emb is not supported; use gcn_kwargs.plus_I for a self loop")
        if schedule_cfg:
            raise ValueError("schedule_cfg is not supported by nb201-flow")
        if search_space is not None:
            num_op_choices = search_space.num_op_choices
            num_vertices = search_space.num_vertices

        self.num_vertices = num_vertices
        self.use_final_only = use_final_only
        self.dropout = dropout
        self.out_dim = gcn_out_dims[-1]

        self.op_emb = nn.Embedding(num_op_choices, op_embedding_dim)
        self.input_node_emb = nn.Embedding(1, node_embedding_dim)
        self.x_hidden = nn.Linear(node_embedding_dim, hid_dim)
        dims = [hid_dim, *gcn_out_dims]
        self.gcns = nn.ModuleList(
            DenseGraphSimpleOpEdgeFlow(dims[i], dims[i + 1], op_embedding_dim, **(gcn_kwargs or {}))
            for i in range(len(gcn_out_dims))
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(num_vertices) for _ in gcn_out_dims) if use_bn else None

    def initial_features(self):
        """Return ``(V, hid)`` features shared by every architecture: node 0 gets the input
        embedding, the others a fixed zero vector, then ``x_hidden``."""
        weight = self.input_node_emb.weight
        other = torch.zeros(self.num_vertices - 1, weight.shape[-1], device=weight.device, dtype=weight.dtype)
        nodes = torch.cat([weight, other], dim=0)  # (V, node_dim)
        return self.x_hidden(nodes)

    def forward(self, adjacency):
        """Embed a ``(B, V, V)`` long tensor of op matrices as ``(B, out_dim)``."""
        self._check_input(adjacency)

        # Dropout and batch normalisation treat every architecture separately, so rows
        # are shared between architectures only when neither is active.
        merge = self.merge_rows and self.bns is None and not (self.training and self.dropout > 0)
        graph = CellGraph(adjacency, self.op_emb.num_embeddings, merge)
        features = self.initial_features()[graph.node_of_row]  # (R, hid)
        last = len(self.gcns) - 1
        for index, gcn in enumerate(self.gcns):
            features = gcn(features, graph, self.op_emb.weight)  # (R, out)
            if self.bns is not None:
                features = self._batch_norm(index, features, graph)
            if index != last:
                features = F.relu(features)
            features = F.dropout(features, self.dropout, self.training)

        if self.use_final_only:
            return features[graph.arch_rows[-1]]  # (B, out), the output node
        readout = [features[rows] for rows in graph.arch_rows[1:]]
        return torch.stack(readout).mean(dim=0)  # (B, out), mean over non-input nodes

    def _check_input(self, adjacency):
        """Raise ValueError unless ``adjacency`` is a ``(B, V, V)`` long tensor (op ranges
        are checked by :class:`CellGraph`)."""
        vertices = self.num_vertices
        if adjacency.dtype != torch.long:
            raise ValueError(f"nb201-flow expects a long tensor of op indices, got dtype {adjacency.dtype}")
        if adjacency.dim() != 3 or tuple(adjacency.shape[1:]) != (vertices, vertices):
            raise ValueError(
                f"nb201-flow expects op matrices of shape (B, {vertices}, {vertices}), got {tuple(adjacency.shape)}"
            )

    def _batch_norm(self, index, features, graph):
        """Apply BatchNorm1d with nodes as channels. BN turns merging off, so rows are node-major."""
        grid = features.reshape(graph.num_nodes, graph.batch_size, features.shape[-1]).transpose(0, 1)  # (B, V, out)
        return self.bns[index](grid).transpose(0, 1).reshape(graph.num_rows, features.shape[-1])
