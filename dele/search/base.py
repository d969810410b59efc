"""Rollouts and the interface shared by every search controller."""

import inspect
import logging
from dataclasses import dataclass, field

import numpy as np

from dele.config import ConfigError
from dele.data import DataError
from dele.registry import Component, RegistryError, get_class

logger = logging.getLogger(__name__)

CONTROLLER_MODES = ("train", "eval")
# Random draws tried before giving up on finding an architecture outside an exclusion set.
MAX_RANDOM_DRAWS = 10_000


@dataclass(eq=False)
class Rollout:
    """One architecture proposed by a controller, with its canonical key and its perfs.

    ``perf`` maps a name (``reward``, ``test_acc``, ``predicted_score``) to a float.
    Two rollouts are the same architecture when their ``key`` is equal; ``==`` compares
    identity.
    """

    arch: np.ndarray
    key: tuple
    genotype: str
    perf: dict = field(default_factory=dict)

    @classmethod
    def from_arch(cls, search_space, arch):
        arch = search_space.validate(arch)
        return cls(arch, search_space.canonical_key(arch), search_space.genotype(arch))

    @classmethod
    def from_genotype(cls, search_space, text):
        return cls.from_arch(search_space, search_space.from_genotype(text))

    def to_state(self):
        """Return a checkpoint-friendly dict: the genotype string and the perfs."""
        return {"genotype": self.genotype, "perf": dict(self.perf)}

    @classmethod
    def from_state(cls, search_space, state):
        rollout = cls.from_genotype(search_space, state["genotype"])
        rollout.perf = dict(state["perf"])
        return rollout


def check_rollout_type(rollout_type, search_space, owner):
    """Raise ConfigError unless ``rollout_type`` is None or the search space's name."""
    if rollout_type is not None and rollout_type != search_space.NAME:
        raise ConfigError(
            f"{owner}: rollout_type {rollout_type!r} does not match the search space {search_space.NAME!r}"
        )


def random_new_rollouts(search_space, rng, count, exclude):
    """Draw ``count`` distinct random architectures whose keys are not in ``exclude``.

    Raises:
        RuntimeError: when ``MAX_RANDOM_DRAWS`` draws in a row found nothing new, which
            means the search space is (nearly) exhausted.
    """
    rollouts, excluded_keys = [], set(exclude or ())
    while len(rollouts) < count:
        for _ in range(MAX_RANDOM_DRAWS):
            rollout = Rollout.from_arch(search_space, search_space.random_sample(rng))
            if rollout.key not in excluded_keys:
                break
        else:
            raise RuntimeError(
                f"no unevaluated architecture found in {MAX_RANDOM_DRAWS} random draws "
                f"({len(excluded_keys)} architectures excluded)"
            )
        excluded_keys.add(rollout.key)
        rollouts.append(rollout)
    return rollouts


class SearchController(Component):
    """Proposes architectures (``sample``) and learns from their evaluations (``step``).

    ``sample(n, exclude)`` in train mode, given a set ``exclude`` (possibly empty),
    returns ``n`` rollouts whose keys are distinct and not in ``exclude``. The search loop
    passes the keys of every evaluated architecture, so no architecture is evaluated
    twice. With ``exclude=None`` a controller may repeat keys, as aw_nas's inner
    controllers did. ``state_dict``/``load_state_dict`` capture
    everything a resumed search needs except the shared random generators.
    """

    REGISTRY = "controller"

    def __init__(self, search_space, *, rng, rollout_type=None, mode="eval"):
        check_rollout_type(rollout_type, search_space, f"controller {self.NAME!r}")
        self.search_space = search_space
        self.rng = rng
        self.mode = None
        self.set_mode(mode)

    def set_mode(self, mode):
        if mode not in CONTROLLER_MODES:
            raise ConfigError(f"controller {self.NAME!r}: mode must be one of {list(CONTROLLER_MODES)}, got {mode!r}")
        self.mode = mode

    def sample(self, n, exclude=None):
        raise NotImplementedError

    def step(self, rollouts, perf_name="reward", retrain=True):
        """Learn from evaluated ``rollouts``; return a loss to log (0 when nothing is trained)."""
        raise NotImplementedError

    def reinit(self):
        """Forget what was learned from earlier ``step`` calls (used for inner controllers)."""

    def state_dict(self):
        return {"mode": self.mode}

    def load_state_dict(self, state):
        self.set_mode(state["mode"])


def build_component(table, type_name, cfg, section, **framework):
    """Build the class registered as ``type_name`` in ``table`` from a config section.

    ``framework`` contains the arguments that dele supplies (search space, generators,
    device), and ``cfg`` the user's keys. An unknown type or key, or a key that dele
    supplies itself, raises ConfigError naming ``<section>_type`` or ``<section>_cfg``.
    """
    try:
        cls = get_class(table, type_name)
    except RegistryError as error:
        raise ConfigError(f"{section}_type: {error}") from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{section}_cfg must be a mapping, got {type(cfg).__name__}")

    parameters = inspect.signature(cls.__init__).parameters
    named = {
        name
        for name, parameter in parameters.items()
        if name != "self" and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    known = sorted(named - set(framework))
    reserved = sorted(set(cfg) & set(framework))
    if reserved:
        raise ConfigError(f"{section}_cfg: key(s) {reserved} are set by dele and must not appear in the config")
    unknown = sorted(set(cfg) - named)
    if unknown:
        raise ConfigError(f"{section}_cfg: unknown key(s) {unknown} for {table} {type_name!r}; known keys: {known}")

    # A component receives only the framework arguments that its constructor names.
    supplied = {name: value for name, value in framework.items() if name in named}
    try:
        return cls(**supplied, **cfg)
    except (ConfigError, DataError):
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{section}_cfg: invalid {table} {type_name!r} options: {error}") from None
