"""The ``predictor-based`` controller and the ``random`` baseline.

``predictor-based`` (aw_nas ``predictor-based``): until the predictor has been trained it
proposes random architectures. Afterwards each ``sample(n)`` runs an inner controller
(``evo``) for ``inner_steps`` steps per iteration, scoring every inner candidate with the
predictor, and proposes the best-scored new candidate of each iteration. ``step`` adds
the evaluated architectures to the ground truth and, once there are ``begin_train_num``
of them, retrains the predictor on all of it, continuing from the current weights and
optimiser state (warm start).

Differences from aw_nas, which are fixes:

* novelty is decided by canonical key: an architecture that was evaluated, already
  proposed in this ``sample`` call, or already found in this iteration is never
  proposed again (aw_nas compared rollout objects by identity, so it re-proposed
  evaluated architectures);
* ``use_pretrained_from_start: true`` lets a loaded pretrained predictor drive the
  proposals from the first epoch. aw_nas ignored it until the first retraining, and the
  default ``false`` keeps that behaviour;
* ``predictor_train_cfg`` is merged over the defaults (aw_nas replaced the whole dict).
"""

import logging
import math
from pathlib import Path

import torch

from dele.config import ConfigError, build_optimizer, split_network_cfg
from dele.metrics import kendall_tau
from dele.predictors import build_arch_network
from dele.registry import register
from dele.search.base import Rollout, SearchController, build_component, random_new_rollouts
from dele.training import PairSettings, load_checkpoint, train_epoch

logger = logging.getLogger(__name__)

PREDICTOR_TYPES = ("pointwise_comparator", "dynamic_ensemble_pointwise_comparator")
PREDICTOR_TRAIN_DEFAULTS = {
    "epochs": 200,
    "num_workers": 2,  # accepted for aw_nas configs; the data is in memory, no worker processes run
    "batch_size": 128,
    "compare": True,
    "max_compare_ratio": 4,
    "compare_threshold": 0.0,
    "report_freq": 50,
    "train_valid_split": None,
    "n_cross_valid": None,
}
# Inner searches run per iteration before giving up on finding enough new candidates.
MAX_INNER_ATTEMPTS = 10


class RandomController(SearchController):
    """Uniformly random architectures, never one in ``exclude`` (aw_nas ``random_sample``)."""

    NAME = "random"

    def sample(self, n, exclude=None):
        return random_new_rollouts(self.search_space, self.rng, n, exclude)

    def step(self, rollouts, perf_name="reward", retrain=True):
        return 0.0


register("controller", "random_sample", RandomController)


class EncodedArchs:
    """The ``.encoded`` tensor and ``len()`` that :func:`dele.training.train_epoch` reads."""

    def __init__(self, encoded):
        self.encoded = encoded

    def __len__(self):
        return self.encoded.shape[0]


def merge_train_cfg(cfg):
    """Merge ``predictor_train_cfg`` over :data:`PREDICTOR_TRAIN_DEFAULTS` and check it."""
    owner = "controller_cfg.predictor_train_cfg"
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ConfigError(f"{owner} must be a mapping, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(PREDICTOR_TRAIN_DEFAULTS))
    if unknown:
        raise ConfigError(f"{owner}: unknown key(s) {unknown}; known keys: {sorted(PREDICTOR_TRAIN_DEFAULTS)}")
    merged = {**PREDICTOR_TRAIN_DEFAULTS, **cfg}

    for name, minimum in (("epochs", 0), ("batch_size", 1), ("report_freq", 1)):
        value = merged[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    split = merged["train_valid_split"]
    if split is not None and not (isinstance(split, (int, float)) and 0.0 < split <= 1.0):
        raise ConfigError(f"{owner}: train_valid_split must be null or in (0, 1], got {split!r}")
    if merged["n_cross_valid"] is not None:
        raise ConfigError(f"{owner}: n_cross_valid is not supported; set it to null")
    return merged


class PredictorBasedController(SearchController):
    """Inner evolutionary search on predicted scores; the predictor learns from the ground truth.

    Args:
        inner_controller_type, inner_controller_cfg: the inner controller (``evo``);
            its ``rollout_type`` is checked and its ``mode`` is replaced by ``train``.
        arch_network_type, arch_network_cfg: the predictor, one of :data:`PREDICTOR_TYPES`,
            with ``optimizer`` (default Adam, lr 1e-3) in its cfg.
        inner_sample_n: architectures proposed per inner iteration.
        inner_samples: inner candidates drawn per inner step.
        inner_steps: inner steps per iteration.
        inner_report_freq: log every this many inner steps.
        predict_batch_size: batch size of predictor inference.
        inner_random_init: start the inner population empty (else from the ground truth,
            scored by the predictor).
        inner_iter_random_init: re-initialise the inner controller before every iteration
            after the first (``true``), or every m-th iteration (an integer m).
        min_inner_sample_ratio: an iteration must find at least ``inner_sample_n`` times
            this many new candidates, else its inner search runs again.
        begin_train_num: ground-truth architectures needed before the first training.
        predictor_train_cfg: training options merged over :data:`PREDICTOR_TRAIN_DEFAULTS`.
        pretrained_predictor_path: predictor weights to start from (a dele checkpoint
            or a state dict), for example DELE's step-1 ``pre_final.ckpt``.
        use_pretrained_from_start: use the loaded predictor for proposals before the
            first retraining.
        training_on_load: accepted for aw_nas configs; ``--resume`` restores the trained
            predictor, so there is nothing to retrain on load.
    """

    NAME = "predictor-based"

    def __init__(
        self,
        search_space,
        *,
        rng,
        torch_generator,
        device=torch.device("cpu"),
        rollout_type=None,
        mode="eval",
        inner_controller_type="evo",
        inner_controller_cfg=None,
        arch_network_type="pointwise_comparator",
        arch_network_cfg=None,
        inner_sample_n=1,
        inner_samples=1,
        inner_steps=200,
        inner_report_freq=50,
        predict_batch_size=512,
        inner_random_init=True,
        inner_iter_random_init=True,
        min_inner_sample_ratio=10,
        begin_train_num=0,
        predictor_train_cfg=None,
        training_on_load=False,
        pretrained_predictor_path=None,
        use_pretrained_from_start=False,
    ):
        super().__init__(search_space, rng=rng, rollout_type=rollout_type, mode=mode)
        owner = "controller 'predictor-based'"
        for name, value, minimum in (
            ("inner_sample_n", inner_sample_n, 1),
            ("inner_samples", inner_samples, 1),
            ("inner_steps", inner_steps, 1),
            ("inner_report_freq", inner_report_freq, 1),
            ("predict_batch_size", predict_batch_size, 1),
            ("begin_train_num", begin_train_num, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
        if not isinstance(min_inner_sample_ratio, (int, float)) or min_inner_sample_ratio < 0:
            raise ConfigError(f"{owner}: min_inner_sample_ratio must be a number >= 0, got {min_inner_sample_ratio!r}")
        if not isinstance(inner_iter_random_init, bool) and (
            not isinstance(inner_iter_random_init, int) or inner_iter_random_init < 1
        ):
            raise ConfigError(
                f"{owner}: inner_iter_random_init must be true, false or a positive integer, "
                f"got {inner_iter_random_init!r}"
            )
        if arch_network_type not in PREDICTOR_TYPES:
            raise ConfigError(f"{owner}: arch_network_type must be one of {list(PREDICTOR_TYPES)}, got {arch_network_type!r}")

        self.device = torch.device(device)
        self.torch_generator = torch_generator
        self.inner_controller_type = inner_controller_type
        self.inner_controller_cfg = dict(inner_controller_cfg or {})
        self.inner_sample_n = inner_sample_n
        self.inner_samples = inner_samples
        self.inner_steps = inner_steps
        self.inner_report_freq = inner_report_freq
        self.predict_batch_size = predict_batch_size
        self.inner_random_init = bool(inner_random_init)
        self.inner_iter_random_init = inner_iter_random_init
        self.min_inner_sample_ratio = min_inner_sample_ratio
        self.begin_train_num = begin_train_num
        self.train_cfg = merge_train_cfg(predictor_train_cfg)
        if training_on_load:
            logger.warning("controller_cfg.training_on_load has no effect: --resume restores the trained predictor")

        self.arch_network_type = arch_network_type
        self.model_cfg, optimizer_cfg, scheduler_cfg = split_network_cfg(arch_network_cfg or {})
        if scheduler_cfg:
            logger.warning("arch_network_cfg.scheduler is ignored during search, as in aw_nas")
        try:
            self.model = build_arch_network(arch_network_type, search_space, self.model_cfg).to(self.device)
        except ValueError as error:
            raise ConfigError(f"controller_cfg.arch_network_cfg: {error}") from None
        self.optimizer = build_optimizer(self.model.parameters(), optimizer_cfg)
        if self.optimizer is None:
            raise ConfigError("controller_cfg.arch_network_cfg.optimizer must not be empty")

        self.ground_truth = []
        self.batch_sizes = []
        self.trained = False
        self.last_loss = 0.0
        if pretrained_predictor_path:
            self._load_pretrained(Path(pretrained_predictor_path))
            self.trained = bool(use_pretrained_from_start)
        elif use_pretrained_from_start:
            raise ConfigError(f"{owner}: use_pretrained_from_start needs pretrained_predictor_path")
        # Building one inner controller now reports an invalid inner config before the search starts.
        self._build_inner()

    # ------------------------------------------------------------------ set-up

    def _build_inner(self):
        cfg = dict(self.inner_controller_cfg)
        cfg.pop("mode", None)
        return build_component(
            "controller",
            self.inner_controller_type,
            {**cfg, "mode": "train"},
            "controller_cfg.inner_controller",
            search_space=self.search_space,
            rng=self.rng,
        )

    def _load_pretrained(self, path):
        key = "controller_cfg.pretrained_predictor_path"
        if not path.is_file():
            raise ConfigError(
                f"{key}: {path} not found. Step 1 of dynamic_ensemble_train_predictor.py writes "
                "pre_final.ckpt into its --train-dir; pass another file with --pretrained-predictor PATH, "
                "or --pretrained-predictor none to search without one"
            )
        try:
            checkpoint = load_checkpoint(path)
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from None

        saved_space = checkpoint.get("search_space")
        if saved_space is not None and saved_space != self.search_space.NAME:
            raise ConfigError(f"{key}: {path} is a {saved_space!r} predictor, the search space is {self.search_space.NAME!r}")
        saved_type = checkpoint.get("arch_network_type")
        if saved_type is not None and saved_type != self.arch_network_type:
            raise ConfigError(f"{key}: {path} contains a {saved_type!r}, arch_network_type is {self.arch_network_type!r}")
        if checkpoint.get("arch_network_cfg") is not None:
            saved_cfg, _, _ = split_network_cfg(checkpoint["arch_network_cfg"])
            differing = sorted(
                name for name in set(saved_cfg) | set(self.model_cfg) if saved_cfg.get(name) != self.model_cfg.get(name)
            )
            if differing:
                details = "; ".join(
                    f"{name}: checkpoint {saved_cfg.get(name)!r}, config {self.model_cfg.get(name)!r}" for name in differing
                )
                raise ConfigError(f"{key}: {path} was trained with another arch_network_cfg ({details})")
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise ConfigError(f"{key}: {path} does not fit the configured predictor: {error}") from None
        logger.info("loaded the pretrained predictor %s", path)

    # ------------------------------------------------------------------ sampling

    def sample(self, n, exclude=None):
        """Train mode: ``n`` new architectures. Eval mode: the ``n`` best evaluated ones.

        Proposals are never evaluated architectures, even with ``exclude=None``.
        """
        if self.mode == "eval":
            return sorted(self.ground_truth, key=lambda rollout: -rollout.perf["reward"])[:n]
        excluded_keys = set(exclude or ()) | {rollout.key for rollout in self.ground_truth}
        if not self.trained:
            return random_new_rollouts(self.search_space, self.rng, n, excluded_keys)
        return self._sample_with_predictor(n, excluded_keys)

    def _sample_with_predictor(self, n, excluded_keys):
        cache = {}  # key -> predicted score; the predictor does not change during one call
        inner = self._build_inner()
        self._seed_population(inner, cache)

        chosen = []
        for iteration in range(1, math.ceil(n / self.inner_sample_n) + 1):
            needed = min(self.inner_sample_n, n - len(chosen))
            if iteration > 1 and self._reinit_at(iteration):
                inner.reinit()
                self._seed_population(inner, cache)

            excluded = excluded_keys | {rollout.key for rollout in chosen}
            candidates = {}
            for attempt in range(1, MAX_INNER_ATTEMPTS + 1):
                self._run_inner_steps(inner, candidates, excluded, cache, iteration)
                if len(candidates) >= needed * self.min_inner_sample_ratio:
                    break
                if attempt < MAX_INNER_ATTEMPTS:
                    logger.info("inner iteration %d: %d new candidates after %d inner searches, %g expected; searching again",
                                iteration, len(candidates), attempt, needed * self.min_inner_sample_ratio)
            if len(candidates) < needed:
                raise RuntimeError(
                    f"inner iteration {iteration}: {len(candidates)} unevaluated candidates found in "
                    f"{MAX_INNER_ATTEMPTS} inner searches, {needed} needed"
                )
            # A stable sort keeps the first-found of equally scored candidates first.
            best = sorted(candidates.values(), key=lambda rollout: -rollout.perf["predicted_score"])[:needed]
            chosen.extend(best)

        logger.info("proposed %d architectures, predicted scores %s",
                    len(chosen), ", ".join(f"{rollout.perf['predicted_score']:.4f}" for rollout in chosen))
        return chosen

    def _reinit_at(self, iteration):
        if isinstance(self.inner_iter_random_init, bool):
            return self.inner_iter_random_init
        return iteration % self.inner_iter_random_init == 0

    def _seed_population(self, inner, cache):
        """Start the inner population from the scored ground truth unless ``inner_random_init``."""
        if self.inner_random_init or not self.ground_truth:
            return
        # Copies keep the proposal-time predicted_score of the evaluated rollouts unchanged.
        copies = [Rollout(rollout.arch, rollout.key, rollout.genotype) for rollout in self.ground_truth]
        self._predict(copies, cache)
        inner.set_init_population(copies, perf_name="predicted_score")

    def _run_inner_steps(self, inner, candidates, excluded, cache, iteration):
        for inner_step in range(1, self.inner_steps + 1):
            rollouts = inner.sample(self.inner_samples)
            self._predict(rollouts, cache)
            inner.step(rollouts, perf_name="predicted_score")
            for rollout in rollouts:
                if rollout.key not in excluded and rollout.key not in candidates:
                    candidates[rollout.key] = rollout
            if inner_step % self.inner_report_freq == 0:
                best = max((rollout.perf["predicted_score"] for rollout in candidates.values()), default=math.nan)
                logger.info("inner iteration %d step %d: %d new candidates, best predicted score %.4f",
                            iteration, inner_step, len(candidates), best)

    @torch.no_grad()
    def _predict(self, rollouts, cache):
        """Set ``perf["predicted_score"]`` (sigmoid output) of each rollout."""
        missing = list({rollout.key: rollout for rollout in rollouts if rollout.key not in cache}.values())
        if missing:
            encoded = self.search_space.encode([rollout.arch for rollout in missing]).to(self.device)
            for rollout, score in zip(missing, self._scores(encoded).tolist()):
                cache[rollout.key] = score
        for rollout in rollouts:
            rollout.perf["predicted_score"] = cache[rollout.key]

    @torch.no_grad()
    def _scores(self, encoded):
        self.model.eval()
        batches = torch.split(encoded, self.predict_batch_size)
        return torch.cat([self.model.predict(batch) for batch in batches]).cpu()

    # ------------------------------------------------------------------ training

    def step(self, rollouts, perf_name="reward", retrain=True):
        """Add evaluated rollouts to the ground truth and retrain the predictor on all of it.

        Returns the mean training loss of the last predictor epoch (the previous one when
        nothing was trained).
        """
        self.ground_truth.extend(rollouts)
        self.batch_sizes.append(len(rollouts))
        if len(self.ground_truth) < self.begin_train_num:
            logger.info("%d ground-truth architectures, training starts at %d",
                        len(self.ground_truth), self.begin_train_num)
            return self.last_loss
        if not retrain:
            return self.last_loss
        self.last_loss = self._train_predictor(perf_name)
        self.trained = True
        return self.last_loss

    def _split(self):
        """Per step batch, the first ``train_valid_split`` fraction trains and the rest validates."""
        fraction = self.train_cfg["train_valid_split"]
        train, valid, start = [], [], 0
        for size in self.batch_sizes:
            cut = size if fraction is None else int(size * fraction)
            train += range(start, start + cut)
            valid += range(start + cut, start + size)
            start += size
        return train, valid

    def _train_predictor(self, perf_name):
        cfg = self.train_cfg
        encoded = self.search_space.encode([rollout.arch for rollout in self.ground_truth]).to(self.device)
        targets = torch.tensor([rollout.perf[perf_name] for rollout in self.ground_truth],
                               dtype=torch.float32, device=self.device)
        train, valid = self._split()
        train_set = EncodedArchs(encoded[train])
        train_targets = targets[train]
        settings = PairSettings(
            compare=bool(cfg["compare"]),
            threshold=float(cfg["compare_threshold"]),
            max_compare_ratio=float(cfg["max_compare_ratio"]),
        )

        loss = self.last_loss
        for epoch in range(1, cfg["epochs"] + 1):
            loss = train_epoch(self.model, self.optimizer, train_set, train_targets, settings,
                               self.torch_generator, cfg["batch_size"])
            if epoch % cfg["report_freq"] == 0 or epoch == cfg["epochs"]:
                message = (f"predictor epoch {epoch}/{cfg['epochs']} on {len(train)} architectures: "
                           f"loss {loss:.5f}, kendall tau {self._tau(train_set.encoded, train_targets):.4f}")
                if valid:
                    message += f", valid kendall tau {self._tau(encoded[valid], targets[valid]):.4f}"
                logger.info(message)
        return loss

    def _tau(self, encoded, targets):
        return kendall_tau(targets.cpu().numpy(), self._scores(encoded).numpy())

    # ------------------------------------------------------------------ state

    def state_dict(self):
        # The inner controller is rebuilt at every predictor-guided sample() call, so no
        # inner state outlives a call.
        return {
            **super().state_dict(),
            "ground_truth": [rollout.to_state() for rollout in self.ground_truth],
            "batch_sizes": list(self.batch_sizes),
            "trained": self.trained,
            "last_loss": self.last_loss,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.ground_truth = [Rollout.from_state(self.search_space, item) for item in state["ground_truth"]]
        self.batch_sizes = list(state["batch_sizes"])
        self.trained = bool(state["trained"])
        self.last_loss = float(state["last_loss"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
