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
    """One GATES layer over dense op-index adjacency matrices (ops on edges)."""

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

    def _is_residual(self, node, num_nodes):
        if self.residual_only is None:
            return True
        if self.reverse:
            return node >= num_nodes - self.residual_only
        return node < self.residual_only

    def forward(self, features, edges, op_table):
        """Update node features.

        Args:
            features: ``(B, V, in)`` node features, or ``(V, in)`` shared by the batch.
            edges: an :class:`EdgeList` of the batch.
            op_table: ``(P, op_dim)`` op embeddings.
        """
        # One large matmul instead of B small ones (matters under vmap).
        support = (features.reshape(-1, features.shape[-1]) @ self.weight).reshape(*features.shape[:-1], -1)
        support = support.expand(edges.batch_size, edges.num_nodes, -1)  # (B, V, out), a view
        gates = edges.one_hot.reshape(-1, edges.num_ops) @ self.gate_table(op_table)  # (B*E, out)
        gates = gates.reshape(edges.batch_size, edges.count, -1)  # (B, E, out)
        self_gate = None
        if self.self_op_emb is not None:
            self_gate = self.gate_function(self.op_attention(self.self_op_emb)) * self.attn_scale_factor

        outputs = []
        for node in range(edges.num_nodes):
            # Edges into `node` are contiguous and come from nodes 0..node-1 in order, so
            # both operands are views: no per-edge copy of the support is made.
            first = node * (node - 1) // 2
            message = (gates[:, first:first + node] * support[:, :node]).sum(dim=1)  # (B, out)
            if self_gate is not None:
                message = message + self_gate * support[:, node]
            if self.aggregate_op is not None:
                message = self.aggregate_op(message)
            if self._is_residual(node, edges.num_nodes):
                message = message + support[:, node]
            if self.bias is not None:
                message = message + self.bias
            outputs.append(message)
        return torch.stack(outputs, dim=1)  # (B, V, out)


class EdgeList:
    """The candidate edges ``j -> i`` (j < i) of a batch of op matrices, in row-major
    lower-triangular order: (1,0), (2,0), (2,1), (3,0), ...

    Attributes:
        one_hot: ``(B, E, P)`` float one-hot op of each edge.
    """

    def __init__(self, adjacency, num_ops):
        nodes = adjacency.shape[-1]
        rows, cols = torch.tril_indices(nodes, nodes, offset=-1, device=adjacency.device)
        self.batch_size = adjacency.shape[0]
        self.num_nodes = nodes
        self.num_ops = num_ops
        self.count = rows.numel()
        self.one_hot = F.one_hot(adjacency[:, rows, cols], num_ops).float()  # (B, E, P)


class NasBench201FlowEmbedder(ArchEmbedder):
    """GATES embedding of NAS-Bench-201 op matrices; ``out_dim = gcn_out_dims[-1]``."""

    NAME = "nb201-flow"

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
        other = torch.zeros(
            self.num_vertices - 1, self.input_node_emb.embedding_dim, device=self.input_node_emb.weight.device
        )
        nodes = torch.cat([self.input_node_emb.weight, other], dim=0)  # (V, node_dim)
        return self.x_hidden(nodes)

    def forward(self, adjacency):
        """Embed a ``(B, V, V)`` long tensor of op matrices as ``(B, out_dim)``."""
        features = self.initial_features()
        edges = EdgeList(adjacency, self.op_emb.num_embeddings)
        last = len(self.gcns) - 1
        for index, gcn in enumerate(self.gcns):
            features = gcn(features, edges, self.op_emb.weight)
            if self.bns is not None:
                features = self.bns[index](features)
            if index != last:
                features = F.relu(features)
            features = F.dropout(features, self.dropout, self.training)

        if self.use_final_only:
            return features[:, -1]  # (B, out), the output node
        return features[:, 1:].mean(dim=1)  # (B, out), mean over non-input nodes
