"""The ``simple`` search trainer: propose, look up, learn, epoch after epoch.

Each epoch runs ``controller_steps`` rounds of: ``controller.sample(controller_samples)``
in train mode, evaluator look-up, ``controller.step``. Every evaluated architecture is
appended to ``evaluated_archs.csv`` (rewritten atomically each epoch). With
``--save-every N`` the whole search state, random generators included, is written to
``resume.ckpt`` every N epochs, so ``--resume`` continues exactly as an uninterrupted run.

The final result is the evaluated architecture with the highest reward (the earliest
query among equal rewards), reported with its stored test accuracy: nothing is
re-evaluated (aw_nas re-evaluated the best ones with a sampled seed and overwrote their
rewards).
"""

import csv
import io
import json
import logging
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dele.config import ConfigError
from dele.fileio import atomic_write
from dele.registry import Component
from dele.search.base import Rollout, check_rollout_type

logger = logging.getLogger(__name__)

CSV_NAME = "evaluated_archs.csv"
CSV_COLUMNS = ("query", "epoch", "genotype", "reward", "test_acc", "predicted_score")
CHECKPOINT_NAME = "resume.ckpt"
SUMMARY_NAME = "summary.json"
CHECKPOINT_FORMAT = "dele-search-checkpoint"
CHECKPOINT_VERSION = 1


def capture_rng(rng, generator):
    """Return every random state a search depends on."""
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state, rng, generator):
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _format_value(value):
    # repr of a float round-trips exactly, so a resumed run writes identical text.
    return "" if value is None else repr(float(value))


class SimpleTrainer(Component):
    """Runs the search loop (aw_nas ``simple`` trainer, controller part only).

    Args:
        epochs: number of epochs.
        test_every: log the best of the top ``derive_samples`` evaluated architectures
            every this many epochs.
        controller_samples: architectures proposed and evaluated per controller step.
        controller_steps: controller steps per training epoch.
        controller_train_every, controller_train_begin: the controller is updated in
            epochs ``e >= controller_train_begin`` with ``e % controller_train_every == 0``.
        rollout_batch_size: accepted for aw_nas configs; must be 1.
        evaluator_steps: accepted for aw_nas configs; must be 0 or null, because a
            benchmark table has nothing to train.
    """

    REGISTRY = "trainer"
    NAME = "simple"

    def __init__(
        self,
        *,
        controller,
        evaluator,
        rollout_type=None,
        epochs=200,
        test_every=10,
        controller_samples=1,
        derive_samples=8,
        rollout_batch_size=1,
        evaluator_steps=None,
        controller_steps=1,
        controller_train_every=1,
        controller_train_begin=1,
    ):
        check_rollout_type(rollout_type, controller.search_space, "trainer 'simple'")
        for name, value, minimum in (
            ("epochs", epochs, 1),
            ("test_every", test_every, 1),
            ("controller_samples", controller_samples, 1),
            ("derive_samples", derive_samples, 1),
            ("controller_steps", controller_steps, 1),
            ("controller_train_every", controller_train_every, 1),
            ("controller_train_begin", controller_train_begin, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"trainer_cfg: {name} must be an integer >= {minimum}, got {value!r}")
        if rollout_batch_size != 1:
            raise ConfigError(f"trainer_cfg: rollout_batch_size must be 1, got {rollout_batch_size!r}")
        if evaluator_steps not in (None, 0):
            raise ConfigError(
                f"trainer_cfg: evaluator_steps must be 0 or null (a benchmark table is not trained), got {evaluator_steps!r}"
            )
        self.controller = controller
        self.evaluator = evaluator
        self.epochs = epochs
        self.test_every = test_every
        self.controller_samples = controller_samples
        self.derive_samples = derive_samples
        self.controller_steps = controller_steps
        self.controller_train_every = controller_train_every
        self.controller_train_begin = controller_train_begin

        self.evaluated = []  # Rollouts in query order, each with perf["epoch"]
        self.evaluated_keys = set()
        self.epoch = 0
        self.elapsed = 0.0

    def is_update_epoch(self, epoch):
        return epoch >= self.controller_train_begin and epoch % self.controller_train_every == 0

    def last_update_epoch(self):
        updates = [epoch for epoch in range(1, self.epochs + 1) if self.is_update_epoch(epoch)]
        return updates[-1] if updates else 0

    # ------------------------------------------------------------------ loop

    def run(self, train_dir, rng, generator, *, save_every=None, meta=None, progress=True):
        """Search from ``self.epoch + 1`` to ``epochs``; write outputs into ``train_dir``.

        ``meta`` (seed, resolved config) is stored in checkpoints and the summary.
        Returns the summary dict.
        """
        train_dir = Path(train_dir)
        meta = dict(meta or {})
        started = time.perf_counter() - self.elapsed

        with logging_redirect_tqdm():
            bar = tqdm(range(self.epoch + 1, self.epochs + 1), desc="search", initial=self.epoch,
                       total=self.epochs, dynamic_ncols=True, disable=not progress)
            for epoch in bar:
                if self.is_update_epoch(epoch):
                    self._update_controller(epoch)
                if epoch % self.test_every == 0 or epoch == self.epochs:
                    self._log_best(epoch)
                self.epoch = epoch
                self.elapsed = time.perf_counter() - started
                self.write_csv(train_dir / CSV_NAME)
                if save_every and epoch % save_every == 0:
                    self.save_checkpoint(train_dir / CHECKPOINT_NAME, rng, generator, meta)
                if self.evaluated:
                    bar.set_postfix(queries=len(self.evaluated), best=f"{self._best().perf['reward']:.4f}", refresh=False)

        summary = self.summary(meta)
        with atomic_write(train_dir / SUMMARY_NAME, "w") as stream:
            json.dump(summary, stream, indent=2)
        logger.info(
            "search finished: %d queries; best reward %.4f, test accuracy %.4f, first evaluated at query %d: %s",
            summary["queries"], summary["best_reward"], summary["best_test_acc"], summary["best_query"],
            summary["best_genotype"],
        )
        return summary

    def _update_controller(self, epoch):
        losses = []
        for step in range(1, self.controller_steps + 1):
            # A predictor retrained after the search's last controller step would never be
            # used, so that retraining is skipped; no proposal or evaluation changes.
            retrain = epoch != self.last_update_epoch() or step != self.controller_steps
            self.controller.set_mode("train")
            rollouts = self.controller.sample(self.controller_samples, exclude=frozenset(self.evaluated_keys))
            self._check_new(rollouts)
            self.evaluator.evaluate(rollouts)
            for rollout in rollouts:
                rollout.perf["epoch"] = epoch
                self.evaluated.append(rollout)
                self.evaluated_keys.add(rollout.key)
            losses.append(self.controller.step(rollouts, perf_name="reward", retrain=retrain))
            self.controller.set_mode("eval")

        batch = self.evaluated[-self.controller_samples * self.controller_steps:]
        logger.info(
            "epoch %d: %d queries; mean reward %.4f, mean test_acc %.4f of this epoch; controller loss %.5f",
            epoch, len(self.evaluated), statistics.fmean(r.perf["reward"] for r in batch),
            statistics.fmean(r.perf["test_acc"] for r in batch), statistics.fmean(losses),
        )

    def _check_new(self, rollouts):
        keys = [rollout.key for rollout in rollouts]
        repeated = [rollout.genotype for rollout in rollouts if rollout.key in self.evaluated_keys]
        if repeated or len(set(keys)) != len(keys):
            raise RuntimeError(f"controller proposed already evaluated or duplicate architectures: {repeated or keys}")

    def _best_index(self):
        """Index of the highest reward; max returns the first of equal rewards, the earliest query."""
        return max(range(len(self.evaluated)), key=lambda index: self.evaluated[index].perf["reward"])

    def _best(self):
        return self.evaluated[self._best_index()]

    def _log_best(self, epoch):
        if not self.evaluated:
            return
        top = sorted(self.evaluated, key=lambda rollout: -rollout.perf["reward"])[: self.derive_samples]
        best = top[0]
        logger.info(
            "epoch %d: top %d evaluated: best reward %.4f (test_acc %.4f), mean reward %.4f (test_acc %.4f); best %s",
            epoch, len(top), best.perf["reward"], best.perf["test_acc"],
            statistics.fmean(r.perf["reward"] for r in top), statistics.fmean(r.perf["test_acc"] for r in top),
            best.genotype,
        )

    # ------------------------------------------------------------------ outputs

    def write_csv(self, path):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for query, rollout in enumerate(self.evaluated, start=1):
            writer.writerow([
                query,
                rollout.perf["epoch"],
                rollout.genotype,
                _format_value(rollout.perf["reward"]),
                _format_value(rollout.perf["test_acc"]),
                _format_value(rollout.perf.get("predicted_score")),
            ])
        with atomic_write(path, "w") as stream:
            stream.write(buffer.getvalue())

    def summary(self, meta):
        if not self.evaluated:
            raise RuntimeError("the search evaluated no architecture (no epoch updated the controller)")
        best_index = self._best_index()
        best = self.evaluated[best_index]
        return {
            "best_genotype": best.genotype,
            "best_reward": best.perf["reward"],
            "best_test_acc": best.perf["test_acc"],
            "best_query": best_index + 1,
            "queries": len(self.evaluated),
            "epochs": self.epoch,
            "wall_time_s": round(self.elapsed, 3),
            **{key: value for key, value in meta.items() if key != "config"},
        }

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, path, rng, generator, meta):
        content = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "elapsed": self.elapsed,
            "evaluated": [rollout.to_state() for rollout in self.evaluated],
            "controller": self.controller.state_dict(),
            "rng": capture_rng(rng, generator),
            **meta,
        }
        with atomic_write(path, "wb") as stream:
            torch.save(content, stream)
        logger.info("saved the search state after epoch %d to %s", self.epoch, path)

    def load_checkpoint(self, path, rng, generator, meta):
        """Restore a search from ``path``; ``meta`` must match what the checkpoint stored."""
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ConfigError(f"--resume: {path} not found (checkpoints are written with --save-every N)") from None
        if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"--resume: {path} is not a dele search checkpoint")
        for key, value in meta.items():
            if content.get(key) != value:
                raise ConfigError(
                    f"--resume: {path} was written with another {key} ({content.get(key)!r}, now {value!r})"
                )

        space = self.controller.search_space
        self.evaluated = [Rollout.from_state(space, item) for item in content["evaluated"]]
        self.evaluated_keys = {rollout.key for rollout in self.evaluated}
        self.epoch = int(content["epoch"])
        self.elapsed = float(content["elapsed"])
        self.controller.load_state_dict(content["controller"])
        restore_rng(content["rng"], rng, generator)
        logger.info("resumed %s after epoch %d with %d queries", path, self.epoch, len(self.evaluated))

