"""The NAS-Bench-301 (DARTS) cell space (``nb301``).

A network stacks two cell types, normal and reduce. Each cell has two input nodes (0 and
1: the outputs of the two previous cells), four intermediate nodes (2..5) and outputs the
concatenation of the intermediate nodes. Each intermediate node sums two ops applied to
two distinct earlier nodes.

An architecture is ``[[nodes, ops], [nodes, ops]]`` (normal cell, then reduce cell), an
array of shape ``(2, 2, 8)``. In each cell, entries ``2k`` and ``2k + 1`` are the two
inputs of node ``k + 2``: ``nodes[e]`` is the source node (``< k + 2``) and ``ops[e]`` the
op index into :data:`OPS`. The layout and op order are those of aw_nas's ``nb301`` space.
The string form is the DARTS genotype, e.g.
``Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ...], normal_concat=[2, 3, 4, 5],
reduce=[...], reduce_concat=[2, 3, 4, 5])``.
"""

import ast
import numbers

import numpy as np
import torch

from dele.spaces.base import SearchSpace

# aw_nas's ``shared_primitives`` order. The space has no "none" op.
OPS = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
)
CELL_NAMES = ("normal", "reduce")
NUM_CELLS = len(CELL_NAMES)
NUM_INPUT_NODES = 2
NUM_STEPS = 4  # intermediate nodes per cell
NUM_NODES = NUM_INPUT_NODES + NUM_STEPS
INPUTS_PER_NODE = 2
NUM_EDGES = NUM_STEPS * INPUTS_PER_NODE
ARCH_SHAPE = (NUM_CELLS, 2, NUM_EDGES)
CONCAT = tuple(range(NUM_INPUT_NODES, NUM_NODES))
# Destination node of each of the 8 entries of a cell.
EDGE_DESTINATIONS = tuple(NUM_INPUT_NODES + edge // INPUTS_PER_NODE for edge in range(NUM_EDGES))

# NASLib numbers the DARTS ops 0 max_pool_3x3, 1 avg_pool_3x3, 2 skip_connect,
# 3 sep_conv_3x3, 4 sep_conv_5x5, 5 dil_conv_3x3, 6 dil_conv_5x5. tests/test_nb301.py checks
# this order against the parameter counts stored in NASLib's zc_nasbench301.json.
# NOTE: the two pooling ops have no weights and equal flop counts, so the data cannot tell
# indices 0 and 1 apart. Their order follows NASLib's op list and is not verified.
NASLIB_OPS = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
NASLIB_OP_TO_INDEX = tuple(OPS.index(name) for name in NASLIB_OPS)
INDEX_TO_NASLIB_OP = tuple(NASLIB_OPS.index(name) for name in OPS)

# Field names of a genotype: DARTS's namedtuple, and aw_nas's, whose entries are
# (op, from, to) triples.
DARTS_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
AWNAS_FIELDS = ("normal_0", "normal_0_concat", "reduce_1", "reduce_1_concat")
GENOTYPE_CALLS = {"Genotype": DARTS_FIELDS, "CNNGenotype": AWNAS_FIELDS}


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_op_index(value):
    return _is_integer(value) and 0 <= value < len(OPS)


def check_cell(nodes, ops, cell_name):
    """Raise ValueError if one cell's ``nodes``/``ops`` rows break the space's rules."""
    for edge, (source, op) in enumerate(zip(nodes, ops)):
        destination = EDGE_DESTINATIONS[edge]
        if not 0 <= source < destination:
            raise ValueError(
                f"invalid nb301 arch: {cell_name} cell, entry {edge}: node {destination} takes input "
                f"from node {source}, expected a node in 0..{destination - 1}"
            )
        if not 0 <= op < len(OPS):
            raise ValueError(
                f"invalid nb301 arch: {cell_name} cell, entry {edge}: op index {op} outside 0..{len(OPS) - 1}"
            )
    for step in range(NUM_STEPS):
        first, second = nodes[2 * step], nodes[2 * step + 1]
        if first == second:
            raise ValueError(
                f"invalid nb301 arch: {cell_name} cell, node {step + NUM_INPUT_NODES} takes both inputs "
                f"from node {first}; its two input nodes must differ"
            )


def check_arch_array(arch):
    """Return ``arch`` as a validated ``(2, 2, 8)`` int64 array, or raise ValueError."""
    try:
        array = np.asarray(arch, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"invalid nb301 arch {arch!r}: not a numeric array of shape (2, 2, 8)") from None
    if array.shape != ARCH_SHAPE:
        raise ValueError(f"invalid nb301 arch: shape {array.shape}, expected (2, 2, 8) = (cells, [nodes, ops], entries)")
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
        raise ValueError(f"invalid nb301 arch: non-integer entries in {array.tolist()}")
    array = array.astype(np.int64)
    for cell, name in enumerate(CELL_NAMES):
        check_cell(array[cell, 0].tolist(), array[cell, 1].tolist(), name)
    return array


def arch_to_genotype(arch):
    """Write the DARTS genotype string of a validated arch."""
    parts = []
    for cell, name in enumerate(CELL_NAMES):
        edges = [(OPS[int(op)], int(source)) for source, op in zip(arch[cell, 0], arch[cell, 1])]
        parts.append(f"{name}={edges!r}, {name}_concat={list(CONCAT)!r}")
    return f"Genotype({', '.join(parts)})"


def _genotype_fields(text):
    """Parse ``Name(field=literal, ...)`` without evaluating code. Return (name, {field: value})."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"invalid nb301 genotype {text!r}: {error.msg}") from None
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name) or tree.func.id not in GENOTYPE_CALLS:
        raise ValueError(f"invalid nb301 genotype {text!r}: expected Genotype(normal=..., reduce=...)")

    names = GENOTYPE_CALLS[tree.func.id]
    if len(tree.args) > len(names):
        raise ValueError(f"invalid nb301 genotype {text!r}: too many positional fields")
    nodes = dict(zip(names, tree.args))
    for keyword in tree.keywords:
        if keyword.arg not in names or keyword.arg in nodes:
            raise ValueError(f"invalid nb301 genotype {text!r}: unexpected or repeated field {keyword.arg!r}")
        nodes[keyword.arg] = keyword.value
    missing = [name for name in names if name not in nodes]
    if missing:
        raise ValueError(f"invalid nb301 genotype {text!r}: missing fields {missing}")
    try:
        return tree.func.id, {name: ast.literal_eval(node) for name, node in nodes.items()}
    except ValueError:
        raise ValueError(f"invalid nb301 genotype {text!r}: fields must be literals") from None


def _cell_from_pairs(edges, cell_name, text):
    """Return (nodes, ops) of a DARTS cell list of 8 ``(op, from)`` pairs."""
    if not isinstance(edges, (list, tuple)) or len(edges) != NUM_EDGES:
        raise ValueError(f"invalid nb301 genotype {text!r}: {cell_name} must list {NUM_EDGES} (op, from) pairs")
    nodes, ops = [], []
    for edge in edges:
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise ValueError(f"invalid nb301 genotype {text!r}: {cell_name} entry {edge!r} is not an (op, from) pair")
        op, source = edge
        if op not in OPS:
            raise ValueError(f"invalid nb301 genotype {text!r}: unknown op {op!r}; ops are {list(OPS)}")
        if not _is_integer(source):
            raise ValueError(f"invalid nb301 genotype {text!r}: input node {source!r} is not an integer")
        nodes.append(source)
        ops.append(OPS.index(op))
    return nodes, ops


def _cell_from_triples(edges, cell_name, text):
    """Return (nodes, ops) of an aw_nas cell list of ``(op, from, to)`` triples, any order."""
    if not isinstance(edges, (list, tuple)) or len(edges) != NUM_EDGES:
        raise ValueError(f"invalid nb301 genotype {text!r}: {cell_name} must list {NUM_EDGES} (op, from, to) triples")
    by_destination = {node: [] for node in CONCAT}
    for edge in edges:
        if not isinstance(edge, (list, tuple)) or len(edge) != 3 or edge[2] not in by_destination:
            raise ValueError(
                f"invalid nb301 genotype {text!r}: {cell_name} entry {edge!r} is not an (op, from, to) triple "
                f"with to in {list(CONCAT)}"
            )
        by_destination[edge[2]].append(edge[:2])
    for node, inputs in by_destination.items():
        if len(inputs) != INPUTS_PER_NODE:
            raise ValueError(f"invalid nb301 genotype {text!r}: {cell_name} node {node} has {len(inputs)} inputs, expected 2")
    pairs = [pair for node in CONCAT for pair in by_destination[node]]
    return _cell_from_pairs(pairs, cell_name, text)


def genotype_to_arch(text):
    """Parse a DARTS genotype string (or aw_nas's ``CNNGenotype(normal_0=..., ...)``).

    The string is parsed with :mod:`ast`; nothing in it is evaluated. Only cells that
    concatenate all four intermediate nodes are accepted.
    """
    call, fields = _genotype_fields(text)
    arch = np.zeros(ARCH_SHAPE, dtype=np.int64)
    names = GENOTYPE_CALLS[call]  # (cell, cell concat) field names per cell, in cell order
    for cell, name in enumerate(CELL_NAMES):
        edges = fields[names[2 * cell]]
        concat = fields[names[2 * cell + 1]]
        if not isinstance(concat, (list, tuple)) or list(concat) != list(CONCAT):
            raise ValueError(
                f"invalid nb301 genotype {text!r}: {name} concat is {concat!r}; "
                f"only {list(CONCAT)} (all intermediate nodes) is supported"
            )
        parse_cell = _cell_from_pairs if call == "Genotype" else _cell_from_triples
        nodes, ops = parse_cell(edges, name, text)
        arch[cell, 0], arch[cell, 1] = nodes, ops
    return check_arch_array(arch)


def naslib_to_arch(key):
    """Convert NASLib's NAS-Bench-301 key to an arch.

    ``key`` is a string such as ``"[[(0, 0), (1, 5), ...], [...]]"`` (or the nested
    lists themselves): normal then reduce cell, each 8 ``(input_node, naslib_op)`` pairs
    in the entry order of this space, with NASLib's op numbering (:data:`NASLIB_OPS`).
    """
    if isinstance(key, str):
        try:
            key = ast.literal_eval(key.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"invalid NASLib nb301 key {key!r}: not a literal list of cells") from None
    if not isinstance(key, (list, tuple)) or len(key) != NUM_CELLS:
        raise ValueError(f"invalid NASLib nb301 key {key!r}: expected 2 cells (normal, reduce)")

    arch = np.zeros(ARCH_SHAPE, dtype=np.int64)
    for cell, pairs in enumerate(key):
        if not isinstance(pairs, (list, tuple)) or len(pairs) != NUM_EDGES:
            raise ValueError(f"invalid NASLib nb301 key {key!r}: each cell must list 8 (node, op) pairs")
        for edge, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(_is_integer(v) for v in pair):
                raise ValueError(f"invalid NASLib nb301 key {key!r}: entry {pair!r} is not a (node, op) pair of integers")
            source, naslib_op = pair
            if not _is_op_index(naslib_op):
                raise ValueError(f"invalid NASLib nb301 key {key!r}: op index {naslib_op!r} outside 0..6")
            arch[cell, 0, edge] = source
            arch[cell, 1, edge] = NASLIB_OP_TO_INDEX[naslib_op]
    return check_arch_array(arch)


def arch_to_naslib(arch):
    """Return NASLib's key string of an arch, e.g. ``"[[(0, 0), (1, 5), ...], [...]]"``."""
    arch = check_arch_array(arch)
    cells = [
        [(int(source), INDEX_TO_NASLIB_OP[int(op)]) for source, op in zip(arch[cell, 0], arch[cell, 1])]
        for cell in range(NUM_CELLS)
    ]
    return str(cells)


class NasBench301SearchSpace(SearchSpace):
    """The DARTS cell space of NAS-Bench-301: two cells of 4 nodes, 7 ops, 2 inputs per node."""

    NAME = "nb301"

    def __init__(self, num_cell_groups=NUM_CELLS, num_init_nodes=NUM_INPUT_NODES, num_steps=NUM_STEPS,
                 shared_primitives=OPS):
        requested = (num_cell_groups, num_init_nodes, num_steps, tuple(shared_primitives))
        if requested != (NUM_CELLS, NUM_INPUT_NODES, NUM_STEPS, OPS):
            raise ValueError(
                f"nb301 supports num_cell_groups={NUM_CELLS}, num_init_nodes={NUM_INPUT_NODES}, "
                f"num_steps={NUM_STEPS}, shared_primitives={list(OPS)}; got {requested}"
            )
        self.num_cell_groups = NUM_CELLS
        self.num_init_nodes = NUM_INPUT_NODES
        self.num_steps = NUM_STEPS
        self.num_nodes = NUM_NODES
        self.ops_choices = OPS
        self.num_op_choices = len(OPS)

    def validate(self, arch):
        """Return ``arch`` as a ``(2, 2, 8)`` int64 array; a string is parsed as a genotype."""
        if isinstance(arch, str):
            return genotype_to_arch(arch)
        return check_arch_array(arch)

    def canonical_key(self, arch):
        """Return the cells' nodes with each node's two ``(source, op)`` inputs sorted,
        because the two inputs of a node are summed and their order does not matter."""
        arch = self.validate(arch)
        return tuple(
            tuple(
                tuple(sorted(zip(arch[cell, 0, 2 * step: 2 * step + 2].tolist(),
                                 arch[cell, 1, 2 * step: 2 * step + 2].tolist())))
                for step in range(NUM_STEPS)
            )
            for cell in range(NUM_CELLS)
        )

    def random_sample(self, rng):
        """Draw each node's two sources without replacement and its ops uniformly."""
        arch = np.zeros(ARCH_SHAPE, dtype=np.int64)
        for cell in range(NUM_CELLS):
            for step in range(NUM_STEPS):
                entries = slice(2 * step, 2 * step + 2)
                arch[cell, 0, entries] = rng.choice(step + NUM_INPUT_NODES, size=INPUTS_PER_NODE, replace=False)
                arch[cell, 1, entries] = rng.integers(0, len(OPS), size=INPUTS_PER_NODE)
        return arch

    def mutate(self, arch, rng, node_mutate_prob=0.5):
        """Return a copy of ``arch`` with one input node or one op of one cell changed.

        With probability ``node_mutate_prob`` one source of nodes 3..5 moves to another
        earlier node that differs from the node's other source. Node 2 is never changed
        this way, because its sources 0 and 1 admit no other choice. Otherwise one op
        changes to a different op.
        """
        arch = self.validate(arch).copy()
        cell = int(rng.integers(NUM_CELLS))
        if rng.random() < node_mutate_prob:
            edge = int(rng.integers(INPUTS_PER_NODE, NUM_EDGES))
            sibling = edge ^ 1
            current_sources = {int(arch[cell, 0, edge]), int(arch[cell, 0, sibling])}
            choices = [node for node in range(EDGE_DESTINATIONS[edge]) if node not in current_sources]
            arch[cell, 0, edge] = choices[int(rng.integers(len(choices)))]
        else:
            edge = int(rng.integers(NUM_EDGES))
            choices = [op for op in range(len(OPS)) if op != arch[cell, 1, edge]]
            arch[cell, 1, edge] = choices[int(rng.integers(len(choices)))]
        return arch

    def genotype(self, arch):
        return arch_to_genotype(self.validate(arch))

    def from_genotype(self, text):
        return genotype_to_arch(text)

    def encode(self, archs):
        """Stack archs as a ``(N, 2, 2, 8)`` long tensor (cells, [nodes, ops], entries)."""
        if len(archs) == 0:
            return torch.zeros((0, *ARCH_SHAPE), dtype=torch.long)
        return torch.as_tensor(np.stack([self.validate(arch) for arch in archs]), dtype=torch.long)

    def to_pickle(self, arch):
        """Return the nested-list layout of the original pickles: ``[[nodes, ops], [nodes, ops]]``."""
        return self.validate(arch).tolist()
