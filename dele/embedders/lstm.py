"""LSTM sequence encoders: a vmap-friendly LSTM and the NAS-Bench-201 ``nb201-lstm``."""

import math

import torch
from torch import nn

from dele.embedders.base import ArchEmbedder
from dele.spaces.nb201 import EDGE_COLS, EDGE_ROWS


class SequenceLSTM(nn.Module):
    """A batch-first multi-layer LSTM written with plain tensor ops.

    It computes what ``torch.nn.LSTM`` computes (same gate order i, f, g, o, same
    parameter names and uniform initialisation) but, unlike the fused kernel, it can run
    inside ``torch.func.vmap``, so that several experts are batched into one call.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, dropout=0.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            size_in = input_size if layer == 0 else hidden_size
            for name, shape in (
                (f"weight_ih_l{layer}", (4 * hidden_size, size_in)),
                (f"weight_hh_l{layer}", (4 * hidden_size, hidden_size)),
                (f"bias_ih_l{layer}", (4 * hidden_size,)),
                (f"bias_hh_l{layer}", (4 * hidden_size,)),
            ):
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def _run_layer(self, inputs, layer):
        weight_ih = getattr(self, f"weight_ih_l{layer}")
        weight_hh = getattr(self, f"weight_hh_l{layer}")
        bias = getattr(self, f"bias_ih_l{layer}") + getattr(self, f"bias_hh_l{layer}")

        projected = inputs @ weight_ih.T + bias  # (B, T, 4H), input part of all steps at once
        batch = inputs.shape[0]
        hidden = inputs.new_zeros(batch, self.hidden_size)
        cell = inputs.new_zeros(batch, self.hidden_size)
        outputs = []
        for step in range(inputs.shape[1]):
            gates = projected[:, step] + hidden @ weight_hh.T  # (B, 4H)
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=-1)
            cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
            hidden = torch.sigmoid(out_gate) * torch.tanh(cell)
            outputs.append(hidden)
        return torch.stack(outputs, dim=1), hidden  # (B, T, H), (B, H)

    def forward(self, inputs):
        """Run ``(B, T, input_size)`` inputs; return top-layer outputs ``(B, T, H)`` and
        the final hidden state of every layer ``(num_layers, B, H)``."""
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                inputs = nn.functional.dropout(inputs, self.dropout, self.training)
            inputs, final = self._run_layer(inputs, layer)
            finals.append(final)
        return inputs, torch.stack(finals)


class NasBench201LSTMEmbedder(ArchEmbedder):
    """LSTM over the 6 edge ops of a NAS-Bench-201 cell, in canonical edge order.

    Output: with ``use_hid`` the final hidden state of the top LSTM layer. aw_nas took the
    first layer's, which differs when ``num_layers > 1``. Else with ``use_mean`` the mean
    of the top-layer outputs over steps; else the last step's output.
    """

    NAME = "nb201-lstm"

    def __init__(
        self,
        search_space=None,
        num_hid=100,
        emb_hid=100,
        num_layers=1,
        use_mean=False,
        use_hid=False,
        dropout=0.0,
        num_op_choices=5,
        schedule_cfg=None,
    ):
        super().__init__(search_space)
        if schedule_cfg:
            raise ValueError("schedule_cfg is not supported by nb201-lstm")
        if search_space is not None:
            num_op_choices = search_space.num_op_choices
        self.use_mean = use_mean
        self.use_hid = use_hid
        self.out_dim = num_hid
        self.op_emb = nn.Embedding(num_op_choices, emb_hid)
        self.rnn = SequenceLSTM(emb_hid, num_hid, num_layers, dropout)
        self.register_buffer("edge_rows", torch.as_tensor(EDGE_ROWS), persistent=False)
        self.register_buffer("edge_cols", torch.as_tensor(EDGE_COLS), persistent=False)

    def forward(self, adjacency):
        """Embed a ``(B, 4, 4)`` long tensor of op matrices as ``(B, num_hid)``."""
        sequence = adjacency[:, self.edge_rows, self.edge_cols]  # (B, 6) op indices
        outputs, finals = self.rnn(self.op_emb(sequence))  # (B, 6, H), (L, B, H)
        if self.use_hid:
            return finals[-1]
        if self.use_mean:
            return outputs.mean(dim=1)
        return outputs[:, -1]
