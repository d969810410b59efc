"""The NAS-Bench-201 cell space (``nasbench-201``).

An architecture is a 4x4 integer matrix whose strict lower triangle contains op indices:
``arch[i, j]`` (i > j) is the op on the edge from node j to node i, node 0 being the cell
input and node 3 its output; index 0 ("none") means no edge. The op order and the matrix
layout follow aw_nas's ``nasbench-201`` space; the string form is the NAS-Bench-201 one,
e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|``.
"""

import itertools
import numbers
import re

import numpy as np
import torch

from dele.spaces.base import SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
# Lower-triangular (destination, source) pairs in aw_nas's canonical edge order:
# (1,0), (2,0), (2,1), (3,0), (3,1), (3,2).
EDGE_ROWS, EDGE_COLS = np.tril_indices(NUM_NODES, -1)
NUM_EDGES = len(EDGE_ROWS)
NUM_ARCHS = len(OPS) ** NUM_EDGES

# NASLib's 6-tuple lists edges (1->2), (1->3), (1->4), (2->3), (2->4), (3->4) with 1-based
# nodes, and numbers ops 0 skip_connect, 1 none, 2 nor_conv_3x3, 3 nor_conv_1x1,
# 4 avg_pool_3x3 (NASLib's nasbench201 encoding).
NASLIB_EDGES = ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2))
NASLIB_OP_TO_INDEX = (1, 0, 3, 2, 4)
INDEX_TO_NASLIB_OP = tuple(NASLIB_OP_TO_INDEX.index(i) for i in range(len(OPS)))

_SEGMENT = re.compile(r"^\|(?:[a-z0-9_]+~\d+\|)+$")


def edges_of(arch):
    """Return the 6 op indices of ``arch`` in canonical edge order."""
    return tuple(int(op) for op in np.asarray(arch)[EDGE_ROWS, EDGE_COLS])


def matrix_from_edges(ops):
    """Build the 4x4 matrix from 6 op indices in canonical edge order."""
    matrix = np.zeros((NUM_NODES, NUM_NODES), dtype=np.int64)
    matrix[EDGE_ROWS, EDGE_COLS] = ops
    return matrix


def matrix_to_string(arch):
    """Write the NAS-Bench-201 string of a matrix."""
    arch = np.asarray(arch)
    segments = []
    for node in range(1, NUM_NODES):
        ops = [f"{OPS[int(arch[node, source])]}~{source}" for source in range(node)]
        segments.append("|" + "|".join(ops) + "|")
    return "+".join(segments)


def string_to_matrix(text):
    """Parse a NAS-Bench-201 string into a matrix; raise ValueError when malformed."""
    segments = text.strip().split("+")
    if len(segments) != NUM_NODES - 1:
        raise ValueError(f"invalid NAS-Bench-201 string {text!r}: expected 3 '+'-separated nodes")

    matrix = np.zeros((NUM_NODES, NUM_NODES), dtype=np.int64)
    for node, segment in enumerate(segments, start=1):
        if not _SEGMENT.match(segment):
            raise ValueError(f"invalid NAS-Bench-201 string {text!r}: malformed node {segment!r}")
        entries = [entry.split("~") for entry in segment.strip("|").split("|")]
        for op, _ in entries:
            if op not in OPS:
                raise ValueError(f"invalid NAS-Bench-201 string {text!r}: unknown op {op!r}")
        sources = [int(source) for _, source in entries]
        if sorted(sources) != list(range(node)):
            raise ValueError(
                f"invalid NAS-Bench-201 string {text!r}: node {node} must have inputs "
                f"~0..~{node - 1}, found {sources}"
            )
        for op, source in entries:
            matrix[node, int(source)] = OPS.index(op)
    return matrix


def _is_op_index(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < len(OPS)


def naslib_to_matrix(ops):
    """Convert NASLib's 6-tuple (or its string, e.g. ``"(0, 2, 3, 2, 3, 1)"``) to a matrix."""
    if isinstance(ops, str):
        try:
            ops = [int(op) for op in ops.strip().strip("()[]").split(",")]
        except ValueError as error:
            raise ValueError(f"invalid NASLib tuple {ops!r}: {error}") from None
    ops = list(ops)
    if len(ops) != NUM_EDGES or any(not _is_op_index(op) for op in ops):
        raise ValueError(f"invalid NASLib tuple {ops!r}: expected 6 op indices in 0..4")

    matrix = np.zeros((NUM_NODES, NUM_NODES), dtype=np.int64)
    for (dest, source), op in zip(NASLIB_EDGES, ops):
        matrix[dest, source] = NASLIB_OP_TO_INDEX[op]
    return matrix


def matrix_to_naslib(arch):
    """Convert a matrix to NASLib's 6-tuple."""
    arch = np.asarray(arch)
    return tuple(INDEX_TO_NASLIB_OP[int(arch[dest, source])] for dest, source in NASLIB_EDGES)


def arch_index(arch):
    """Return the base-5 index (0..15624) of a matrix's canonical edge ops."""
    index = 0
    for op in edges_of(arch):
        index = index * len(OPS) + op
    return index


def has_input_output_path(arch):
    """Return True if some path of non-"none" edges joins the input and the output node."""
    arch = np.asarray(arch)
    reachable = {0}
    for node in range(1, NUM_NODES):
        if any(arch[node, source] != 0 and source in reachable for source in range(node)):
            reachable.add(node)
    return NUM_NODES - 1 in reachable


class NasBench201SearchSpace(SearchSpace):
    """The NAS-Bench-201 space: 5 ops on 6 edges, 15,625 architectures."""

    NAME = "nasbench-201"

    def __init__(self, num_layers=17, vertices=NUM_NODES, ops_choices=OPS, load_nasbench=False):
        if vertices != NUM_NODES or tuple(ops_choices) != OPS:
            raise ValueError(
                f"nasbench-201 supports vertices={NUM_NODES} and ops_choices={list(OPS)}, "
                f"got vertices={vertices}, ops_choices={list(ops_choices)}"
            )
        # Accepted for config compatibility with aw_nas; the space never loads its API.
        self.num_layers = num_layers
        self.load_nasbench = load_nasbench
        self.ops_choices = OPS
        self.num_vertices = NUM_NODES
        self.num_op_choices = len(OPS)
        self.num_possible_edges = NUM_EDGES

    def validate(self, arch):
        if isinstance(arch, str):
            return string_to_matrix(arch)
        try:
            raw = np.asarray(arch)
            matrix = raw.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"invalid nasbench-201 arch {arch!r}: not a numeric 4x4 matrix") from None
        if raw.dtype.kind not in "iuf":  # digit strings and booleans are not op indices
            raise ValueError(f"invalid nasbench-201 arch {arch!r}: entries must be numbers, got {raw.dtype}")
        if matrix.shape != (NUM_NODES, NUM_NODES):
            raise ValueError(f"invalid nasbench-201 arch: shape {matrix.shape}, expected (4, 4)")
        if not np.all(np.isfinite(matrix)) or np.any(matrix != np.round(matrix)):
            raise ValueError(f"invalid nasbench-201 arch: non-integer entries in {matrix.tolist()}")
        if np.any(np.triu(matrix) != 0):
            raise ValueError(
                f"invalid nasbench-201 arch: diagonal and upper triangle must be 0, got {matrix.tolist()}"
            )
        if matrix.min() < 0 or matrix.max() >= len(OPS):
            raise ValueError(f"invalid nasbench-201 arch: op indices outside 0..4 in {matrix.tolist()}")
        return matrix.astype(np.int64)

    def canonical_key(self, arch):
        return edges_of(self.validate(arch))

    def random_sample(self, rng):
        return matrix_from_edges(rng.integers(0, len(OPS), size=NUM_EDGES))

    def mutate(self, arch, rng):
        ops = list(edges_of(self.validate(arch)))
        edge = int(rng.integers(NUM_EDGES))
        choices = [op for op in range(len(OPS)) if op != ops[edge]]
        ops[edge] = choices[int(rng.integers(len(choices)))]
        return matrix_from_edges(ops)

    def genotype(self, arch):
        return matrix_to_string(self.validate(arch))

    def from_genotype(self, text):
        return string_to_matrix(text)

    def enumerate(self):
        """Yield all 15,625 matrices in base-5 index order."""
        for ops in itertools.product(range(len(OPS)), repeat=NUM_EDGES):
            yield matrix_from_edges(ops)

    def encode(self, archs):
        """Stack matrices as a ``(N, 4, 4)`` long tensor."""
        if len(archs) == 0:
            return torch.zeros((0, NUM_NODES, NUM_NODES), dtype=torch.long)
        return torch.as_tensor(np.stack([self.validate(arch) for arch in archs]), dtype=torch.long)

    def to_pickle(self, arch):
        # The original pickles hold float matrices.
        return self.validate(arch).astype(np.float64)
