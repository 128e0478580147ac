"""Shared fixtures; the fake-data writers they use live in `tests.fakes`."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from tests.fakes import make_split


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    return make_split(tmp_path / "train")
