"""The ``nasbench-201`` evaluator: architecture accuracies looked up in a benchmark table.

Two CSV layouts are recognised by their columns:

* the NASWOT export of NAS-Bench-201, ``results/arch_score_acc.pd`` of
  BayesWatch/nas-without-training written as CSV, with columns ``cellstr``,
  ``valid_top1`` and ``test_top1``. The reward is ``valid_top1``, the CIFAR-10
  validation accuracy of the ``cifar10-valid`` split, and ``test_top1`` is reported as
  the test accuracy;
* a NATS-Bench topology export (``ArchitectureString``, ``CIFAR10TestAccuracy200Epochs``):
  it has only the CIFAR-10 test accuracy, which then serves as both reward and test
  accuracy.

Accuracies in the tables are percent; perfs are fractions in [0, 1], as in aw_nas.

With ``benchmark_path`` the official API (the ``nats_bench`` or ``nas_201_api`` package)
is queried instead: the reward is the ``cifar10-valid`` x-valid accuracy after 200
epochs and the test accuracy the ``cifar10`` ori-test accuracy, both averaged over the
training seeds. Every lookup is deterministic: aw_nas's ``sample_query`` drew one seed
per query, so re-evaluating an architecture could change its reward.
"""

import csv
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from dele.config import ConfigError
from dele.data import DataError
from dele.registry import Component
from dele.search.base import check_rollout_type
from dele.spaces.nb201 import edges_of, string_to_matrix

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableLayout:
    """Columns of one benchmark CSV layout."""

    name: str
    arch_column: str
    reward_column: str
    test_column: str


TABLE_LAYOUTS = (
    TableLayout("naswot", "cellstr", "valid_top1", "test_top1"),
    TableLayout("nats", "ArchitectureString", "CIFAR10TestAccuracy200Epochs", "CIFAR10TestAccuracy200Epochs"),
)
TABLE_HELP = (
    "expected a CSV with columns cellstr, valid_top1, test_top1 (the NASWOT export of NAS-Bench-201) "
    "or ArchitectureString, CIFAR10TestAccuracy200Epochs (a NATS-Bench topology export)"
)


def _detect_layout(columns, path):
    for layout in TABLE_LAYOUTS:
        if {layout.arch_column, layout.reward_column, layout.test_column} <= set(columns):
            return layout
    raise DataError(path, f"unrecognised benchmark table columns {list(columns)}; {TABLE_HELP}")


def _percent(row, column, line, path):
    text = row[column]
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DataError(path, f"line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise DataError(path, f"line {line}: {column} {value!r} is not a percentage in [0, 100]")
    return value / 100.0


class BenchmarkTable:
    """Reward and test accuracy (fractions) of every architecture in one CSV, by canonical key."""

    def __init__(self, path, layout, entries):
        self.path = Path(path)
        self.layout = layout
        self.entries = entries

    @classmethod
    def load(cls, path):
        """Read ``path``; repeated loads of an unchanged file share one parsed table."""
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"benchmark table not found: {path}")
        stat = path.stat()
        return _load_table(str(path), stat.st_mtime_ns, stat.st_size)

    def __len__(self):
        return len(self.entries)

    def lookup(self, rollout):
        """Return ``(reward, test_acc)`` of a rollout; DataError when it is not in the table."""
        try:
            return self.entries[rollout.key]
        except KeyError:
            raise DataError(self.path, f"architecture {rollout.genotype} is not in the benchmark table") from None

    def best(self):
        """Return ``(key, reward, test_acc)`` of the highest reward (first in file order on ties)."""
        key = max(self.entries, key=lambda item: self.entries[item][0])
        return (key, *self.entries[key])


@functools.lru_cache(maxsize=4)
def _load_table(path, mtime_ns, size):
    """Parse a benchmark CSV; the file's mtime and size are part of the cache key."""
    entries = {}
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        layout = _detect_layout(reader.fieldnames or [], path)
        for line, row in enumerate(reader, start=2):
            try:
                key = edges_of(string_to_matrix(row[layout.arch_column]))
            except ValueError as error:
                raise DataError(path, f"line {line}: {error}") from None
            values = (_percent(row, layout.reward_column, line, path), _percent(row, layout.test_column, line, path))
            if key in entries and entries[key] != values:
                raise DataError(path, f"line {line}: {row[layout.arch_column]} appears twice with different accuracies")
            entries[key] = values
    if not entries:
        raise DataError(path, "the benchmark table has no rows")
    logger.info("benchmark table %s: %d architectures, %s layout (reward %s, test %s)",
                path, len(entries), layout.name, layout.reward_column, layout.test_column)
    return BenchmarkTable(path, layout, entries)


class OfficialBenchmark:
    """The NATS-Bench (``nats_bench``) or NAS-Bench-201 (``nas_201_api``) API on a benchmark file.

    NOTE: written against the documented APIs (nats_bench 1.x ``create(path, "tss")``,
    nas_201_api 1.x ``NASBench201API(path)`` and their ``get_more_info``) but not run in
    dele's tests, which use the CSV tables only.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"benchmark file not found: {self.path}")
        try:
            from nats_bench import create
        except ImportError:
            create = None
        if create is not None:
            self.api = create(str(self.path), "tss", fast_mode=self.path.is_dir(), verbose=False)
            self.options = {"hp": "200", "is_random": False}
            self.package = "nats_bench"
            return
        try:
            from nas_201_api import NASBench201API
        except ImportError:
            raise ConfigError(
                "evaluator_cfg.benchmark_path needs the nats_bench or nas_201_api package "
                "(pip install nats_bench); or use table_path with a CSV table"
            ) from None
        self.api = NASBench201API(str(self.path), verbose=False)
        self.options = {"use_12epochs_result": False, "is_random": False}
        self.package = "nas_201_api"

    def lookup(self, rollout):
        index = self.api.query_index_by_arch(rollout.genotype)
        if index is None or index < 0:
            raise DataError(self.path, f"architecture {rollout.genotype} is not in the benchmark")
        # iepoch=None selects the last epoch (199); is_random=False averages the seeds.
        valid = self.api.get_more_info(index, "cifar10-valid", iepoch=None, **self.options)
        test = self.api.get_more_info(index, "cifar10", iepoch=None, **self.options)
        return valid["valid-accuracy"] / 100.0, test["test-accuracy"] / 100.0


class NasBench201Evaluator(Component):
    """Sets ``reward`` and ``test_acc`` (fractions) of NAS-Bench-201 rollouts.

    Args:
        table_path: a benchmark CSV (see the module docstring).
        benchmark_path: an official NATS-Bench or NAS-Bench-201 file, used instead of a
            table when its package is installed.
        sample_query: accepted for aw_nas configs and ignored, because look-ups are
            deterministic.
    """

    REGISTRY = "evaluator"
    NAME = "nasbench-201"

    def __init__(self, search_space, *, rollout_type=None, sample_query=False, table_path=None, benchmark_path=None):
        if search_space.NAME != "nasbench-201":
            raise ConfigError(f"evaluator 'nasbench-201' needs the nasbench-201 search space, got {search_space.NAME!r}")
        check_rollout_type(rollout_type, search_space, "evaluator 'nasbench-201'")
        if sample_query:
            logger.info("evaluator_cfg.sample_query is ignored: dele looks up seed-averaged accuracies")
        if table_path and benchmark_path:
            raise ConfigError("evaluator_cfg: set either table_path or benchmark_path, not both")
        if not table_path and not benchmark_path:
            raise ConfigError(f"evaluator_cfg: table_path is required (or benchmark_path); {TABLE_HELP}")

        if table_path:
            try:
                self.source = BenchmarkTable.load(table_path)
            except FileNotFoundError:
                raise ConfigError(
                    f"evaluator_cfg.table_path: {table_path} not found; {TABLE_HELP}. "
                    "Pass its location with --table PATH"
                ) from None
        else:
            try:
                self.source = OfficialBenchmark(benchmark_path)
            except FileNotFoundError:
                raise ConfigError(f"evaluator_cfg.benchmark_path: {benchmark_path} not found") from None
            logger.info("evaluating with the %s API on %s", self.source.package, benchmark_path)

    def evaluate(self, rollouts):
        """Set ``perf["reward"]`` and ``perf["test_acc"]`` of each rollout; return the rollouts."""
        for rollout in rollouts:
            reward, test_acc = self.source.lookup(rollout)
            rollout.perf["reward"] = reward
            rollout.perf["test_acc"] = test_acc
        return rollouts

