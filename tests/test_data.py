"""Record files: bad-input errors, round trips, normalisation and ``split_head``."""

import json
import math
import pickle

import numpy as np
import pytest
import torch

from dele.data import (
    ArchDataset,
    DataError,
    NormalizationStats,
    Record,
    available_types,
    load_records,
    low_fidelity_matrix,
    save_records,
    split_head,
)
from dele.spaces.nb201 import NasBench201SearchSpace, naslib_to_matrix

ARCHS = [naslib_to_matrix(ops) for ops in [(0, 2, 3, 2, 3, 1), (4, 0, 4, 1, 2, 0), (2, 2, 2, 2, 2, 2), (1, 0, 3, 3, 4, 2)]]


@pytest.fixture(scope="module")
def space():
    return NasBench201SearchSpace()


def _raw_records():
    """Four records in the original pickle layout, with float matrices."""
    return [
        (arch.astype(np.float64), 0.5 + 0.1 * index, {"snip": float(index), "flops": 10.0 * index + 1})
        for index, arch in enumerate(ARCHS)
    ]


def _write_pickle(path, content):
    with open(path, "wb") as stream:
        pickle.dump(content, stream)
    return path


def _json_content(records):
    return {
        "format": "dele-records",
        "version": 1,
        "search_space": "nasbench-201",
        "records": [{"arch": arch.tolist(), "acc": acc, "low_fidelity": scores} for arch, acc, scores in records],
    }


def _write_json(path, content):
    path.write_text(json.dumps(content))
    return path


def _assert_names(error, path, index=None, field=None):
    """Assert that a DataError names the file, and the record index and field where given."""
    message = str(error.value)
    assert message.startswith(str(path))
    assert error.value.index == index
    assert error.value.field == field
    if index is not None:
        assert f"record {index}" in message
    if field is not None:
        assert repr(field) in message


def _records(space, raw=None):
    return [Record(space.validate(arch), acc, scores) for arch, acc, scores in (raw or _raw_records())]


# ---------------------------------------------------------------------------
# File-level errors


@pytest.mark.parametrize("suffix", [".pkl", ".json"])
def test_empty_file(tmp_path, space, suffix):
    path = tmp_path / f"records{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty") as error:
        load_records(path, space)
    _assert_names(error, path)


def test_empty_pickle_list(tmp_path, space):
    path = _write_pickle(tmp_path / "records.pkl", [])
    with pytest.raises(DataError, match="contains no records") as error:
        load_records(path, space)
    _assert_names(error, path)


def test_empty_json_records(tmp_path, space):
    path = _write_json(tmp_path / "records.json", _json_content([]))
    with pytest.raises(DataError, match="contains no records") as error:
        load_records(path, space)
    _assert_names(error, path)


@pytest.mark.parametrize("name", ["absent.pkl", "absent.json"])
def test_missing_file(tmp_path, space, name):
    path = tmp_path / name
    with pytest.raises(DataError, match="file not found") as error:
        load_records(path, space)
    _assert_names(error, path)


def test_non_list_pickle(tmp_path, space):
    path = _write_pickle(tmp_path / "records.pkl", {"records": _raw_records()})
    with pytest.raises(DataError, match="expected a list of records, got dict") as error:
        load_records(path, space)
    _assert_names(error, path)


def test_corrupt_pickle(tmp_path, space):
    path = tmp_path / "records.pkl"
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot unpickle") as error:
        load_records(path, space)
    _assert_names(error, path)


def test_unknown_suffix(tmp_path, space):
    path = tmp_path / "records.csv"
    path.write_text("arch,acc\n")
    with pytest.raises(DataError, match="unknown file type") as error:
        load_records(path, space)
    _assert_names(error, path)


def test_invalid_json(tmp_path, space):
    path = tmp_path / "records.json"
    path.write_text("{\"format\": ")
    with pytest.raises(DataError, match="invalid JSON") as error:
        load_records(path, space)
    _assert_names(error, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other-records"}, "not a dele records file"),
        ({"format": None}, "not a dele records file"),
        ({"version": 2}, "unsupported version 2"),
        ({"records": {"0": {}}}, "\"records\" must be a list, got dict"),
    ],
)
def test_json_wrong_header(tmp_path, space, change, message):
    content = _json_content(_raw_records())
    content.update(change)
    path = _write_json(tmp_path / "records.json", content)
    with pytest.raises(DataError, match=message) as error:
        load_records(path, space)
    _assert_names(error, path)


def test_json_list_instead_of_object(tmp_path, space):
    path = _write_json(tmp_path / "records.json", _json_content(_raw_records())["records"])
    with pytest.raises(DataError, match="not a dele records file") as error:
        load_records(path, space)
    _assert_names(error, path)


def test_json_record_without_acc(tmp_path, space):
    content = _json_content(_raw_records())
    del content["records"][2]["acc"]
    path = _write_json(tmp_path / "records.json", content)
    with pytest.raises(DataError, match="expected an object with 'arch' and 'acc'") as error:
        load_records(path, space)
    _assert_names(error, path, index=2)


# ---------------------------------------------------------------------------
# Record-level errors


@pytest.mark.parametrize("suffix", [".pkl", ".json"])
def test_invalid_arch(tmp_path, space, suffix):
    raw = _raw_records()
    bad_arch = raw[1][0].copy()
    bad_arch[0, 3] = 2
    raw[1] = (bad_arch, raw[1][1], raw[1][2])
    path = tmp_path / f"records{suffix}"
    if suffix == ".pkl":
        _write_pickle(path, raw)
    else:
        _write_json(path, _json_content(raw))
    with pytest.raises(DataError, match="upper triangle") as error:
        load_records(path, space)
    _assert_names(error, path, index=1, field="arch")


@pytest.mark.parametrize("record", [(ARCHS[0], 0.5, {}, "extra"), (ARCHS[0],)])
def test_record_of_wrong_length(tmp_path, space, record):
    raw = _raw_records()
    raw[2] = record
    path = _write_pickle(tmp_path / "records.pkl", raw)
    with pytest.raises(DataError, match=f"got {len(record)} items") as error:
        load_records(path, space)
    _assert_names(error, path, index=2)


def test_record_not_a_tuple(tmp_path, space):
    raw = _raw_records()
    raw[3] = {"arch": ARCHS[0], "acc": 0.5}
    path = _write_pickle(tmp_path / "records.pkl", raw)
    with pytest.raises(DataError, match="got dict") as error:
        load_records(path, space)
    _assert_names(error, path, index=3)


@pytest.mark.parametrize("accuracy", [math.nan, math.inf, -math.inf, "0.9", None, True])
def test_invalid_accuracy(tmp_path, space, accuracy):
    raw = _raw_records()
    raw[1] = (raw[1][0], accuracy, raw[1][2])
    path = _write_pickle(tmp_path / "records.pkl", raw)
    with pytest.raises(DataError, match="accuracy must be a finite number") as error:
        load_records(path, space)
    _assert_names(error, path, index=1, field="acc")


def test_non_finite_accuracy_json(tmp_path, space):
    raw = _raw_records()
    raw[0] = (raw[0][0], math.nan, raw[0][2])
    path = _write_json(tmp_path / "records.json", _json_content(raw))
    with pytest.raises(DataError, match="accuracy must be a finite number, got nan") as error:
        load_records(path, space)
    _assert_names(error, path, index=0, field="acc")


@pytest.mark.parametrize("suffix", [".pkl", ".json"])
def test_low_fidelity_not_a_dict(tmp_path, space, suffix):
    raw = _raw_records()
    raw[2] = (raw[2][0], raw[2][1], [1.0, 2.0])
    path = tmp_path / f"records{suffix}"
    if suffix == ".pkl":
        _write_pickle(path, raw)
    else:
        _write_json(path, _json_content(raw))
    with pytest.raises(DataError, match="expected a dict of scores, got list") as error:
        load_records(path, space)
    _assert_names(error, path, index=2, field="low_fidelity")


def test_unknown_low_fidelity_type(space):
    with pytest.raises(DataError, match="unknown low-fidelity type 'zen'") as error:
        low_fidelity_matrix(_records(space), ["snip", "zen"], "train.pkl")
    _assert_names(error, "train.pkl", field="zen")
    assert "the file has ['flops', 'snip']" in str(error.value)


def test_missing_score_in_one_record(space):
    raw = _raw_records()
    del raw[2][2]["snip"]
    with pytest.raises(DataError, match="missing low-fidelity score") as error:
        low_fidelity_matrix(_records(space, raw), ["flops", "snip"], "train.pkl")
    _assert_names(error, "train.pkl", index=2, field="snip")


def test_record_without_scores(space):
    raw = _raw_records()
    records = _records(space, raw)
    records[1] = Record(records[1].arch, records[1].acc, None)
    with pytest.raises(DataError, match="missing low-fidelity score") as error:
        low_fidelity_matrix(records, ["snip"], "train.pkl")
    _assert_names(error, "train.pkl", index=1, field="snip")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1.0", None])
def test_invalid_score(space, value):
    raw = _raw_records()
    raw[3][2]["flops"] = value
    with pytest.raises(DataError, match="low-fidelity score must be a finite number") as error:
        low_fidelity_matrix(_records(space, raw), ["snip", "flops"], "valid.json")
    _assert_names(error, "valid.json", index=3, field="flops")


def test_invalid_score_through_dataset(tmp_path, space):
    raw = _raw_records()
    raw[1][2]["snip"] = math.nan
    path = _write_json(tmp_path / "records.json", _json_content(raw))
    records = load_records(path, space)
    with pytest.raises(DataError) as error:
        ArchDataset(records, space, types=["snip"], path=path)
    _assert_names(error, path, index=1, field="snip")


def test_constant_score_column(space):
    raw = _raw_records()
    for _, _, scores in raw:
        scores["flops"] = 3.0
    values = low_fidelity_matrix(_records(space, raw), ["snip", "flops"], "train.pkl")
    with pytest.raises(DataError, match="constant \\(3.0\\) over the training records") as error:
        NormalizationStats.fit(values, ["snip", "flops"], "train.pkl")
    _assert_names(error, "train.pkl", field="flops")


def test_fit_without_records():
    with pytest.raises(DataError, match="no records") as error:
        NormalizationStats.fit(np.zeros((0, 2)), ["snip", "flops"], "train.pkl")
    _assert_names(error, "train.pkl")


# ---------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("suffix", [".pkl", ".json"])
def test_round_trip(tmp_path, space, suffix):
    records = _records(space)
    path = tmp_path / f"records{suffix}"
    save_records(path, records, space)
    loaded = load_records(path, space)
    assert len(loaded) == len(records)
    for original, copy in zip(records, loaded):
        assert np.array_equal(copy.arch, original.arch)
        assert copy.arch.dtype == np.int64
        assert copy.acc == original.acc
        assert copy.low_fidelity == original.low_fidelity


@pytest.mark.parametrize("suffix", [".pkl", ".json"])
def test_round_trip_without_scores(tmp_path, space, suffix):
    records = [Record(arch, 0.25 * index, None) for index, arch in enumerate(ARCHS)]
    path = tmp_path / f"records{suffix}"
    save_records(path, records, space)
    loaded = load_records(path, space)
    assert [record.low_fidelity for record in loaded] == [None] * len(ARCHS)
    assert [record.acc for record in loaded] == [record.acc for record in records]


def test_pickle_keeps_original_layout(tmp_path, space):
    path = tmp_path / "records.pkl"
    save_records(path, _records(space), space)
    with open(path, "rb") as stream:
        raw = pickle.load(stream)
    assert isinstance(raw, list)
    arch, acc, scores = raw[0]
    assert arch.dtype == np.float64
    assert np.array_equal(arch, ARCHS[0])
    assert acc == 0.5
    assert scores == {"snip": 0.0, "flops": 1.0}


def test_json_file_layout(tmp_path, space):
    path = tmp_path / "records.json"
    save_records(path, _records(space), space)
    content = json.loads(path.read_text())
    assert content["format"] == "dele-records"
    assert content["version"] == 1
    assert content["search_space"] == "nasbench-201"
    assert content["records"][0]["arch"] == ARCHS[0].tolist()


def test_save_rejects_unknown_suffix(tmp_path, space):
    with pytest.raises(ValueError, match="unknown file type"):
        save_records(tmp_path / "records.csv", _records(space), space)


def test_save_keeps_old_file_on_error(tmp_path, space):
    path = tmp_path / "records.json"
    save_records(path, _records(space), space)
    before = path.read_text()
    broken = _records(space)
    broken[0] = Record(broken[0].arch, broken[0].acc, {"snip": object()})
    with pytest.raises(TypeError):
        save_records(path, broken, space)
    assert path.read_text() == before
    assert [item.name for item in tmp_path.iterdir()] == ["records.json"]


def test_available_types(space):
    records = _records(space)
    assert available_types(records) == ["flops", "snip"]
    records[0] = Record(records[0].arch, records[0].acc, {"snip": 1.0})
    assert available_types(records) == ["snip"]
    records[1] = Record(records[1].arch, records[1].acc, None)
    assert available_types(records) == []


# ---------------------------------------------------------------------------
# Normalisation


def test_stats_fitted_on_train_apply_to_valid(space):
    train = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    valid = np.array([[1.0, 40.0], [-2.0, 20.0]])
    stats = NormalizationStats.fit(train, ["snip", "flops"], "train.pkl")
    assert stats.minimum == [0.0, 10.0]
    assert stats.maximum == [4.0, 30.0]

    normalised = stats.apply(valid)
    assert np.allclose(normalised, [[0.25, 1.5], [-0.5, 0.5]])
    assert np.allclose(stats.apply(train), [[0.0, 0.0], [0.5, 1.0], [1.0, 0.5]])


def test_stats_dict_round_trip():
    stats = NormalizationStats.fit(np.array([[0.0, 1.0], [2.0, 5.0]]), ["snip", "flops"], "train.pkl")
    restored = NormalizationStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert restored == stats


def test_identity_stats_leave_values():
    values = np.array([[3.0, -1.0]])
    assert np.array_equal(NormalizationStats.identity(["snip", "flops"]).apply(values), values)


def test_dataset_uses_train_stats(space):
    train_records = _records(space)
    valid_raw = _raw_records()[:2]
    valid_raw[0][2]["snip"] = 6.0
    valid_records = _records(space, valid_raw)
    types = ["snip", "flops"]
    stats = NormalizationStats.fit(low_fidelity_matrix(train_records, types, "train.pkl"), types, "train.pkl")

    valid = ArchDataset(valid_records, space, types=types, stats=stats, path="valid.pkl")
    assert valid.low_fidelity.dtype == torch.float32
    assert valid.low_fidelity[0, 0].item() == pytest.approx(2.0)
    assert valid.low_fidelity[1, 1].item() == pytest.approx(1 / 3)
    assert valid.encoded.shape == (2, 4, 4)
    assert valid.target("acc").tolist() == pytest.approx([0.5, 0.6])
    arch, acc, scores = valid[0]
    assert np.array_equal(arch, ARCHS[0])
    assert scores["snip"] == pytest.approx(2.0)


def test_dataset_rejects_stats_of_other_types(space):
    stats = NormalizationStats.identity(["flops", "snip"])
    with pytest.raises(ValueError, match="statistics are for types"):
        ArchDataset(_records(space), space, types=["snip", "flops"], stats=stats)


# ---------------------------------------------------------------------------
# split_head


def test_split_head_keeps_file_order(space):
    records = _records(space)
    assert split_head(records, 0.5, "train_ratio") == records[:2]
    assert split_head(records, 1.0, "train_ratio") == records
    assert split_head(records, 0.99, "train_ratio") == records[:3]


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5, math.nan])
def test_split_head_rejects_ratio(space, ratio):
    with pytest.raises(ValueError, match="train_ratio must be in \\(0, 1\\]"):
        split_head(_records(space), ratio, "train_ratio")


def test_split_head_rejects_too_few(space):
    with pytest.raises(ValueError, match="train_ratio=0.3 keeps 1 of 4 records; at least 2"):
        split_head(_records(space), 0.3, "train_ratio")


def test_json_other_search_space(tmp_path, space):
    content = {**_json_content(_raw_records()), "search_space": "nb301"}
    path = _write_json(tmp_path / "records.json", content)

    with pytest.raises(DataError, match="'nb301' records") as error:
        load_records(path, space)

    _assert_names(error, path, field="search_space")


@pytest.mark.parametrize("convert", [lambda arch: arch.astype(str).tolist(), lambda arch: (arch > 0).tolist()])
def test_non_numeric_arch_entries(tmp_path, space, convert):
    content = _json_content(_raw_records())
    content["records"][1]["arch"] = convert(ARCHS[1])
    path = _write_json(tmp_path / "records.json", content)

    with pytest.raises(DataError, match="entries must be numbers") as error:
        load_records(path, space)

    _assert_names(error, path, index=1, field="arch")
