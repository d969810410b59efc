"""LSTM encoder of DARTS-style cells (``nb301-lstm``).

The sequence is the 16 input decisions of an ``nb301`` arch: the 8 entries of the normal
cell, then the 8 of the reduce cell. Step t is the concatenation of the embedding of its
source node (one table row per cell type and node, so normal and reduce sources differ)
and the embedding of its op. Before embedding, the two inputs of each node are put in a
fixed order (by source, then op), so that archs with the same
:meth:`~dele.spaces.nb301.NasBench301SearchSpace.canonical_key` get the same embedding.
"""

import torch
from torch import nn

from dele.embedders.base import ArchEmbedder
from dele.embedders.lstm import SequenceLSTM


def sort_node_inputs(sources, ops, num_ops):
    """Order the two inputs of every node by ``(source, op)``.

    Args:
        sources, ops: ``(B, G, E)`` long tensors; entries ``2k, 2k + 1`` feed one node.
    Returns:
        The reordered ``sources`` and ``ops``, same shape.
    """
    batch, cells, entries = sources.shape
    sources = sources.reshape(batch, cells, entries // 2, 2)
    ops = ops.reshape(batch, cells, entries // 2, 2)
    keys = sources * num_ops + ops
    swap = (keys[..., 0] > keys[..., 1]).unsqueeze(-1)  # (B, G, E/2, 1)
    sources = torch.where(swap, sources.flip(-1), sources)
    ops = torch.where(swap, ops.flip(-1), ops)
    return sources.reshape(batch, cells, entries), ops.reshape(batch, cells, entries)


class NasBench301LSTMEmbedder(ArchEmbedder):
    """LSTM over the (source node, op) decisions of both cells of an ``nb301`` arch.

    Args:
        num_hid: LSTM hidden size, which is ``out_dim``.
        emb_hid: size of the node embedding and of the op embedding; a step's input has
            ``2 * emb_hid`` features.
        num_layers: LSTM layers; ``dropout`` applies between them.
        use_mean, use_hid: readout as in ``nb201-lstm``: the final hidden state of the
            top layer (``use_hid``), the mean of the outputs over steps (``use_mean``),
            else the last step's output.
    """

    NAME = "nb301-lstm"

    def __init__(
        self,
        search_space=None,
        num_hid=100,
        emb_hid=100,
        num_layers=1,
        use_mean=False,
        use_hid=False,
        dropout=0.0,
        num_cell_groups=2,
        num_nodes=6,
        num_op_choices=7,
        schedule_cfg=None,
    ):
        super().__init__(search_space)
        if schedule_cfg:
            raise ValueError("schedule_cfg is not supported by nb301-lstm")
        if search_space is not None:
            if not hasattr(search_space, "num_cell_groups"):
                raise ValueError(f"nb301-lstm needs a cell space such as nb301, got {search_space.NAME!r}")
            num_cell_groups = search_space.num_cell_groups
            num_nodes = search_space.num_nodes
            num_op_choices = search_space.num_op_choices
        self.num_nodes = num_nodes
        self.num_op_choices = num_op_choices
        self.use_mean = use_mean
        self.use_hid = use_hid
        self.out_dim = num_hid

        self.node_emb = nn.Embedding(num_cell_groups * num_nodes, emb_hid)
        self.op_emb = nn.Embedding(num_op_choices, emb_hid)
        self.rnn = SequenceLSTM(2 * emb_hid, num_hid, num_layers, dropout)
        self.register_buffer("cell_offsets", torch.arange(num_cell_groups) * num_nodes, persistent=False)

    def forward(self, archs):
        """Embed a ``(B, G, 2, E)`` long tensor (per cell: source nodes, ops) as ``(B, num_hid)``."""
        sources, ops = sort_node_inputs(archs[:, :, 0], archs[:, :, 1], self.num_op_choices)  # (B, G, E)
        nodes = sources + self.cell_offsets.unsqueeze(-1)  # (B, G, E): rows of the node table
        steps = torch.cat([self.node_emb(nodes), self.op_emb(ops)], dim=-1)  # (B, G, E, 2 * emb_hid)
        steps = steps.reshape(archs.shape[0], -1, steps.shape[-1])  # (B, G * E, 2 * emb_hid)
        outputs, finals = self.rnn(steps)  # (B, T, H), (L, B, H)
        if self.use_hid:
            return finals[-1]
        if self.use_mean:
            return outputs.mean(dim=1)
        return outputs[:, -1]
