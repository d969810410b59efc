"""The original DELE ``datasets`` import names, re-exported from :mod:`dele.data`."""

from dele.data import ArchDataset, MultiLFArchDataset, NasBench301Dataset, load_records, save_records

__all__ = ["ArchDataset", "MultiLFArchDataset", "NasBench301Dataset", "load_records", "save_records"]
