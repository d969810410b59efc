"""Architecture records: loading, validation, low-fidelity normalisation and datasets.

A record is ``(arch, accuracy, {low_fidelity_type: score})``, the layout of the original
DELE pickles. NAS-Bench-301 validation files may hold ``(arch, accuracy)`` pairs instead.

Two file formats are read and written, chosen by extension:

* ``.pkl`` / ``.pickle``: the original format. Loading a pickle runs code stored in it,
  so only load pickles you trust.
* ``.json``: dele's safe format, ``{"format": "dele-records", "version": 1,
  "search_space": NAME, "records": [{"arch": ..., "acc": ..., "low_fidelity": {...}}]}``.
"""

import json
import logging
import math
import numbers
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dele.fileio import atomic_write

logger = logging.getLogger(__name__)

JSON_FORMAT = "dele-records"
JSON_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle")


class DataError(ValueError):
    """Invalid data, with the file, record index and field it was found in."""

    def __init__(self, path, problem, index=None, field=None):
        where = str(path)
        if index is not None:
            where += f": record {index}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {problem}")
        self.path, self.index, self.field = path, index, field


@dataclass
class Record:
    """One architecture with its actual accuracy and low-fidelity scores (None if absent)."""

    arch: object
    acc: float
    low_fidelity: dict | None


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_record(raw, index, path, search_space):
    if not isinstance(raw, (tuple, list)):
        raise DataError(path, f"expected a (arch, acc, low_fidelity) tuple, got {type(raw).__name__}", index)
    if len(raw) not in (2, 3):
        raise DataError(path, f"expected a (arch, acc, low_fidelity) tuple, got {len(raw)} items", index)
    try:
        arch = search_space.validate(raw[0])
    except ValueError as error:
        raise DataError(path, str(error), index, "arch") from None
    acc = raw[1]
    if not _is_number(acc) or not math.isfinite(acc):
        raise DataError(path, f"accuracy must be a finite number, got {acc!r}", index, "acc")
    low_fidelity = raw[2] if len(raw) == 3 else None
    if low_fidelity is not None and not isinstance(low_fidelity, dict):
        raise DataError(path, f"expected a dict of scores, got {type(low_fidelity).__name__}", index, "low_fidelity")
    return Record(arch, float(acc), low_fidelity)


def _read_raw(path, search_space=None):
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty")
    if path.suffix in PICKLE_SUFFIXES:
        with open(path, "rb") as stream:
            try:
                raw = pickle.load(stream)
            except Exception as error:  # noqa: BLE001 - any unpickling failure is a data error
                raise DataError(path, f"cannot unpickle: {type(error).__name__}: {error}") from None
        if not isinstance(raw, (list, tuple)):
            raise DataError(path, f"expected a list of records, got {type(raw).__name__}")
        return list(raw)
    if path.suffix == ".json":
        return _read_json(path, search_space)
    raise DataError(path, "unknown file type; expected .json (safe) or .pkl/.pickle (original format)")


def _read_json(path, search_space=None):
    try:
        content = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, f"invalid JSON: {error}") from None
    if not isinstance(content, dict) or content.get("format") != JSON_FORMAT:
        raise DataError(path, f"not a dele records file (expected \"format\": \"{JSON_FORMAT}\")")
    if content.get("version") != JSON_VERSION:
        raise DataError(path, f"unsupported version {content.get('version')!r}, expected {JSON_VERSION}")
    declared = content.get("search_space")
    if search_space is not None and declared is not None and declared != search_space.NAME:
        raise DataError(path, f"the file contains {declared!r} records, not {search_space.NAME!r} (--search-space)",
                        field="search_space")
    if not isinstance(content.get("records", []), list):
        raise DataError(path, f"\"records\" must be a list, got {type(content['records']).__name__}")
    raw = []
    for index, item in enumerate(content.get("records", [])):
        if not isinstance(item, dict) or "arch" not in item or "acc" not in item:
            raise DataError(path, "expected an object with 'arch' and 'acc'", index)
        raw.append((item["arch"], item["acc"], item.get("low_fidelity")))
    return raw


def load_records(path, search_space):
    """Read and validate the records of ``path`` (``.json`` or ``.pkl``).

    Raises:
        DataError: for a missing, empty or malformed file or record.
    """
    raw = _read_raw(path, search_space)
    if not raw:
        raise DataError(path, "the file contains no records")
    records = [_check_record(item, index, path, search_space) for index, item in enumerate(raw)]
    logger.info("loaded %d records from %s", len(records), path)
    return records


def save_records(path, records, search_space):
    """Write records atomically, as JSON or as the original pickle layout by extension."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        items = [
            (search_space.to_pickle(r.arch), r.acc) if r.low_fidelity is None
            else (search_space.to_pickle(r.arch), r.acc, dict(r.low_fidelity))
            for r in records
        ]
        with atomic_write(path, "wb") as stream:
            pickle.dump(items, stream)
        return
    if path.suffix != ".json":
        raise ValueError(f"{path}: unknown file type; use .json or .pkl")

    content = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "search_space": search_space.NAME,
        "records": [
            {"arch": search_space.to_json(r.arch), "acc": r.acc, "low_fidelity": r.low_fidelity}
            for r in records
        ],
    }
    with atomic_write(path, "w") as stream:
        json.dump(content, stream)


def available_types(records):
    """Return the sorted low-fidelity types that every record carries."""
    carried = [set(r.low_fidelity) for r in records if r.low_fidelity is not None]
    if len(carried) < len(records) or not carried:
        return []
    return sorted(set.intersection(*carried))


def low_fidelity_matrix(records, types, path):
    """Return an ``(N, T)`` float64 array of the requested scores.

    Raises:
        DataError: for an unknown type, a missing key or a non-finite score.
    """
    if not types:
        return np.zeros((len(records), 0))
    seen = set()
    for record in records:
        seen.update(record.low_fidelity or ())
    for name in types:
        if name not in seen:
            raise DataError(path, f"unknown low-fidelity type {name!r}; the file has {sorted(seen)}", field=name)

    values = np.empty((len(records), len(types)))
    for index, record in enumerate(records):
        scores = record.low_fidelity
        for column, name in enumerate(types):
            if scores is None or name not in scores:
                raise DataError(path, "missing low-fidelity score", index, name)
            value = scores[name]
            if not _is_number(value) or not math.isfinite(value):
                raise DataError(path, f"low-fidelity score must be a finite number, got {value!r}", index, name)
            values[index, column] = value
    return values


@dataclass
class NormalizationStats:
    """Min-max statistics of each low-fidelity type, fitted on the training records."""

    types: list
    minimum: list
    maximum: list

    @classmethod
    def fit(cls, values, types, path):
        """Fit on an ``(N, T)`` array; a constant column is a DataError naming its type."""
        if len(values) == 0:
            raise DataError(path, "no records to compute low-fidelity statistics from")
        minimum, maximum = values.min(axis=0), values.max(axis=0)
        for name, low, high in zip(types, minimum, maximum):
            if high <= low:
                raise DataError(path, f"low-fidelity score is constant ({float(low)!r}) over the training records", field=name)
        return cls(list(types), minimum.tolist(), maximum.tolist())

    @classmethod
    def identity(cls, types):
        """Statistics that leave scores unchanged (``low_fidelity_normalize: false``)."""
        return cls(list(types), [0.0] * len(types), [1.0] * len(types))

    def apply(self, values):
        """Normalise an ``(N, T)`` array whose columns follow :attr:`types`."""
        minimum, maximum = np.asarray(self.minimum), np.asarray(self.maximum)
        return (values - minimum) / (maximum - minimum)

    def to_dict(self):
        return {"types": list(self.types), "minimum": list(self.minimum), "maximum": list(self.maximum)}

    @classmethod
    def from_dict(cls, state):
        return cls(list(state["types"]), list(state["minimum"]), list(state["maximum"]))


class ArchDataset(torch.utils.data.Dataset):
    """Records of one split, with architectures encoded to tensors once.

    Attributes:
        archs: validated architectures.
        encoded: the search space's tensor encoding of ``archs``.
        accs: ``(N,)`` float tensor of actual accuracies.
        low_fidelity: ``(N, T)`` float tensor of normalised scores, columns in ``types`` order.
        types: requested low-fidelity types.

    Items are ``(arch, acc, {type: score})`` like the original MultiLFArchDataset.
    """

    def __init__(self, records, search_space, types=(), stats=None, path="<records>"):
        self.path = path
        self.types = list(types)
        self.archs = [r.arch for r in records]
        self.encoded = search_space.encode(self.archs)
        self.accs = torch.tensor([r.acc for r in records], dtype=torch.float32)

        raw = low_fidelity_matrix(records, self.types, path)
        if stats is not None and self.types:
            if list(stats.types) != self.types:
                raise ValueError(f"statistics are for types {stats.types}, dataset requests {self.types}")
            raw = stats.apply(raw)
        self.low_fidelity = torch.tensor(raw, dtype=torch.float32)

    def __len__(self):
        return len(self.archs)

    def __getitem__(self, index):
        scores = {name: float(self.low_fidelity[index, k]) for k, name in enumerate(self.types)}
        return self.archs[index], float(self.accs[index]), scores

    def target(self, name):
        """Return the ``(N,)`` tensor to rank by: ``"acc"`` or a low-fidelity type."""
        if name == "acc":
            return self.accs
        return self.low_fidelity[:, self.types.index(name)]

    def to(self, device):
        """Move the tensors to ``device`` in place and return self."""
        self.encoded = self.encoded.to(device)
        self.accs = self.accs.to(device)
        self.low_fidelity = self.low_fidelity.to(device)
        return self


def split_head(records, ratio, name):
    """Return the first ``floor(len(records) * ratio)`` records (file order, as the original)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {ratio}")
    count = int(len(records) * ratio)
    if count < 2:
        raise ValueError(f"{name}={ratio} keeps {count} of {len(records)} records; at least 2 are needed to rank")
    return records[:count]


class MultiLFArchDataset(ArchDataset):
    """The original name of a dataset over several low-fidelity types; items are
    ``(arch, acc, {type: score})``."""


class NasBench301Dataset(ArchDataset):
    """Records without low-fidelity scores (NAS-Bench-301 validation files); items are ``(arch, acc)``."""

    def __init__(self, records, search_space, path="<records>"):
        super().__init__(records, search_space, (), None, path)

    def __getitem__(self, index):
        return self.archs[index], float(self.accs[index])
