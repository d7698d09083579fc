import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py and other helpers
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def _assert_same_files(a: Path, b: Path) -> list:
    """The two stores hold the same files, byte for byte; returns their relative paths."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    return files


@pytest.fixture
def assert_same_files():
    """``assert_same_files(a, b)``: two stores hold the same files, byte for byte (returns their
    relative paths)."""
    return _assert_same_files
