"""The NDS space, the NDS LSTM plugin (discovery, both runtimes) and the full training path."""

import importlib.util
import math
import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from conftest import REPO_ROOT
from dele import registry
from dele.data import Record, load_records, save_records
from dele.embedders import build_embedder
from dele.predictors import DynamicEnsemblePointwiseComparator
from dele.registry import RegistryError, get_class, load_plugins
from dele.scripts import dynamic_ensemble_main, train_predictor_main
from dele.spaces import get_search_space
from dele.spaces.nds import FAMILY_CHOICES, decision_names

PLUGIN_DIR = REPO_ROOT / "plugin"
PLUGIN_FILE = PLUGIN_DIR / "nds_arch_embedder.py"
RESNET_ARCH = OrderedDict([
    ("depths.0", 1), ("depths.1", 2), ("depths.2", 4), ("widths.0", 16), ("widths.1", 32), ("widths.2", 64),
])
RESNEXTA_ARCH = OrderedDict([
    ("depths.0", 1), ("depths.1", 2), ("depths.2", 4), ("widths.0", 16), ("widths.1", 32), ("widths.2", 64),
    ("bot_muls.0", 0.25), ("bot_muls.1", 0.5), ("bot_muls.2", 1.0),
    ("num_groups.0", 1), ("num_groups.1", 2), ("num_groups.2", 4),
])


def _shipped_cfg(name):
    return yaml.safe_load((REPO_ROOT / "cfgs" / name).read_text())


def _embedder_cfg(family, small=False):
    cfg = dict(_shipped_cfg(f"train_nds_{family}_config.yaml")["arch_network_cfg"]["arch_embedder_cfg"])
    if small:
        cfg.update({key: 4 for key in cfg if key.endswith("embedding_size")}, hidden_size=8)
    return cfg


def _sample(family, count, seed=0):
    space = get_search_space("nds", family=family)
    rng = np.random.default_rng(seed)
    archs, keys = [], set()
    while len(archs) < count:
        arch = space.random_sample(rng)
        if space.canonical_key(arch) not in keys:
            keys.add(space.canonical_key(arch))
            archs.append(arch)
    return archs


@pytest.fixture
def space():
    return get_search_space("nds")


@pytest.fixture
def isolated_registry(monkeypatch):
    """Run with a copy of the registry and no plugin loaded; restore both afterwards."""
    tables = {name: dict(entries) for name, entries in registry._TABLES.items()}
    monkeypatch.setattr(registry, "_TABLES", tables)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_last_report", None)
    monkeypatch.delenv("AWNAS_PLUGIN_DIR", raising=False)
    modules = set(sys.modules)
    yield tables
    for name in set(sys.modules) - modules:
        if "plugins" in name:
            del sys.modules[name]


def _home_with_link(tmp_path, name="home"):
    """An AWNAS_HOME whose plugins/dele is a symlink to the repository's plugin folder."""
    plugins = tmp_path / name / "plugins"
    plugins.mkdir(parents=True)
    os.symlink(PLUGIN_DIR, plugins / "dele")
    return tmp_path / name


@pytest.fixture
def linked_plugin(tmp_path, monkeypatch, isolated_registry):
    home = _home_with_link(tmp_path)
    monkeypatch.setenv("AWNAS_HOME", str(home))
    report = load_plugins()
    assert not report.failed
    return home


# ---------------------------------------------------------------------------
# The nds space


@pytest.mark.parametrize("arch, family", [(RESNET_ARCH, "resnet"), (RESNEXTA_ARCH, "resnexta")])
def test_validate_detects_family(space, arch, family):
    validated = space.validate(dict(arch))
    assert isinstance(validated, OrderedDict)
    assert list(validated) == decision_names(family)
    assert validated == arch


def test_validate_canonical_value_types(space):
    arch = OrderedDict(RESNEXTA_ARCH, **{"bot_muls.2": 1, "depths.0": np.int64(1), "widths.0": 16.0})
    validated = space.validate(arch)
    assert type(validated["bot_muls.2"]) is float
    assert type(validated["depths.0"]) is int
    assert type(validated["widths.0"]) is int


@pytest.mark.parametrize("arch, message", [
    (OrderedDict(RESNET_ARCH, **{"kernel.0": 3}), "unknown decisions \\['kernel.0'\\]"),
    (OrderedDict(list(RESNET_ARCH.items())[:5]), "do not match"),
    (OrderedDict(reversed(list(RESNET_ARCH.items()))), "out of order"),
    (OrderedDict(RESNET_ARCH, **{"depths.1": 5}), "depths.1 = 5 is not one of"),
    (OrderedDict(RESNET_ARCH, **{"widths.2": "64"}), "widths.2 must be a number"),
    (OrderedDict(RESNET_ARCH, **{"depths.0": True}), "depths.0 must be a number"),
    (OrderedDict(RESNEXTA_ARCH, **{"depths.2": 3}), "depths.2 = 3 is not one of \\[1, 2, 4, 8, 16\\]"),
    (OrderedDict(RESNEXTA_ARCH, **{"bot_muls.1": 0.75}), "bot_muls.1 = 0.75"),
    ([1, 2, 4, 16, 32, 64], "expected an ordered dict"),
])
def test_validate_rejects(space, arch, message):
    with pytest.raises(ValueError, match=message):
        space.validate(arch)


def test_validate_with_family_rejects_other_family():
    with pytest.raises(ValueError, match="do not match"):
        get_search_space("nds", family="resnet").validate(RESNEXTA_ARCH)
    with pytest.raises(ValueError, match="family must be one of"):
        get_search_space("nds", family="resnext")


def test_genotype_round_trip(space):
    text = space.genotype(RESNET_ARCH)
    assert text == ("OrderedDict([('depths.0', 1), ('depths.1', 2), ('depths.2', 4), ('widths.0', 16), "
                    "('widths.1', 32), ('widths.2', 64)])")
    assert space.from_genotype(text) == RESNET_ARCH
    for arch in _sample("resnexta", 20):
        assert space.from_genotype(space.genotype(arch)) == arch


@pytest.mark.parametrize("text", [
    "OrderedDict({'depths.0': 1, 'depths.1': 2, 'depths.2': 4, 'widths.0': 16, 'widths.1': 32, 'widths.2': 64})",
    "collections.OrderedDict([('depths.0', 1), ('depths.1', 2), ('depths.2', 4), ('widths.0', 16), "
    "('widths.1', 32), ('widths.2', 64)])",
    "{'depths.0': 1, 'depths.1': 2, 'depths.2': 4, 'widths.0': 16, 'widths.1': 32, 'widths.2': 64}",
])
def test_genotype_parser_accepts_variants(space, text):
    assert space.from_genotype(text) == RESNET_ARCH


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "expected OrderedDict"),
    ("OrderedDict([('depths.0', len('ab'))])", "literals"),
    ("OrderedDict([('depths.0',)])", "pairs"),
    ("OrderedDict([", "invalid nds genotype"),
])
def test_genotype_parser_rejects(space, text, message):
    with pytest.raises(ValueError, match=message):
        space.from_genotype(text)


@pytest.mark.parametrize("family", ["resnet", "resnexta"])
def test_random_sample_covers_value_sets(family):
    space = get_search_space("nds", family=family)
    archs = [space.random_sample(np.random.default_rng(seed)) for seed in range(300)]
    for arch in archs:
        assert space.validate(arch) == arch
    for kind, values in FAMILY_CHOICES[family].items():
        seen = {arch[f"{kind}.{stage}"] for arch in archs for stage in range(3)}
        assert seen == set(values), kind


def test_random_sample_needs_family(space):
    with pytest.raises(ValueError, match="needs a family"):
        space.random_sample(np.random.default_rng(0))


@pytest.mark.parametrize("family", ["resnet", "resnexta"])
def test_mutate_changes_one_decision(space, family):
    rng = np.random.default_rng(3)
    changed_names = set()
    for arch in _sample(family, 100):
        original = OrderedDict(arch)
        mutated = space.mutate(arch, rng)
        assert arch == original
        assert space.validate(mutated) == mutated
        changed = [name for name in arch if arch[name] != mutated[name]]
        assert len(changed) == 1
        changed_names.update(changed)
    assert changed_names == set(decision_names(family))


def test_encode_values(space):
    encoded = space.encode([RESNEXTA_ARCH, RESNEXTA_ARCH])
    assert encoded.dtype == torch.float32
    assert encoded.shape == (2, 12)
    assert encoded[0].tolist() == [float(value) for value in RESNEXTA_ARCH.values()]
    assert space.encode([RESNET_ARCH]).shape == (1, 6)
    assert get_search_space("nds", family="resnet").encode([]).shape == (0, 6)
    with pytest.raises(ValueError, match="share a family"):
        space.encode([RESNET_ARCH, RESNEXTA_ARCH])


@pytest.mark.parametrize("suffix", [".json", ".pkl"])
def test_records_round_trip(space, tmp_path, suffix):
    records = [Record(arch, 0.5 + 0.01 * index, {"flops": float(index)})
               for index, arch in enumerate(_sample("resnexta", 5))]
    path = tmp_path / f"records{suffix}"
    save_records(path, records, space)
    loaded = load_records(path, space)
    assert [record.arch for record in loaded] == [record.arch for record in records]
    assert all(list(record.arch) == decision_names("resnexta") for record in loaded)
    if suffix == ".pkl":
        with open(path, "rb") as stream:
            assert isinstance(pickle.load(stream)[0][0], OrderedDict)


# ---------------------------------------------------------------------------
# Plugin discovery


def test_plugin_not_in_package():
    assert importlib.util.find_spec("dele.nds_arch_embedder") is None
    assert not (PLUGIN_DIR / "__init__.py").exists()


def test_missing_plugin_error_tells_how_to_link(tmp_path, monkeypatch, isolated_registry):
    monkeypatch.setenv("AWNAS_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(RegistryError, match="ln -s") as error:
        get_class("arch_embedder", "resnet_lstm")
    assert str(tmp_path / "empty_home" / "plugins") in str(error.value)


def test_plugin_loads_through_symlink(linked_plugin, isolated_registry):
    report = registry.last_plugin_report()
    assert [os.path.basename(path) for path in report.loaded] == ["nds_arch_embedder.py"]
    for name in ("resnet_lstm", "resnexta_lstm"):
        cls = get_class("arch_embedder", name)
        assert cls.__module__.endswith("plugins__dele_nds_arch_embedder")
        assert name in isolated_registry["arch_embedder"]


def test_broken_plugin_is_reported_and_skipped(tmp_path, monkeypatch, isolated_registry):
    home = _home_with_link(tmp_path)
    (home / "plugins" / "broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    (home / "plugins" / "test_ignored.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.setenv("AWNAS_HOME", str(home))

    report = load_plugins()
    assert list(report.failed) == [str(home / "plugins" / "broken.py")]
    assert "RuntimeError: broken on purpose" in report.failed[str(home / "plugins" / "broken.py")]
    assert not any("test_ignored" in path for path in report.loaded)
    assert get_class("arch_embedder", "resnet_lstm").NAME == "resnet_lstm"


def test_homes_load_their_own_plugin_version(tmp_path, monkeypatch, isolated_registry):
    for version in ("first", "second"):
        plugins = tmp_path / version / "plugins"
        plugins.mkdir(parents=True)
        source = PLUGIN_FILE.read_text() + f"\nResNetLSTMEmbedder.PLUGIN_VERSION = {version!r}\n"
        (plugins / "nds_arch_embedder.py").write_text(source)

    for version in ("first", "second", "first"):
        monkeypatch.setenv("AWNAS_HOME", str(tmp_path / version))
        isolated_registry["arch_embedder"].pop("resnet_lstm", None)
        isolated_registry["arch_embedder"].pop("resnexta_lstm", None)
        load_plugins()
        assert get_class("arch_embedder", "resnet_lstm").PLUGIN_VERSION == version


# ---------------------------------------------------------------------------
# The plugin embedders under dele


@pytest.mark.parametrize("family", ["resnet", "resnexta"])
def test_plugin_embedder_forward(linked_plugin, space, family):
    embedder = build_embedder(f"{family}_lstm", space, _embedder_cfg(family))
    embedded = embedder(space.encode(_sample(family, 7)))
    assert embedded.shape == (7, 100)
    assert embedder.out_dim == 100
    torch.testing.assert_close(embedded.norm(dim=-1), torch.ones(7))
    embedded.sum().backward()
    assert embedder.depth_embedding.weight.grad is not None


def test_plugin_embedder_distinguishes_values(linked_plugin, space):
    embedder = build_embedder("resnet_lstm", space, _embedder_cfg("resnet", small=True))
    other = OrderedDict(RESNET_ARCH, **{"widths.1": 40})
    first, second = embedder(space.encode([RESNET_ARCH, other]))
    assert not torch.allclose(first, second)


def test_plugin_embedder_checks_inputs(linked_plugin, space):
    cfg = _embedder_cfg("resnet")
    cfg["depth_choices"] = [1, 2, 3, 4]
    with pytest.raises(ValueError, match="lacks \\[6, 8, 12, 16, 24\\]"):
        build_embedder("resnet_lstm", space, cfg)

    embedder = build_embedder("resnet_lstm", space, _embedder_cfg("resnet", small=True))
    with pytest.raises(ValueError, match="expects a \\(B, 6\\) value tensor"):
        embedder(space.encode([RESNEXTA_ARCH]))
    unknown = space.encode([RESNET_ARCH])
    unknown[0, 0] = 5.0  # a depth outside every choice list
    assert torch.isnan(embedder(unknown)).all()


@pytest.mark.parametrize("family", ["resnet", "resnexta"])
def test_plugin_embedders_as_ensemble_experts(linked_plugin, space, family):
    torch.manual_seed(0)
    model = DynamicEnsemblePointwiseComparator(
        space, auxiliary_head_num=3, arch_embedder_type=f"{family}_lstm",
        arch_embedder_cfg=_embedder_cfg(family, small=True), mlp_hiddens=[8],
    )
    encoded = space.encode(_sample(family, 5))
    experts = model.expert_scores(encoded)
    assert experts.shape == (3, 5)
    (model.score(encoded).sum() + experts.sum()).backward()
    assert all(p.grad is not None for p in model.experts.params.values())


# ---------------------------------------------------------------------------
# The plugin under aw_nas (a stand-in base class, since aw_nas is not a dependency)


@pytest.fixture
def awnas_plugin(monkeypatch):
    """Import the plugin file with an ``aw_nas.evaluator.arch_network`` module present."""

    class ArchEmbedder(nn.Module):
        def __init__(self, schedule_cfg=None):
            super().__init__()
            self.schedule_cfg = schedule_cfg

    module = types.ModuleType("aw_nas.evaluator.arch_network")
    module.ArchEmbedder = ArchEmbedder
    monkeypatch.setitem(sys.modules, "aw_nas", types.ModuleType("aw_nas"))
    monkeypatch.setitem(sys.modules, "aw_nas.evaluator", types.ModuleType("aw_nas.evaluator"))
    monkeypatch.setitem(sys.modules, "aw_nas.evaluator.arch_network", module)

    spec = importlib.util.spec_from_file_location("awnas_nds_arch_embedder", PLUGIN_FILE)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    assert plugin.AWNAS_RUNTIME
    return plugin


@pytest.mark.parametrize("family, class_name", [
    ("resnet", "ResNetLSTMEmbedder"), ("resnexta", "ResNeXtALSTMEmbedder"),
])
def test_awnas_runtime_matches_dele(linked_plugin, awnas_plugin, space, family, class_name):
    cfg = _embedder_cfg(family, small=True)
    cfg["num_layers"] = 2
    awnas_embedder = getattr(awnas_plugin, class_name)(None, **cfg)
    assert isinstance(awnas_embedder.lstm, nn.LSTM)
    dele_embedder = build_embedder(f"{family}_lstm", space, cfg)
    dele_embedder.load_state_dict(awnas_embedder.state_dict())

    archs = _sample(family, 6)
    expected = dele_embedder(space.encode(archs))
    torch.testing.assert_close(awnas_embedder(archs), expected)
    # aw_nas passed object arrays of dicts as well as lists
    torch.testing.assert_close(awnas_embedder(np.array(archs, dtype=object)), expected)


def test_awnas_runtime_rejects_unknown_value(awnas_plugin):
    embedder = awnas_plugin.ResNetLSTMEmbedder(None, **_embedder_cfg("resnet", small=True))
    with pytest.raises(ValueError, match="5 is not in list"):
        embedder([OrderedDict(RESNET_ARCH, **{"depths.0": 5})])


# ---------------------------------------------------------------------------
# Full training path on synthetic NDS records


def _synthetic_records(family, count, seed):
    """Accuracy rises with log depth and log width (plus noise); three low-fidelity
    scores: flops-like and params-like complexity, and a noisy copy of the accuracy."""
    rng = np.random.default_rng(seed)
    records = []
    for arch in _sample(family, count, seed):
        depths = np.array([arch[f"depths.{s}"] for s in range(3)], dtype=float)
        widths = np.array([arch[f"widths.{s}"] for s in range(3)], dtype=float)
        quality = 0.04 * np.log2(depths).sum() + 0.06 * np.log2(widths).sum() / 3
        acc = 0.5 + quality + rng.normal(0, 0.01)
        scores = {
            "flops": float((depths * widths ** 2 / 4 ** np.arange(3)).sum()),
            "params": float((depths * widths ** 2).sum()),
            "synflow": float(acc + rng.normal(0, 0.03)),
        }
        records.append(Record(arch, float(acc), scores))
    return records


def _write_config(path, source, changes):
    cfg = _shipped_cfg(source)
    cfg["arch_network_cfg"]["arch_embedder_cfg"].update(changes.pop("embedder"))
    cfg["arch_network_cfg"].update(changes.pop("network", {}))
    cfg.update(changes)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_args(cfg, data, train_dir):
    return [str(cfg), "--search-space", "nds", "--train-pkl", str(data / "train.pkl"), "--valid-pkl",
            str(data / "valid.pkl"), "--train-dir", str(train_dir), "--seed", "0", "--test-every", "3"]


def _scores(train_dir):
    with open(train_dir / "output.pkl", "rb") as stream:
        return pickle.load(stream)


@pytest.fixture
def nds_data(tmp_path, space):
    def write(family):
        folder = tmp_path / f"data_{family}"
        folder.mkdir()
        records = _synthetic_records(family, 90, seed=1)
        save_records(folder / "train.pkl", records[:60], space)
        save_records(folder / "valid.pkl", records[60:], space)
        return folder
    return write


# Every script run rescans the plugin folder, so the plugin classes replace themselves.
reloads_plugin = pytest.mark.filterwarnings("ignore:arch_embedder '(resnet|resnexta)_lstm'.* replaces")


def _small_embedder(family):
    sizes = {key: 8 for key in _embedder_cfg(family) if key.endswith("embedding_size")}
    return {**sizes, "hidden_size": 16}


@reloads_plugin
@pytest.mark.parametrize("family", ["resnet", "resnexta"])
def test_train_predictor_nds(linked_plugin, nds_data, tmp_path, family):
    data = nds_data(family)
    cfg = _write_config(tmp_path / "cfg.yaml", f"train_nds_{family}_config.yaml", {
        "embedder": _small_embedder(family), "network": {"mlp_hiddens": [16]},
        "epochs": 3, "finetune_epochs": 6, "batch_size": 32,
    })
    train_dir = tmp_path / "run"
    train_predictor_main([*_run_args(cfg, data, train_dir), "--low-fidelity-type", "flops", "--train-ratio", "0.5"])
    for name in ("pre_train.ckpt", "final.ckpt", "output.pkl"):
        assert (train_dir / name).is_file(), name
    output = _scores(train_dir)
    assert len(output["score"]) == 30
    assert all(math.isfinite(score) for score in output["score"])

    reload_dir = tmp_path / "reload"
    train_predictor_main([*_run_args(cfg, data, reload_dir), "--load", str(train_dir / "final.ckpt"),
                          "--test-only", "--low-fidelity-type", "flops"])
    assert _scores(reload_dir)["score"] == pytest.approx(output["score"], abs=1e-6)


@reloads_plugin
def test_dynamic_ensemble_nds(linked_plugin, nds_data, tmp_path):
    data = nds_data("resnet")
    cfg = _write_config(tmp_path / "cfg.yaml", "dynamic_ensemble_nds_resnet_config.yaml", {
        "embedder": _small_embedder("resnet"), "network": {"mlp_hiddens": [16], "auxiliary_head_num": 3},
        "low_fidelity_type": ["flops", "params", "synflow"],
        "pretrain_epochs": 3, "epochs": 3, "batch_size": 32,
    })
    train_dir = tmp_path / "dele"
    dynamic_ensemble_main([*_run_args(cfg, data, train_dir), "--train-ratio", "0.5"])
    for name in ("pre_final.ckpt", "final.ckpt", "output.pkl"):
        assert (train_dir / name).is_file(), name
    output = _scores(train_dir)
    assert set(output["low_fidelity_score"]) == {"flops", "params", "synflow"}
    log = (train_dir / "train.log").read_text()
    assert "kendall tau synflow" in log

    for checkpoint in ("pre_final.ckpt", "final.ckpt"):
        reload_dir = tmp_path / f"reload_{checkpoint}"
        dynamic_ensemble_main([*_run_args(cfg, data, reload_dir), "--load", str(train_dir / checkpoint),
                               "--test-only"])
        assert (reload_dir / "output.pkl").is_file()
    assert _scores(tmp_path / "reload_final.ckpt")["score"] == pytest.approx(output["score"], abs=1e-6)


def test_shipped_nds_configs_build(linked_plugin, space):
    for family in ("resnet", "resnexta"):
        cfg = _shipped_cfg(f"dynamic_ensemble_nds_{family}_config.yaml")
        network = cfg["arch_network_cfg"]
        assert network["auxiliary_head_num"] == len(cfg["low_fidelity_type"]) == 10
        embedder = build_embedder(network["arch_embedder_type"], space, network["arch_embedder_cfg"])
        assert embedder.out_dim == network["arch_embedder_cfg"]["hidden_size"]
