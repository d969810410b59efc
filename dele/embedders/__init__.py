"""Architecture embedders. Importing this package registers the built-in ones."""

from dele.embedders.base import ArchEmbedder, build_embedder
from dele.embedders.cell_gates import CellSSFlowEmbedder, DenseGraphOpEdgeFlow
from dele.embedders.cell_lstm import NasBench301LSTMEmbedder
from dele.embedders.gates import DenseGraphSimpleOpEdgeFlow, NasBench201FlowEmbedder
from dele.embedders.lstm import NasBench201LSTMEmbedder, SequenceLSTM

__all__ = [
    "ArchEmbedder",
    "build_embedder",
    "CellSSFlowEmbedder",
    "DenseGraphOpEdgeFlow",
    "NasBench301LSTMEmbedder",
    "DenseGraphSimpleOpEdgeFlow",
    "NasBench201FlowEmbedder",
    "NasBench201LSTMEmbedder",
    "SequenceLSTM",
]
