"""Search: table evaluator, evolution, controllers, the search loop, resume and config errors."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO_ROOT, data_file
from dele.config import ConfigError, load_yaml, split_network_cfg
from dele.data import DataError
from dele.predictors import build_arch_network
from dele.search import cli
from dele.search.base import Rollout
from dele.search.controller import (
    PREDICTOR_TRAIN_DEFAULTS,
    PredictorBasedController,
    RandomController,
    merge_train_cfg,
)
from dele.search.evaluator import NasBench201Evaluator
from dele.search.evolution import EvolutionController, RepeatError
from dele.search.loop import CHECKPOINT_NAME, CSV_NAME, SUMMARY_NAME
from dele.spaces.nb201 import NasBench201SearchSpace, edges_of, matrix_from_edges, matrix_to_string
from dele.training import save_checkpoint

TINY_EMBEDDER = {
    "gcn_kwargs": {"residual_only": 1},
    "gcn_out_dims": [8],
    "hid_dim": 8,
    "node_embedding_dim": 8,
    "op_embedding_dim": 8,
    "use_final_only": True,
}
TINY_NETWORK = {
    "arch_embedder_type": "nb201-flow",
    "arch_embedder_cfg": TINY_EMBEDDER,
    "compare_margin": 0.1,
    "mlp_dropout": 0.1,
    "mlp_hiddens": [8],
    "optimizer": {"type": "Adam", "lr": 0.01},
}
TINY_ENSEMBLE = {**TINY_NETWORK, "auxiliary_head_num": 2}
SHIPPED_CONFIG = REPO_ROOT / "cfgs" / "nasbench-201_gates_search.yaml"


@pytest.fixture(scope="module")
def space():
    return NasBench201SearchSpace()


def synthetic_accuracy(index):
    """A deterministic, well-spread validation accuracy (percent) for arch ``index``."""
    return 50.0 + (index * 7919 % 4001) / 100.0


@pytest.fixture(scope="module")
def full_table(tmp_path_factory, space):
    """A NASWOT-layout table of all 15,625 architectures with synthetic accuracies."""
    path = tmp_path_factory.mktemp("table") / "synthetic_nb201.csv"
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["arch", "cellstr", "params", "score", "test_top1", "valid_top1", "valid_test_top1"])
        for index, arch in enumerate(space.enumerate()):
            valid = synthetic_accuracy(index)
            writer.writerow([index, matrix_to_string(arch), 0.1, 0.0, valid + 1.0, valid, valid])
    return path


def write_yaml(path, content):
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def search_config(table, controller_type="predictor-based", controller_cfg=None, trainer_cfg=None, **extra):
    """An aw_nas-style search config for a tiny, fast search."""
    if controller_cfg is None:
        controller_cfg = {
            "predictor-based": {
                "inner_controller_type": "evo",
                "inner_controller_cfg": {"population_size": 4, "parent_pool_size": 2},
                "arch_network_type": "pointwise_comparator",
                "arch_network_cfg": TINY_NETWORK,
                "inner_steps": 8,
                "min_inner_sample_ratio": 2,
                "begin_train_num": 6,
                "predictor_train_cfg": {"epochs": 2, "batch_size": 64, "report_freq": 1},
            },
            "evo": {"population_size": 5, "parent_pool_size": 2},
            "random": {},
        }[controller_type]
    content = {
        "rollout_type": "nasbench-201",
        "search_space_type": "nasbench-201",
        "search_space_cfg": {"load_nasbench": True},
        "dataset_type": "cifar10",
        "dataset_cfg": {},
        "controller_type": controller_type,
        "controller_cfg": {"mode": "eval", **controller_cfg},
        "evaluator_type": "nasbench-201",
        "evaluator_cfg": {"table_path": str(table)},
        "weights_manager_type": "stub",
        "objective_type": "classification",
        "trainer_type": "simple",
        "trainer_cfg": {"epochs": 6, "test_every": 1, "controller_samples": 4, "derive_samples": 3,
                        **(trainer_cfg or {})},
    }
    content.update(extra)
    return content


def run(tmp_path, content, name="run", **options):
    config = write_yaml(tmp_path / f"{name}.yaml", content)
    cfg = cli.resolve_search_config(config)
    return cli.run_search(cfg, tmp_path / name, progress=False, **{"seed": 0, **options})


def read_rows(train_dir):
    with open(train_dir / CSV_NAME, newline="") as stream:
        return list(csv.DictReader(stream))


def rollout(space, ops, score=None):
    item = Rollout.from_arch(space, matrix_from_edges(ops))
    if score is not None:
        item.perf["reward"] = score
    return item


# ---------------------------------------------------------------------------
# Evaluator


def write_rows(path, header, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_evaluator_naswot_layout(tmp_path, space):
    arch_a, arch_b = matrix_from_edges((1, 2, 3, 4, 0, 1)), matrix_from_edges((3, 3, 3, 3, 3, 3))
    table = write_rows(tmp_path / "naswot.csv", ["cellstr", "test_top1", "valid_top1"], [
        [matrix_to_string(arch_a), 93.5, 90.25],
        [matrix_to_string(arch_b), 80.0, 75.5],
    ])
    evaluator = NasBench201Evaluator(space, table_path=str(table))
    first, second = evaluator.evaluate([Rollout.from_arch(space, arch_a), Rollout.from_arch(space, arch_b)])
    assert first.perf["reward"] == pytest.approx(0.9025)
    assert first.perf["test_acc"] == pytest.approx(0.935)
    assert second.perf["reward"] == pytest.approx(0.755)
    assert second.perf["test_acc"] == pytest.approx(0.80)


def test_evaluator_nats_layout_uses_test_for_both(tmp_path, space):
    arch = matrix_from_edges((0, 1, 2, 3, 4, 0))
    table = write_rows(tmp_path / "nats.csv", ["CIFAR10TestAccuracy200Epochs", "ArchitectureString"],
                       [[91.0, matrix_to_string(arch)]])
    (evaluated,) = NasBench201Evaluator(space, table_path=str(table)).evaluate([Rollout.from_arch(space, arch)])
    assert evaluated.perf["reward"] == pytest.approx(0.91)
    assert evaluated.perf["test_acc"] == pytest.approx(0.91)


def test_evaluator_lookup_is_repeatable(full_table, space):
    evaluator = NasBench201Evaluator(space, table_path=str(full_table))
    item = rollout(space, (3, 3, 1, 2, 0, 4))
    first = dict(evaluator.evaluate([item])[0].perf)
    second = dict(evaluator.evaluate([item])[0].perf)
    assert first == second
    assert first["reward"] == pytest.approx(synthetic_accuracy(item_index(item)) / 100)


def item_index(item):
    index = 0
    for op in item.key:
        index = index * 5 + op
    return index


def test_evaluator_absent_architecture(tmp_path, space):
    table = write_rows(tmp_path / "small.csv", ["cellstr", "test_top1", "valid_top1"],
                       [[matrix_to_string(matrix_from_edges((1,) * 6)), 90.0, 89.0]])
    evaluator = NasBench201Evaluator(space, table_path=str(table))
    missing = rollout(space, (2,) * 6)
    with pytest.raises(DataError, match=r"nor_conv_1x1~0.*is not in the benchmark table"):
        evaluator.evaluate([missing])


def test_evaluator_missing_table(tmp_path, space):
    with pytest.raises(ConfigError, match="table_path.*absent.csv not found"):
        NasBench201Evaluator(space, table_path=str(tmp_path / "absent.csv"))


def test_evaluator_unrecognised_columns(tmp_path, space):
    table = write_rows(tmp_path / "other.csv", ["arch", "accuracy"], [["x", 1.0]])
    with pytest.raises(DataError, match="unrecognised benchmark table columns"):
        NasBench201Evaluator(space, table_path=str(table))


def test_evaluator_rejects_non_percent_values(tmp_path, space):
    table = write_rows(tmp_path / "bad.csv", ["cellstr", "test_top1", "valid_top1"],
                       [[matrix_to_string(matrix_from_edges((1,) * 6)), "nan", 89.0]])
    with pytest.raises(DataError, match="line 2: test_top1"):
        NasBench201Evaluator(space, table_path=str(table))


def test_evaluator_needs_a_source(space):
    with pytest.raises(ConfigError, match="table_path is required"):
        NasBench201Evaluator(space)


def test_evaluator_real_nats_rows(space):
    path = data_file("nb201/nats_bench.csv")
    evaluator = NasBench201Evaluator(space, table_path=str(path))
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(evaluator.source) == len(rows) == 15625
    for row in rows[:50] + rows[-50:]:
        (item,) = evaluator.evaluate([Rollout.from_genotype(space, row["ArchitectureString"])])
        expected = float(row["CIFAR10TestAccuracy200Epochs"]) / 100
        assert item.perf["reward"] == pytest.approx(expected)
        assert item.perf["test_acc"] == pytest.approx(expected)
    assert evaluator.source.best()[2] == pytest.approx(0.9437, abs=1e-4)


def test_evaluator_real_naswot_rows(space):
    path = data_file("nb201/naswot_nb201_cifar10.csv")
    evaluator = NasBench201Evaluator(space, table_path=str(path))
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows[:50] + rows[-50:]:
        (item,) = evaluator.evaluate([Rollout.from_genotype(space, row["cellstr"])])
        assert item.perf["reward"] == pytest.approx(float(row["valid_top1"]) / 100)
        assert item.perf["test_acc"] == pytest.approx(float(row["test_top1"]) / 100)


# ---------------------------------------------------------------------------
# Evolution


class RecordingSpace(NasBench201SearchSpace):
    """Records every parent passed to mutate; can replay scripted children."""

    def __init__(self, children=()):
        super().__init__()
        self.parents = []
        self.children = [matrix_from_edges(ops) for ops in children]

    def mutate(self, arch, rng):
        self.parents.append(edges_of(arch))
        if self.children:
            return self.children.pop(0)
        return super().mutate(arch, rng)


class FixedPoolRng:
    """A numpy Generator whose ``choice`` returns a fixed tournament pool."""

    def __init__(self, pool, seed=0):
        self.pool = np.asarray(pool)
        self.generator = np.random.default_rng(seed)

    def choice(self, count, size, replace):
        assert size == len(self.pool)
        assert not replace
        assert self.pool.max() < count
        return self.pool

    def __getattr__(self, name):
        return getattr(self.generator, name)


A, B, C, D = (1, 1, 1, 1, 1, 1), (2, 2, 2, 2, 2, 2), (3, 3, 3, 3, 3, 3), (4, 4, 4, 4, 4, 4)


def filled_evo(space, rng, **options):
    evo = EvolutionController(space, rng=rng, mode="train", **{"population_size": 3, "parent_pool_size": 2, **options})
    evo.step([rollout(space, A, 0.1), rollout(space, B, 0.9), rollout(space, C, 0.5)])
    return evo


def test_evo_random_until_population_full():
    space = RecordingSpace()
    evo = EvolutionController(space, rng=np.random.default_rng(0), mode="train", population_size=3, parent_pool_size=2)
    evo.step([rollout(space, A, 0.1), rollout(space, B, 0.9)])
    evo.sample(4)
    assert space.parents == []


def test_evo_tournament_picks_best_of_pool():
    space = RecordingSpace()
    evo = filled_evo(space, FixedPoolRng([0, 2]))
    (child,) = evo.sample(1)
    assert space.parents == [C]  # the pool is {A: 0.1, C: 0.5}
    assert sum(a != c for a, c in zip(child.key, C)) == 1


def test_evo_full_pool_always_picks_best():
    space = RecordingSpace()
    evo = filled_evo(space, np.random.default_rng(0), parent_pool_size=3)
    evo.sample(10)
    assert space.parents == [B] * 10


def test_evo_regularized_removes_oldest(space):
    evo = filled_evo(space, np.random.default_rng(0))
    evo.step([rollout(space, D, 0.0)])
    assert list(evo.population) == [B, C, D]


def test_evo_perf_removes_worst(space):
    evo = filled_evo(space, np.random.default_rng(0), elimination_strategy="perf")
    evo.step([rollout(space, D, 0.3)])
    assert list(evo.population) == [B, C, D]
    evo.step([rollout(space, A, 0.0)])
    assert list(evo.population) == [B, C, D]


def test_evo_update_refreshes_age(space):
    evo = filled_evo(space, np.random.default_rng(0))
    evo.step([rollout(space, A, 0.2)])
    assert list(evo.population) == [B, C, A]
    assert evo.population[A][1] == 0.2
    evo.step([rollout(space, D, 0.0)])
    assert list(evo.population) == [C, A, D]


def test_evo_avoid_mutate_repeat_checks_child():
    new_child = (0, 1, 2, 3, 4, 0)
    space = RecordingSpace(children=[A, new_child])
    evo = filled_evo(space, FixedPoolRng([1, 2]), avoid_mutate_repeat=True)
    (child,) = evo.sample(1)
    assert child.key == new_child
    assert space.parents == [B, B]


def test_evo_avoid_repeat_raise_fallback():
    space = RecordingSpace(children=[A, C, A])
    evo = filled_evo(space, FixedPoolRng([0, 1]), avoid_repeat=True, avoid_repeat_worst_threshold=3,
                     avoid_repeat_fallback="raise")
    with pytest.raises(RepeatError, match="3 reselect-and-mutate trials"):
        evo.sample(1)


def test_evo_exclude_gives_new_distinct(space):
    evo = filled_evo(space, np.random.default_rng(1))
    excluded = {A, B, C}
    children = evo.sample(30, exclude=excluded)
    keys = [child.key for child in children]
    assert len(set(keys)) == 30
    assert not set(keys) & excluded


def test_evo_eval_all_returns_best_of_history(space):
    evo = filled_evo(space, np.random.default_rng(0), eval_sample_strategy="all")
    evo.step([rollout(space, D, 0.95)])
    evo.set_mode("eval")
    best = evo.sample(2)
    assert [item.key for item in best] == [D, B]


def test_evo_same_seed_same_children(space):
    first = filled_evo(space, np.random.default_rng(5))
    second = filled_evo(space, np.random.default_rng(5))
    assert [r.key for r in first.sample(8)] == [r.key for r in second.sample(8)]


def test_evo_state_round_trip(space):
    evo = filled_evo(space, np.random.default_rng(0))
    copy = EvolutionController(space, rng=np.random.default_rng(0), population_size=3, parent_pool_size=2)
    copy.load_state_dict(evo.state_dict())
    assert list(copy.population) == list(evo.population)
    assert [score for _, score in copy.history] == [score for _, score in evo.history]
    assert copy.mode == "train"


@pytest.mark.parametrize("options, message", [
    ({"parent_pool_size": 4}, "must not exceed population_size"),
    ({"elimination_strategy": "oldest"}, "elimination_strategy must be one of"),
    ({"eval_sample_strategy": "best"}, "eval_sample_strategy must be one of"),
    ({"avoid_repeat_fallback": "skip"}, "avoid_repeat_fallback must be one of"),
    ({"mutate_kwargs": {"node_mutate_prob": 0.5}}, "mutate_kwargs"),
])
def test_evo_invalid_options(space, options, message):
    with pytest.raises(ConfigError, match=message):
        EvolutionController(space, rng=np.random.default_rng(0), **{"population_size": 3, "parent_pool_size": 2, **options})


# ---------------------------------------------------------------------------
# Controllers on a 20-architecture space, where repeats are likely


class SmallSpace(NasBench201SearchSpace):
    """The first ``size`` NAS-Bench-201 architectures; mutation picks another one of them."""

    def __init__(self, size=20):
        super().__init__()
        self.archs = [arch for _, arch in zip(range(size), self.enumerate())]

    def random_sample(self, rng):
        return self.archs[int(rng.integers(len(self.archs)))]

    def mutate(self, arch, rng):
        others = [other for other in self.archs if edges_of(other) != edges_of(arch)]
        return others[int(rng.integers(len(others)))]


def small_space_ground_truth(space, count):
    return [Rollout.from_arch(space, arch) for arch in space.archs[:count]]


def test_predictor_based_proposes_only_unevaluated():
    space = SmallSpace()
    generator = torch.Generator().manual_seed(0)
    controller = PredictorBasedController(
        space, rng=np.random.default_rng(0), torch_generator=generator,
        inner_controller_cfg={"population_size": 4, "parent_pool_size": 2},
        arch_network_cfg=TINY_NETWORK, inner_steps=30, min_inner_sample_ratio=1,
        predictor_train_cfg={"epochs": 1},
    )
    evaluated = small_space_ground_truth(space, 15)
    for index, item in enumerate(evaluated):
        item.perf["reward"] = index / 15
    controller.step(evaluated)
    assert controller.trained

    controller.set_mode("train")
    proposed = controller.sample(5)
    evaluated_keys = {item.key for item in evaluated}
    assert {item.key for item in proposed} == {edges_of(arch) for arch in space.archs} - evaluated_keys
    assert all("predicted_score" in item.perf for item in proposed)


def test_random_controller_skips_excluded():
    space = SmallSpace()
    controller = RandomController(space, rng=np.random.default_rng(0), mode="train")
    excluded = {item.key for item in small_space_ground_truth(space, 15)}
    proposed = controller.sample(5, exclude=excluded)
    assert {item.key for item in proposed} == {edges_of(arch) for arch in space.archs} - excluded


def test_evo_empty_exclude_gives_distinct():
    space = SmallSpace(size=3)
    evo = EvolutionController(space, rng=np.random.default_rng(0), mode="train", population_size=3, parent_pool_size=2)
    keys = [item.key for item in evo.sample(3, exclude=set())]
    assert sorted(keys) == sorted(edges_of(arch) for arch in space.archs)


def test_random_controller_exhausted_space():
    space = SmallSpace(size=3)
    controller = RandomController(space, rng=np.random.default_rng(0), mode="train")
    with pytest.raises(RuntimeError, match="no unevaluated architecture"):
        controller.sample(4)


# ---------------------------------------------------------------------------
# Whole searches


@pytest.mark.parametrize("controller_type", ["random", "evo", "predictor-based"])
def test_search_never_repeats_architecture(tmp_path, full_table, controller_type):
    content = search_config(full_table, controller_type, trainer_cfg={"epochs": 8, "controller_samples": 6})
    summary = run(tmp_path, content)
    rows = read_rows(tmp_path / "run")
    genotypes = [row["genotype"] for row in rows]
    assert len(genotypes) == 48
    assert len(set(genotypes)) == 48
    assert summary["queries"] == 48
    best = max(rows, key=lambda row: float(row["reward"]))
    assert summary["best_genotype"] == best["genotype"]
    assert summary["best_query"] == int(best["query"])
    assert summary["best_test_acc"] == float(best["test_acc"])


def test_search_predictor_scores_after_training(tmp_path, full_table):
    run(tmp_path, search_config(full_table))
    rows = read_rows(tmp_path / "run")
    # begin_train_num 6 with 4 queries per epoch: the predictor is first trained after epoch 2.
    assert all(row["predicted_score"] == "" for row in rows if int(row["epoch"]) <= 2)
    assert all(row["predicted_score"] != "" for row in rows if int(row["epoch"]) > 2)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("controller_type", ["predictor-based", "evo"])
def test_resume_reproduces_uninterrupted_run(tmp_path, full_table, monkeypatch, controller_type):
    content = search_config(full_table, controller_type)
    expected_summary = run(tmp_path, content, name="whole", save_every=2)
    expected_rows = (tmp_path / "whole" / CSV_NAME).read_text()

    original = NasBench201Evaluator.evaluate
    calls = []

    def interrupt_in_epoch_five(self, rollouts):
        calls.append(1)
        if len(calls) == 5:
            raise Interrupted
        return original(self, rollouts)

    monkeypatch.setattr(NasBench201Evaluator, "evaluate", interrupt_in_epoch_five)
    with pytest.raises(Interrupted):
        run(tmp_path, content, name="split", save_every=2)
    monkeypatch.setattr(NasBench201Evaluator, "evaluate", original)
    assert len(read_rows(tmp_path / "split")) == 16

    config = tmp_path / "split.yaml"
    resumed = cli.run_search(cli.resolve_search_config(config), tmp_path / "split", seed=None,
                             save_every=2, resume=True, progress=False)
    assert (tmp_path / "split" / CSV_NAME).read_text() == expected_rows
    for key in ("best_genotype", "best_reward", "best_test_acc", "best_query", "queries", "seed"):
        assert resumed[key] == expected_summary[key]


def test_resume_rejects_changed_config(tmp_path, full_table):
    content = search_config(full_table, "random", trainer_cfg={"epochs": 2})
    run(tmp_path, content, save_every=1)
    content["trainer_cfg"]["controller_samples"] = 5
    cfg = cli.resolve_search_config(write_yaml(tmp_path / "run.yaml", content))
    with pytest.raises(ConfigError, match="another config"):
        cli.run_search(cfg, tmp_path / "run", seed=0, resume=True, progress=False)


def test_existing_train_dir_needs_resume(tmp_path, full_table):
    content = search_config(full_table, "random", trainer_cfg={"epochs": 1})
    run(tmp_path, content)
    with pytest.raises(ConfigError, match="already contains a search"):
        run(tmp_path, content)


def test_search_writes_outputs(tmp_path, full_table):
    run(tmp_path, search_config(full_table, "random", trainer_cfg={"epochs": 2}))
    train_dir = tmp_path / "run"
    summary = json.loads((train_dir / SUMMARY_NAME).read_text())
    assert summary["queries"] == 8
    assert (train_dir / "search.log").read_text().count("search finished") == 1
    saved = load_yaml(train_dir / "config.yaml")
    assert saved["evaluator_cfg"]["table_path"] == str(full_table)
    assert not (train_dir / CHECKPOINT_NAME).exists()


# ---------------------------------------------------------------------------
# Pretrained predictors


def save_tiny_ensemble(path, space, network_cfg=TINY_ENSEMBLE):
    model_cfg, _, _ = split_network_cfg(network_cfg)
    model = build_arch_network("dynamic_ensemble_pointwise_comparator", space, model_cfg)
    meta = {"arch_network_type": "dynamic_ensemble_pointwise_comparator", "arch_network_cfg": network_cfg,
            "search_space": "nasbench-201", "low_fidelity_types": ["flops", "params"]}
    save_checkpoint(path, model, meta)
    return path


def ensemble_config(table, checkpoint, **controller_options):
    content = search_config(table)
    content["controller_cfg"].update(
        arch_network_type="dynamic_ensemble_pointwise_comparator",
        arch_network_cfg=TINY_ENSEMBLE,
        pretrained_predictor_path=str(checkpoint),
        **controller_options,
    )
    return content


def test_pretrained_from_start_drives_first_epoch(tmp_path, full_table, space):
    checkpoint = save_tiny_ensemble(tmp_path / "pre_final.ckpt", space)
    run(tmp_path, ensemble_config(full_table, checkpoint, use_pretrained_from_start=True))
    rows = read_rows(tmp_path / "run")
    assert all(row["predicted_score"] != "" for row in rows)


def test_pretrained_waits_for_training_by_default(tmp_path, full_table, space):
    checkpoint = save_tiny_ensemble(tmp_path / "pre_final.ckpt", space)
    run(tmp_path, ensemble_config(full_table, checkpoint))
    rows = read_rows(tmp_path / "run")
    assert all(row["predicted_score"] == "" for row in rows if int(row["epoch"]) == 1)


def test_pretrained_path_relative_to_config(tmp_path, full_table, space):
    save_tiny_ensemble(tmp_path / "pre_final.ckpt", space)
    config = write_yaml(tmp_path / "search.yaml", ensemble_config(full_table, "pre_final.ckpt"))
    cfg = cli.resolve_search_config(config)
    assert cfg["controller_cfg"]["pretrained_predictor_path"] == str(tmp_path / "pre_final.ckpt")


def test_table_path_found_in_awnas_data(tmp_path, full_table, monkeypatch):
    data = tmp_path / "awnas_data"
    (data / "nasbench-201").mkdir(parents=True)
    (data / "nasbench-201" / "table.csv").write_bytes(full_table.read_bytes())
    monkeypatch.setenv("AWNAS_DATA", str(data))
    content = search_config(full_table, "random", evaluator_cfg={"table_path": "nasbench-201/table.csv"})
    cfg = cli.resolve_search_config(write_yaml(tmp_path / "search.yaml", content))
    assert cfg["evaluator_cfg"]["table_path"] == str(data / "nasbench-201" / "table.csv")


def test_shipped_config_loads_ensemble_checkpoint(tmp_path, full_table, space):
    training_cfg = load_yaml(REPO_ROOT / "cfgs" / "dynamic_ensemble_nb201_gates_config.yaml")
    search_cfg = load_yaml(SHIPPED_CONFIG)
    assert search_cfg["controller_cfg"]["arch_network_cfg"] == training_cfg["arch_network_cfg"]

    checkpoint = save_tiny_ensemble(tmp_path / "pre_final.ckpt", space, training_cfg["arch_network_cfg"])
    cfg = cli.resolve_search_config(SHIPPED_CONFIG, table=str(full_table), pretrained_predictor=str(checkpoint))
    trainer, _, _ = cli.build_search(cfg, seed=0, device=torch.device("cpu"))
    assert trainer.epochs * trainer.controller_samples == 50
    assert trainer.controller.inner_steps == 50


def test_predictor_train_cfg_merges_defaults():
    merged = merge_train_cfg({"epochs": 3})
    assert merged["epochs"] == 3
    assert merged["batch_size"] == PREDICTOR_TRAIN_DEFAULTS["batch_size"]


# ---------------------------------------------------------------------------
# Config errors


def build(tmp_path, content):
    cfg = cli.resolve_search_config(write_yaml(tmp_path / "bad.yaml", content))
    return cli.build_search(cfg, seed=0, device=torch.device("cpu"))


def test_error_unknown_top_level_key(tmp_path, full_table):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['controler_type'\]"):
        build(tmp_path, search_config(full_table, "random", controler_type="evo"))


def test_error_unknown_controller_key(tmp_path, full_table):
    content = search_config(full_table, "predictor-based")
    content["controller_cfg"]["inner_step"] = 3
    with pytest.raises(ConfigError, match=r"controller_cfg: unknown key\(s\) \['inner_step'\]"):
        build(tmp_path, content)


def test_error_unknown_inner_controller_key(tmp_path, full_table):
    content = search_config(full_table, "predictor-based")
    content["controller_cfg"]["inner_controller_cfg"]["population"] = 3
    with pytest.raises(ConfigError, match=r"inner_controller_cfg: unknown key\(s\) \['population'\]"):
        build(tmp_path, content)


def test_error_unknown_predictor_train_key(tmp_path, full_table):
    content = search_config(full_table, "predictor-based")
    content["controller_cfg"]["predictor_train_cfg"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"predictor_train_cfg: unknown key\(s\) \['epoch'\]"):
        build(tmp_path, content)


def test_error_unknown_trainer_key(tmp_path, full_table):
    with pytest.raises(ConfigError, match=r"trainer_cfg: unknown key\(s\) \['epoch'\]"):
        build(tmp_path, search_config(full_table, "random", trainer_cfg={"epoch": 3}))


def test_error_unknown_controller_type(tmp_path, full_table):
    content = search_config(full_table, "random")
    content["controller_type"] = "bayesian"
    with pytest.raises(ConfigError, match=r"controller_type: unknown controller 'bayesian'.*predictor-based"):
        build(tmp_path, content)


def test_error_unknown_evaluator_type(tmp_path, full_table):
    with pytest.raises(ConfigError, match="evaluator_type: unknown evaluator 'nasbench-101'"):
        build(tmp_path, search_config(full_table, "random", evaluator_type="nasbench-101"))


def test_error_missing_table(tmp_path, full_table):
    content = search_config(full_table, "random", evaluator_cfg={"table_path": "no_such_table.csv"})
    with pytest.raises(ConfigError, match="evaluator_cfg.table_path: no_such_table.csv not found"):
        build(tmp_path, content)


def test_error_missing_pretrained(tmp_path, full_table):
    content = ensemble_config(full_table, tmp_path / "absent.ckpt")
    with pytest.raises(ConfigError, match="pretrained_predictor_path: .*absent.ckpt not found"):
        build(tmp_path, content)


def test_error_checkpoint_of_other_network_cfg(tmp_path, full_table, space):
    checkpoint = save_tiny_ensemble(tmp_path / "pre_final.ckpt", space, {**TINY_ENSEMBLE, "auxiliary_head_num": 3})
    with pytest.raises(ConfigError, match="another arch_network_cfg.*auxiliary_head_num: checkpoint 3, config 2"):
        build(tmp_path, ensemble_config(full_table, checkpoint))


def test_error_state_dict_not_fitting(tmp_path, full_table, space):
    model_cfg, _, _ = split_network_cfg({**TINY_ENSEMBLE, "mlp_hiddens": [4]})
    model = build_arch_network("dynamic_ensemble_pointwise_comparator", space, model_cfg)
    path = tmp_path / "plain.ckpt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit the configured predictor"):
        build(tmp_path, ensemble_config(full_table, path))


def test_error_from_start_without_checkpoint(tmp_path, full_table):
    content = search_config(full_table)
    content["controller_cfg"]["use_pretrained_from_start"] = True
    with pytest.raises(ConfigError, match="use_pretrained_from_start needs pretrained_predictor_path"):
        build(tmp_path, content)


def test_pretrained_override_none(tmp_path, full_table):
    cfg = cli.resolve_search_config(SHIPPED_CONFIG, table=str(full_table), pretrained_predictor="none")
    assert cfg["controller_cfg"]["pretrained_predictor_path"] is None


def test_cli_reports_config_error(tmp_path, full_table, capsys):
    from dele.cli import main

    config = write_yaml(tmp_path / "bad.yaml", search_config(full_table, "random", trainer_cfg={"epoch": 3}))
    status = main(["search", str(config), "--train-dir", str(tmp_path / "out"), "--no-progress"])
    assert status == 2
    assert "unknown key(s) ['epoch']" in capsys.readouterr().err
