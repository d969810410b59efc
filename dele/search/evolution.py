"""Regularized evolution (aw_nas ``evo`` controller), usable alone or inside the
predictor-based controller.

The population maps each architecture's canonical key to its rollout and score, in age
order (oldest first). In train mode, while the population contains fewer than
``population_size`` architectures, ``sample`` draws random architectures. Otherwise
it runs a tournament: ``parent_pool_size`` members are drawn without replacement, the
best-scored one is the parent, and its mutation is the child. ``step`` inserts the
scored rollouts and then removes the oldest members (``regularized``) or the worst ones
(``perf``) until ``population_size`` remain.

Differences from aw_nas, which are fixes:

* re-inserting an architecture that is already in the population makes it the youngest
  member (aw_nas kept its original age, so a re-evaluated old member was still removed
  first);
* ``avoid_mutate_repeat`` checks the child's key against the population (aw_nas checked
  the parent's, which is always in the population, so it never accepted a first child);
* all randomness comes from the ``numpy.random.Generator`` passed in, so a search is
  reproducible from its seed and resumable from the generator state.
"""

import inspect
import logging

from dele.config import ConfigError
from dele.search.base import Rollout, SearchController, random_new_rollouts

logger = logging.getLogger(__name__)

EVAL_SAMPLE_STRATEGIES = ("population", "all", "population_random")
ELIMINATION_STRATEGIES = ("regularized", "perf")
REPEAT_FALLBACKS = ("return", "raise")
# Train-mode draws tried per requested rollout before falling back to a random
# architecture outside ``exclude``.
MAX_NOVEL_REDRAWS = 100


class RepeatError(RuntimeError):
    """Raised with ``avoid_repeat_fallback: raise`` when no new child was found."""


def _check_positive_int(owner, name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _check_choice(owner, name, value, choices):
    if value not in choices:
        raise ConfigError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")


class EvolutionController(SearchController):
    """Tournament selection, mutation and age- or performance-based elimination.

    Args:
        population_size: number of members kept after each ``step``.
        parent_pool_size: tournament size, at most ``population_size``.
        mutate_kwargs: keyword options of the search space's ``mutate``.
        eval_sample_strategy: what eval-mode ``sample`` returns: the best members of the
            ``population``, the best of ``all`` rollouts ever stepped, or
            ``population_random`` members, padded with random architectures.
        elimination_strategy: ``regularized`` removes the oldest members, ``perf`` the
            worst-scored ones (the oldest first among equal scores).
        avoid_repeat: redraw the tournament, up to ``avoid_repeat_worst_threshold`` times,
            while the child is already a member.
        avoid_mutate_repeat: mutate the same parent again, up to
            ``avoid_mutate_repeat_worst_threshold`` times, while the child is a member.
        avoid_repeat_fallback: when every redraw repeats a member, ``return`` the last
            child anyway or ``raise`` :class:`RepeatError`.
    """

    NAME = "evo"

    def __init__(
        self,
        search_space,
        *,
        rng,
        rollout_type=None,
        mode="eval",
        population_size=100,
        parent_pool_size=10,
        mutate_kwargs=None,
        eval_sample_strategy="population",
        elimination_strategy="regularized",
        avoid_repeat=False,
        avoid_mutate_repeat=False,
        avoid_repeat_worst_threshold=10,
        avoid_mutate_repeat_worst_threshold=10,
        avoid_repeat_fallback="return",
    ):
        super().__init__(search_space, rng=rng, rollout_type=rollout_type, mode=mode)
        owner = "controller 'evo'"
        _check_positive_int(owner, "population_size", population_size)
        _check_positive_int(owner, "parent_pool_size", parent_pool_size)
        if parent_pool_size > population_size:
            raise ConfigError(
                f"{owner}: parent_pool_size ({parent_pool_size}) must not exceed population_size ({population_size})"
            )
        _check_positive_int(owner, "avoid_repeat_worst_threshold", avoid_repeat_worst_threshold)
        _check_positive_int(owner, "avoid_mutate_repeat_worst_threshold", avoid_mutate_repeat_worst_threshold)
        _check_choice(owner, "eval_sample_strategy", eval_sample_strategy, EVAL_SAMPLE_STRATEGIES)
        _check_choice(owner, "elimination_strategy", elimination_strategy, ELIMINATION_STRATEGIES)
        _check_choice(owner, "avoid_repeat_fallback", avoid_repeat_fallback, REPEAT_FALLBACKS)
        self.mutate_kwargs = dict(mutate_kwargs or {})
        self._check_mutate_kwargs(owner)

        self.population_size = population_size
        self.parent_pool_size = parent_pool_size
        self.eval_sample_strategy = eval_sample_strategy
        self.elimination_strategy = elimination_strategy
        self.avoid_repeat = bool(avoid_repeat)
        self.avoid_mutate_repeat = bool(avoid_mutate_repeat)
        self.avoid_repeat_worst_threshold = avoid_repeat_worst_threshold
        self.avoid_mutate_repeat_worst_threshold = avoid_mutate_repeat_worst_threshold
        self.avoid_repeat_fallback = avoid_repeat_fallback

        # key -> (rollout, score), oldest first.
        self.population = {}
        # (rollout, score) of every stepped rollout, in step order.
        self.history = []

    def _check_mutate_kwargs(self, owner):
        if not self.mutate_kwargs:
            return
        signature = inspect.signature(self.search_space.mutate)
        try:
            signature.bind(None, None, **self.mutate_kwargs)
        except TypeError as error:
            raise ConfigError(
                f"{owner}: mutate_kwargs {self.mutate_kwargs} are not accepted by the "
                f"{self.search_space.NAME!r} search space's mutate: {error}"
            ) from None

    # ------------------------------------------------------------------ population

    def reinit(self):
        """Empty the population and the history."""
        self.population = {}
        self.history = []

    def set_init_population(self, rollouts, perf_name):
        """Replace the population by ``rollouts`` scored by ``perf[perf_name]`` (history is kept)."""
        self.population = {}
        for rollout in rollouts:
            self.population.pop(rollout.key, None)
            self.population[rollout.key] = (rollout, _score(rollout, perf_name))

    def step(self, rollouts, perf_name="reward", retrain=True):
        for rollout in rollouts:
            score = _score(rollout, perf_name)
            # Popping first makes a re-inserted member the youngest.
            self.population.pop(rollout.key, None)
            self.population[rollout.key] = (rollout, score)
            self.history.append((rollout, score))
        self._eliminate()
        return 0.0

    def _eliminate(self):
        excess = len(self.population) - self.population_size
        if excess <= 0:
            return
        keys = list(self.population)
        if self.elimination_strategy == "regularized":
            removed = keys[:excess]
        else:
            # Lowest score first; among equal scores, the oldest (lowest age index) first.
            by_score = sorted(range(len(keys)), key=lambda age: (self.population[keys[age]][1], age))
            removed = [keys[age] for age in by_score[:excess]]
        for key in removed:
            del self.population[key]

    # ------------------------------------------------------------------ sampling

    def sample(self, n, exclude=None):
        """Return ``n`` rollouts (see the class docstring for the two modes).

        In train mode with a set ``exclude`` (possibly empty), the returned keys are
        distinct and not in ``exclude``: a repeated candidate is redrawn, up to
        ``MAX_NOVEL_REDRAWS`` times, then replaced by a random architecture outside it.
        With ``exclude=None`` candidates may repeat, as in aw_nas. ``exclude`` is ignored
        in eval mode, which returns already scored members.
        """
        if self.mode == "eval" and self.population:
            return self._sample_eval(n)
        if exclude is None:
            return [self._sample_train() for _ in range(n)]

        rollouts, excluded_keys = [], set(exclude)
        for _ in range(n):
            for _ in range(MAX_NOVEL_REDRAWS):
                rollout = self._sample_train()
                if rollout.key not in excluded_keys:
                    break
            else:
                logger.info(
                    "evo: %d draws in a row repeated an excluded architecture; drawing a random new one",
                    MAX_NOVEL_REDRAWS,
                )
                rollout = random_new_rollouts(self.search_space, self.rng, 1, excluded_keys)[0]
            excluded_keys.add(rollout.key)
            rollouts.append(rollout)
        return rollouts

    def _sample_train(self):
        if len(self.population) < self.population_size:
            return Rollout.from_arch(self.search_space, self.search_space.random_sample(self.rng))
        members = list(self.population.values())
        if not self.avoid_repeat:
            return self._tournament_child(members)
        for _ in range(self.avoid_repeat_worst_threshold):
            child = self._tournament_child(members)
            if child.key not in self.population:
                return child
        self._repeat_fallback("reselect-and-mutate", self.avoid_repeat_worst_threshold)
        return child

    def _tournament_child(self, members):
        pool = [int(index) for index in self.rng.choice(len(members), size=self.parent_pool_size, replace=False)]
        parent = pool[0]
        for index in pool[1:]:
            # Strictly greater, so the first drawn of equally scored members wins.
            if members[index][1] > members[parent][1]:
                parent = index
        return self._mutate(members[parent][0])

    def _mutate(self, parent):
        def mutate_once():
            arch = self.search_space.mutate(parent.arch, self.rng, **self.mutate_kwargs)
            return Rollout.from_arch(self.search_space, arch)

        if not self.avoid_mutate_repeat:
            return mutate_once()
        for _ in range(self.avoid_mutate_repeat_worst_threshold):
            child = mutate_once()
            if child.key not in self.population:
                return child
        self._repeat_fallback("mutate", self.avoid_mutate_repeat_worst_threshold)
        return child

    def _repeat_fallback(self, action, trials):
        if self.avoid_repeat_fallback == "raise":
            raise RepeatError(f"evo: no child outside the population after {trials} {action} trials")

    def _sample_eval(self, n):
        if self.eval_sample_strategy == "population_random":
            members = list(self.population.values())
            # NOTE: drawn without replacement; aw_nas drew with replacement.
            indices = self.rng.choice(len(members), size=min(n, len(members)), replace=False)
            rollouts = [members[index][0] for index in indices]
        else:
            scored = list(self.population.values()) if self.eval_sample_strategy == "population" else self.history
            # Best score first; a stable sort keeps the older of equal scores first.
            best = sorted(scored, key=lambda item: -item[1])[:n]
            rollouts = []
            for rollout, score in best:
                copy = Rollout(rollout.arch, rollout.key, rollout.genotype, dict(rollout.perf))
                copy.perf.setdefault("reward", score)
                rollouts.append(copy)
        padding = [
            Rollout.from_arch(self.search_space, self.search_space.random_sample(self.rng))
            for _ in range(n - len(rollouts))
        ]
        return rollouts + padding

    # ------------------------------------------------------------------ state

    def state_dict(self):
        return {
            **super().state_dict(),
            "population": [{"rollout": rollout.to_state(), "score": score} for rollout, score in self.population.values()],
            "history": [{"rollout": rollout.to_state(), "score": score} for rollout, score in self.history],
        }

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.population = {}
        for item in state["population"]:
            rollout = Rollout.from_state(self.search_space, item["rollout"])
            self.population[rollout.key] = (rollout, float(item["score"]))
        self.history = [
            (Rollout.from_state(self.search_space, item["rollout"]), float(item["score"])) for item in state["history"]
        ]


def _score(rollout, perf_name):
    try:
        return float(rollout.perf[perf_name])
    except KeyError:
        raise ValueError(
            f"rollout {rollout.genotype} has no perf {perf_name!r} (it has {sorted(rollout.perf)})"
        ) from None
