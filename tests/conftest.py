"""Shared fixtures; the fake-data writers they use live in `tests.fakes`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from tests.fakes import make_split


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    return make_split(tmp_path / "train")


@pytest.fixture(autouse=True)
def _float32_after_each_test():
    """Reset Keras's global dtype policy after a test: commands run in-process with
    ``--precision auto`` set mixed bfloat16 on CPUs that have it, which would leak into the
    models later tests of the same process build."""
    yield
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")
