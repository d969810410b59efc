"""aw_nas plugin: LSTM embedders of NDS ResNet (``resnet_lstm``) and ResNeXt-A
(``resnexta_lstm``) architectures.

Install it by linking this folder into the plugin directory, e.g.
``ln -s "$PWD/plugin" "$AWNAS_HOME/plugins/dele"`` (default home ``~/awnas``). The file
is loaded by aw_nas, or by dele's :func:`dele.registry.load_plugins`, as an independent
module; it is not part of the ``dele`` package.

An NDS arch has one value per stage (3 stages) for each decision kind: depth and width,
and for ResNeXt-A also bottleneck multiplier and number of groups. Step s of the sequence
is the concatenation of the embeddings of stage s's values. A batch-first LSTM reads the 3
steps; each step's output is L2-normalised, the steps are averaged and the mean is
L2-normalised again, so ``out_dim = hidden_size``.

Two runtimes are supported:

* with aw_nas installed, the embedders derive from aw_nas's ``ArchEmbedder``, take a list
  of archs (ordered dicts, values read by position) and use ``torch.nn.LSTM``;
* otherwise they derive from dele's ``ArchEmbedder``, take the float value tensor of the
  ``nds`` space's ``encode`` and use dele's ``SequenceLSTM``, which runs under
  ``torch.func.vmap`` so that the embedders can be ensemble experts.
"""

import torch
import torch.nn.functional as F
from torch import nn

try:
    from aw_nas.evaluator.arch_network import ArchEmbedder

    AWNAS_RUNTIME = True
except ImportError:
    from dele.embedders.base import ArchEmbedder
    from dele.embedders.lstm import SequenceLSTM
    from dele.spaces.nds import FAMILY_CHOICES

    AWNAS_RUNTIME = False

NUM_STAGES = 3


class _StageSequenceEmbedder:
    """Shared code of the NDS embedders. A subclass sets ``FAMILY`` and ``KINDS``, the
    ``(kind, embedding attribute)`` pairs in decision order."""

    FAMILY = None
    KINDS = ()

    def _build(self, search_space, choices, embedding_sizes, hidden_size, dropout_rate, num_layers, schedule_cfg):
        """Create the embeddings and the LSTM. ``choices`` and ``embedding_sizes`` follow ``KINDS``."""
        if AWNAS_RUNTIME:
            ArchEmbedder.__init__(self, schedule_cfg)
            self.search_space = search_space
        else:
            if schedule_cfg:
                raise ValueError(f"schedule_cfg is not supported by {self.NAME}")
            ArchEmbedder.__init__(self, search_space)
            self._check_choices(choices)

        self.choices = [list(values) for values in choices]
        self.hidden_size = hidden_size
        self.out_dim = hidden_size
        for (_, attribute), values, size in zip(self.KINDS, choices, embedding_sizes):
            setattr(self, attribute, nn.Embedding(len(values), size))
        input_size = sum(embedding_sizes)
        if AWNAS_RUNTIME:
            self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout_rate)
        else:
            self.lstm = SequenceLSTM(input_size, hidden_size, num_layers, dropout_rate)
            for index, values in enumerate(choices):
                self.register_buffer(f"choice_values_{index}", torch.tensor(values, dtype=torch.float32),
                                     persistent=False)

    def _check_choices(self, choices):
        """Raise ValueError if a choice list lacks a value that the ``nds`` space accepts."""
        allowed = FAMILY_CHOICES[self.FAMILY]
        for (kind, attribute), values in zip(self.KINDS, choices):
            missing = [value for value in allowed[kind] if value not in values]
            if missing:
                raise ValueError(
                    f"{self.NAME}: the {kind} choice list {list(values)} lacks {missing}, which the nds space "
                    f"accepts for this family; list every value of {list(allowed[kind])}"
                )

    def _embed_indices(self, indices):
        """Embed ``(B, K, stages)`` long indices as ``(B, stages, sum of sizes)`` step inputs."""
        parts = [getattr(self, attribute)(indices[:, k]) for k, (_, attribute) in enumerate(self.KINDS)]
        return torch.cat(parts, dim=-1)

    def _embed_values(self, values):
        """Embed ``(B, K * stages)`` float values by matching them against the choice lists.

        A value in no list gives NaN features, because a pure tensor function cannot raise.
        """
        batch = values.shape[0]
        values = values.reshape(batch, len(self.KINDS), NUM_STAGES)  # (B, K, stages)
        parts = []
        for k, (_, attribute) in enumerate(self.KINDS):
            table = getattr(self, attribute).weight  # (C_k, size_k)
            match = values[:, k].unsqueeze(-1) == getattr(self, f"choice_values_{k}")  # (B, stages, C_k)
            embedded = match.to(table.dtype) @ table  # (B, stages, size_k)
            known = match.any(dim=-1, keepdim=True)
            parts.append(torch.where(known, embedded, torch.full_like(embedded, float("nan"))))
        return torch.cat(parts, dim=-1)

    def _arch_indices(self, archs):
        """Return ``(B, K, stages)`` choice indices of aw_nas archs (values read by position)."""
        rows = []
        for arch in archs:
            values = list(arch.values())
            if len(values) != len(self.KINDS) * NUM_STAGES:
                raise ValueError(f"{self.NAME} expects {len(self.KINDS) * NUM_STAGES} decisions, got {len(values)}")
            rows.append([
                [self.choices[k].index(value) for value in values[k * NUM_STAGES:(k + 1) * NUM_STAGES]]
                for k in range(len(self.KINDS))
            ])
        return torch.tensor(rows, dtype=torch.long, device=self.lstm.weight_ih_l0.device)

    def forward(self, archs):
        """Embed archs as ``(B, hidden_size)``: a list of ordered dicts under aw_nas, else
        the ``(B, D)`` float tensor of the nds space's ``encode``."""
        if AWNAS_RUNTIME:
            steps = self._embed_indices(self._arch_indices(archs))
        else:
            expected = len(self.KINDS) * NUM_STAGES
            if archs.dim() != 2 or archs.shape[-1] != expected:
                raise ValueError(f"{self.NAME} expects a (B, {expected}) value tensor, got shape {tuple(archs.shape)}")
            steps = self._embed_values(archs)
        outputs, _ = self.lstm(steps)  # (B, stages, hidden)
        outputs = F.normalize(outputs, dim=-1)
        return F.normalize(outputs.mean(dim=1), dim=-1)


class ResNetLSTMEmbedder(_StageSequenceEmbedder, ArchEmbedder):
    """NDS ResNet: per stage, depth and width embeddings."""

    NAME = "resnet_lstm"
    FAMILY = "resnet"
    KINDS = (("depths", "depth_embedding"), ("widths", "width_embedding"))

    def __init__(self, search_space=None, *, depth_choices, width_choices, depth_embedding_size,
                 width_embedding_size, hidden_size, dropout_rate=0.0, num_layers=1, schedule_cfg=None):
        self._build(
            search_space,
            (depth_choices, width_choices),
            (depth_embedding_size, width_embedding_size),
            hidden_size, dropout_rate, num_layers, schedule_cfg,
        )


class ResNeXtALSTMEmbedder(_StageSequenceEmbedder, ArchEmbedder):
    """NDS ResNeXt-A: per stage, depth, width, bottleneck multiplier and groups embeddings."""

    NAME = "resnexta_lstm"
    FAMILY = "resnexta"
    KINDS = (
        ("depths", "depth_embedding"),
        ("widths", "width_embedding"),
        ("bot_muls", "bot_mul_embedding"),
        ("num_groups", "num_group_embedding"),
    )

    def __init__(self, search_space=None, *, depth_choices, width_choices, bot_mul_choices, num_group_choices,
                 depth_embedding_size, width_embedding_size, bot_mul_embedding_size, num_group_embedding_size,
                 hidden_size, dropout_rate=0.0, num_layers=1, schedule_cfg=None):
        self._build(
            search_space,
            (depth_choices, width_choices, bot_mul_choices, num_group_choices),
            (depth_embedding_size, width_embedding_size, bot_mul_embedding_size, num_group_embedding_size),
            hidden_size, dropout_rate, num_layers, schedule_cfg,
        )
