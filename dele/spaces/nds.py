"""The NDS ResNet and ResNeXt-A spaces (``nds``; aw_nas used its generic ``germ`` space).

An architecture is an ordered dict of decisions, one value per stage of a 3-stage network
(strides 1, 2, 2):

* ResNet: ``depths.0, depths.1, depths.2, widths.0, widths.1, widths.2``;
* ResNeXt-A: the same, then ``bot_muls.0..2`` (bottleneck multiplier) and
  ``num_groups.0..2`` (groups of the grouped convolution).

The decision order is part of the format because the NDS LSTM embedders read the values
by position. The value sets (:data:`FAMILY_CHOICES`) are the defaults of aw_nas's germ
ResNet and ResNeXt-A supernets. The string form is ``str()`` of the ordered dict as older
Python versions print it: ``OrderedDict([('depths.0', 1), ('depths.1', 2), ...])``.

:meth:`NDSSearchSpace.encode` returns the raw values as a float tensor ``(N, D)``, D = 6
(ResNet) or 12 (ResNeXt-A), columns in decision order. The embedders map values to
embedding rows by comparing them with their own choice lists.
"""

import ast
import numbers
from collections import OrderedDict
from collections.abc import Mapping

import torch

from dele.spaces.base import SearchSpace

NUM_STAGES = 3
RESNET_CHOICES = {
    "depths": (1, 2, 3, 4, 6, 8, 12, 16, 24),
    "widths": (16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256),
}
RESNEXTA_CHOICES = {
    "depths": (1, 2, 4, 8, 16),
    "widths": (16, 32, 64, 128, 256),
    "bot_muls": (0.25, 0.5, 1.0),
    "num_groups": (1, 2, 4),
}
FAMILY_CHOICES = {"resnet": RESNET_CHOICES, "resnexta": RESNEXTA_CHOICES}
FAMILY_TITLES = {"resnet": "ResNet", "resnexta": "ResNeXt-A"}
# Decision kinds whose values are floats; the others are integers.
FLOAT_KINDS = {"bot_muls"}


def decision_names(family):
    """Return the ordered decision names of ``family``, e.g. ``["depths.0", ..., "widths.2"]``."""
    return [f"{kind}.{stage}" for kind in FAMILY_CHOICES[family] for stage in range(NUM_STAGES)]


def decision_choices(family):
    """Return the value set of each decision of ``family``, in decision order."""
    return [FAMILY_CHOICES[family][kind] for kind in FAMILY_CHOICES[family] for _ in range(NUM_STAGES)]


ALL_NAMES = decision_names("resnexta")  # every known decision name


def detect_family(names):
    """Return the family whose decision names are exactly ``names`` (any order), else None."""
    for family in FAMILY_CHOICES:
        if set(names) == set(decision_names(family)):
            return family
    return None


def _canonical_value(name, value, choices):
    """Return ``value`` as the int or float of its set, or raise ValueError."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"invalid nds arch: {name} must be a number, got {value!r}")
    if value not in choices:
        raise ValueError(f"invalid nds arch: {name} = {value!r} is not one of {list(choices)}")
    kind = name.split(".")[0]
    return float(value) if kind in FLOAT_KINDS else int(value)


def arch_to_string(arch):
    """Write ``OrderedDict([('depths.0', 1), ...])`` for a validated arch."""
    return f"OrderedDict({list(arch.items())!r})"


def string_to_pairs(text):
    """Parse ``OrderedDict([(name, value), ...])``, ``OrderedDict({...})`` or a dict literal
    into (name, value) pairs with :mod:`ast`, without evaluating code."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"invalid nds genotype {text!r}: {error.msg}") from None
    if isinstance(tree, ast.Call):
        function = tree.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
        if name != "OrderedDict" or len(tree.args) != 1 or tree.keywords:
            raise ValueError(f"invalid nds genotype {text!r}: expected OrderedDict([(name, value), ...])")
        tree = tree.args[0]
    try:
        content = ast.literal_eval(tree)
    except ValueError:
        raise ValueError(f"invalid nds genotype {text!r}: the decisions must be literals") from None

    if isinstance(content, dict):
        return list(content.items())
    if isinstance(content, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in content):
        return [tuple(pair) for pair in content]
    raise ValueError(f"invalid nds genotype {text!r}: expected (name, value) pairs or a dict")


class NDSSearchSpace(SearchSpace):
    """NDS ResNet / ResNeXt-A architectures as ordered dicts of per-stage decisions.

    Args:
        family: ``"resnet"`` or ``"resnexta"``: the family that :meth:`random_sample`
            draws from and that :meth:`validate` requires. None (the default) accepts
            either family, detected from the decision names, and cannot sample.
    """

    NAME = "nds"

    def __init__(self, family=None):
        if family is not None and family not in FAMILY_CHOICES:
            raise ValueError(f"nds family must be one of {sorted(FAMILY_CHOICES)} or None, got {family!r}")
        self.family = family

    def validate(self, arch):
        """Return ``arch`` as an OrderedDict with canonical value types; a string is parsed.

        Raises:
            ValueError: for an unknown or missing decision, decisions out of order, or a
                value outside its set.
        """
        if isinstance(arch, str):
            arch = OrderedDict(string_to_pairs(arch))
        if not isinstance(arch, Mapping):
            raise ValueError(f"invalid nds arch {arch!r}: expected an ordered dict of decisions")
        names = list(arch)

        unknown = [name for name in names if name not in ALL_NAMES]
        if unknown:
            raise ValueError(f"invalid nds arch: unknown decisions {unknown}; known decisions are {ALL_NAMES}")
        family = self.family or detect_family(names)
        if family is None or set(names) != set(decision_names(family)):
            expected = decision_names(self.family) if self.family else [decision_names(f) for f in FAMILY_CHOICES]
            raise ValueError(f"invalid nds arch: decisions {names} do not match {expected}")
        expected = decision_names(family)
        if names != expected:
            raise ValueError(
                f"invalid nds arch: {FAMILY_TITLES[family]} decisions out of order: got {names}, expected {expected}"
            )

        choices = decision_choices(family)
        return OrderedDict(
            (name, _canonical_value(name, arch[name], values)) for name, values in zip(expected, choices)
        )

    def canonical_key(self, arch):
        return tuple(self.validate(arch).items())

    def random_sample(self, rng):
        """Draw every decision uniformly from its set; needs ``family`` to be set."""
        if self.family is None:
            raise ValueError('nds random_sample needs a family: build the space with family="resnet" or "resnexta"')
        names, choices = decision_names(self.family), decision_choices(self.family)
        return self.validate(OrderedDict(
            (name, values[int(rng.integers(len(values)))]) for name, values in zip(names, choices)
        ))

    def mutate(self, arch, rng):
        """Return a copy of ``arch`` with one decision changed to another value of its set."""
        arch = self.validate(arch)
        family = detect_family(arch)
        names, choices = decision_names(family), decision_choices(family)
        index = int(rng.integers(len(names)))
        others = [value for value in choices[index] if value != arch[names[index]]]
        mutated = OrderedDict(arch)
        mutated[names[index]] = others[int(rng.integers(len(others)))]
        return self.validate(mutated)

    def genotype(self, arch):
        return arch_to_string(self.validate(arch))

    def from_genotype(self, text):
        return self.validate(OrderedDict(string_to_pairs(text)))

    def encode(self, archs):
        """Return the decision values as a float32 tensor ``(N, D)``, columns in decision order.

        Raises:
            ValueError: when the archs mix the two families.
        """
        archs = [self.validate(arch) for arch in archs]
        if not archs:
            width = len(decision_names(self.family)) if self.family else 0
            return torch.zeros((0, width), dtype=torch.float32)
        families = {detect_family(arch) for arch in archs}
        if len(families) > 1:
            raise ValueError(f"nds archs of one dataset must share a family, found {sorted(families)}")
        return torch.tensor([list(arch.values()) for arch in archs], dtype=torch.float32)

    def to_json(self, arch):
        """Return the arch as a plain dict; JSON objects keep the decision order."""
        return dict(self.validate(arch))

    def to_pickle(self, arch):
        return self.validate(arch)
