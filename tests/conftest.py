"""Shared fixtures. Real benchmark files are read from ``../shared/data`` beside the
repository (or ``$DELE_DATA_DIR``); tests that need them skip when they are absent."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DELE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def data_file(relative):
    """Return the path of a real data file, or skip the test when it is absent."""
    path = DATA_DIR / relative
    if not path.exists():
        pytest.skip(f"real data file {path} is absent (set DELE_DATA_DIR to its folder)")
    return path


@pytest.fixture
def data_dir():
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data folder {DATA_DIR} is absent (set DELE_DATA_DIR to its folder)")
    return DATA_DIR
