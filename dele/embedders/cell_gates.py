"""GATES encoder for DARTS-style cell spaces (``cellss-flow``), e.g. ``nb301``.

Each cell type (normal, reduce) is a graph of ``V = 2 + steps`` nodes in which every
intermediate node has exactly two inputs. One layer computes, for node i with inputs
``(j_1, o_1)`` and ``(j_2, o_2)`` (source node, op),

    Y'_i = mean_k sigmoid(U e(o_k) + c) * (Y_{j_k} W)  +  residual_i,

where ``e`` is the op embedding; input nodes receive no messages. The readout averages the
intermediate nodes of each cell and concatenates the cells, so ``out_dim = cells *
gcn_out_dims[-1]`` (``cells * steps * gcn_out_dims[-1]`` with ``final_concat``).

Key names and defaults follow aw_nas's ``cellss-flow`` embedder, which differ from
``nb201-flow``'s. Architectures arrive as the ``(B, cells, 2, 2 * steps)`` long tensor of
:meth:`dele.spaces.nb301.NasBench301SearchSpace.encode`; all archs of a batch are processed
at once with gathers, so the module also runs under ``torch.func.vmap``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from dele.embedders.base import ArchEmbedder

INPUTS_PER_NODE = 2


class DenseGraphOpEdgeFlow(nn.Module):
    """One GATES layer over cells whose nodes each have two ``(source, op)`` inputs.

    Args:
        in_features, out_features: node feature sizes.
        op_emb_dim: op embedding size.
        has_attention: gate messages with ``sigmoid(Linear(op embedding))``; without it the
            op embedding itself is the gate (needs ``op_emb_dim == out_features``).
        plus_I: add a self loop gated by a self-op embedding to every node's first input.
        share_self_op_emb: with ``plus_I``, use the embedder's shared self-op embedding
            instead of one of this layer.
        bias: add a learned bias to the output.
        residual_only: keep ``Y_i W`` for the first ``residual_only`` nodes (the last
            ones with ``reverse``); None keeps it for every node.
        use_sum: sum a node's two messages instead of averaging them.
        has_aggregate_op: apply a Linear layer to the aggregated messages.
    """

    def __init__(
        self,
        in_features,
        out_features,
        op_emb_dim,
        *,
        has_attention=True,
        plus_I=False,
        share_self_op_emb=False,
        normalize=False,
        bias=False,
        residual_only=None,
        use_sum=False,
        concat=None,
        has_aggregate_op=False,
        reverse=False,
    ):
        super().__init__()
        if normalize:
            raise ValueError("gcn_kwargs.normalize is not supported by cellss-flow. Use the embedder's normalize key")
        if concat is not None:
            raise ValueError(f"gcn_kwargs.concat is not supported by cellss-flow, got {concat!r}")
        if not has_attention and op_emb_dim != out_features:
            raise ValueError(
                f"gcn_kwargs.has_attention=False needs op_dim == gcn out dim, got {op_emb_dim} != {out_features}"
            )
        self.plus_I = plus_I
        self.share_self_op_emb = share_self_op_emb
        self.residual_only = residual_only
        self.reverse = reverse
        self.use_sum = use_sum

        bound = 1.0 / math.sqrt(out_features)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.op_attention = nn.Linear(op_emb_dim, out_features) if has_attention else nn.Identity()
        self.aggregate_op = nn.Linear(out_features, out_features) if has_aggregate_op else None
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None
        self.self_op_emb = nn.Parameter(torch.randn(op_emb_dim)) if plus_I and not share_self_op_emb else None

    def _residual_mask(self, num_nodes, device):
        if self.residual_only is None:
            return torch.ones(num_nodes, device=device)
        mask = torch.zeros(num_nodes, device=device)
        if self.reverse:
            mask[num_nodes - self.residual_only:] = 1.0
        else:
            mask[: self.residual_only] = 1.0
        return mask

    def forward(self, features, sources, ops, op_table, shared_self_op_emb=None):
        """Update node features.

        Args:
            features: ``(B, G, V, in)`` node features of G cells, or ``(1, G, V, in)``
                shared by the batch.
            sources, ops: ``(B, G, E)`` long source node and op index of each input
                entry; entries ``2k, 2k + 1`` feed node ``V - E / 2 + k``.
            op_table: ``(P, op_dim)`` op embeddings.
            shared_self_op_emb: ``(op_dim,)`` self-op embedding when ``share_self_op_emb``.
        """
        batch, cells, entries = sources.shape
        num_nodes = features.shape[-2]
        num_inputs = num_nodes - entries // INPUTS_PER_NODE

        support = features @ self.weight  # (B or 1, G, V, out)
        out = support.shape[-1]
        support = support.expand(batch, cells, num_nodes, out)
        gathered = support.gather(2, sources.unsqueeze(-1).expand(batch, cells, entries, out))  # (B, G, E, out)
        gates = torch.sigmoid(self.op_attention(op_table))[ops]  # (B, G, E, out)
        messages = (gates * gathered).reshape(batch, cells, entries // INPUTS_PER_NODE, INPUTS_PER_NODE, out)
        received = messages.sum(dim=3) if self.use_sum else messages.mean(dim=3)  # (B, G, steps, out)
        incoming = torch.cat([received.new_zeros(batch, cells, num_inputs, out), received], dim=2)  # (B, G, V, out)

        if self.plus_I:
            self_op = shared_self_op_emb if self.share_self_op_emb else self.self_op_emb
            self_gate = torch.sigmoid(self.op_attention(self_op))  # (out,)
            # The self loop is one more message on each node's first input.
            scale = 1.0 if self.use_sum else 1.0 / INPUTS_PER_NODE
            incoming = incoming + scale * self_gate * support
        if self.aggregate_op is not None:
            incoming = self.aggregate_op(incoming)

        output = incoming + support * self._residual_mask(num_nodes, support.device).unsqueeze(-1)
        if self.bias is not None:
            output = output + self.bias
        return output


class CellSSFlowEmbedder(ArchEmbedder):
    """GATES embedding of DARTS-style cells (aw_nas ``cellss-flow``).

    Args:
        node_dim, op_dim, hidden_dim: sizes of node embeddings, op embeddings and the
            projected node features fed to the first GCN layer.
        gcn_out_dims: output size of each GCN layer.
        other_node_zero: keep the intermediate nodes' initial embedding fixed at zero
            (default: a zero-initialised, trainable vector per cell type).
        other_node_independent: give every intermediate node its own N(0, 1) embedding.
        gcn_kwargs: keyword options of every :class:`DenseGraphOpEdgeFlow` layer.
        dropout: dropout after every layer.
        normalize: L2-normalise each node's output, and each cell's readout again.
        use_bn: BatchNorm1d over the ``cells * V`` node channels after every layer.
        share_self_op_emb: one self-op embedding for the layers whose ``gcn_kwargs`` set
            ``plus_I`` and ``share_self_op_emb``.
        final_concat: concatenate the intermediate nodes instead of averaging them.
    """

    NAME = "cellss-flow"

    def __init__(
        self,
        search_space=None,
        node_dim=48,
        op_dim=48,
        hidden_dim=48,
        gcn_out_dims=(128, 128),
        other_node_zero=False,
        gcn_kwargs=None,
        dropout=0.0,
        normalize=False,
        use_bn=False,
        other_node_independent=False,
        share_self_op_emb=False,
        final_concat=False,
        num_cell_groups=2,
        num_init_nodes=2,
        num_steps=4,
        num_op_choices=7,
        schedule_cfg=None,
    ):
        super().__init__(search_space)
        if schedule_cfg:
            raise ValueError("schedule_cfg is not supported by cellss-flow")
        if search_space is not None:
            if not hasattr(search_space, "num_cell_groups"):
                raise ValueError(f"cellss-flow needs a cell space such as nb301, got {search_space.NAME!r}")
            num_cell_groups = search_space.num_cell_groups
            num_init_nodes = search_space.num_init_nodes
            num_steps = search_space.num_steps
            num_op_choices = search_space.num_op_choices
        gcn_kwargs = dict(gcn_kwargs or {})
        if gcn_kwargs.get("share_self_op_emb") and not share_self_op_emb:
            raise ValueError("gcn_kwargs.share_self_op_emb needs the embedder's share_self_op_emb: true")

        self.num_cell_groups = num_cell_groups
        self.num_init_nodes = num_init_nodes
        self.num_steps = num_steps
        self.dropout = dropout
        self.normalize = normalize
        self.final_concat = final_concat
        self.other_node_zero = other_node_zero
        self.other_node_independent = other_node_independent
        readout_nodes = num_steps if final_concat else 1
        self.out_dim = num_cell_groups * readout_nodes * gcn_out_dims[-1]

        self.op_emb = nn.Embedding(num_op_choices, op_dim)
        self.input_node_emb = nn.Parameter(torch.randn(num_cell_groups, num_init_nodes, node_dim))
        if other_node_independent:
            self.other_node_emb = nn.Parameter(torch.randn(num_cell_groups, num_steps, node_dim))
        elif other_node_zero:
            self.register_buffer("other_node_emb", torch.zeros(num_cell_groups, 1, node_dim), persistent=False)
        else:
            self.other_node_emb = nn.Parameter(torch.zeros(num_cell_groups, 1, node_dim))
        self.x_hidden = nn.Linear(node_dim, hidden_dim)
        self.self_op_emb = nn.Parameter(torch.randn(op_dim)) if share_self_op_emb else None

        dims = [hidden_dim, *gcn_out_dims]
        self.gcns = nn.ModuleList(
            DenseGraphOpEdgeFlow(dims[i], dims[i + 1], op_dim, **gcn_kwargs) for i in range(len(gcn_out_dims))
        )
        num_channels = num_cell_groups * (num_init_nodes + num_steps)
        self.bns = nn.ModuleList(nn.BatchNorm1d(num_channels) for _ in gcn_out_dims) if use_bn else None

    def initial_features(self):
        """Return ``(1, G, V, hidden)`` features shared by every architecture."""
        other = self.other_node_emb.expand(self.num_cell_groups, self.num_steps, -1)
        nodes = torch.cat([self.input_node_emb, other], dim=1)  # (G, V, node_dim)
        return self.x_hidden(nodes).unsqueeze(0)

    def forward(self, archs):
        """Embed a ``(B, G, 2, E)`` long tensor (per cell: source nodes, ops) as ``(B, out_dim)``."""
        sources, ops = archs[:, :, 0], archs[:, :, 1]  # (B, G, E) each
        batch = archs.shape[0]
        features = self.initial_features()
        last = len(self.gcns) - 1
        for index, gcn in enumerate(self.gcns):
            features = gcn(features, sources, ops, self.op_emb.weight, self.self_op_emb)  # (B, G, V, out)
            if self.bns is not None:
                shape = features.shape
                features = self.bns[index](features.reshape(batch, -1, shape[-1])).reshape(shape)
            if index != last:
                features = F.relu(features)
            features = F.dropout(features, self.dropout, self.training)

        inner = features[:, :, self.num_init_nodes:]  # (B, G, steps, out)
        if self.normalize:
            inner = F.normalize(inner, dim=-1)
        if self.final_concat:
            cells = inner.reshape(batch, self.num_cell_groups, -1)  # (B, G, steps * out)
        else:
            cells = inner.mean(dim=2)  # (B, G, out)
        if self.normalize:
            cells = F.normalize(cells, dim=-1)
        return cells.reshape(batch, -1)  # (B, G * out), normal cell first
