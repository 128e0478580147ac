"""Shared fixtures: tiny change-detection splits written by code, never stored in git."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image


def write_sample(
    split: Path,
    stem: str,
    t1: np.ndarray,
    t2: np.ndarray,
    label: np.ndarray | None,
    folders: tuple[str, str, str] = ("time1", "time2", "label"),
    label_ext: str = ".png",
) -> None:
    """Write one (t1, t2, label) triple as PNGs (label as `label_ext`)."""
    for folder, array, ext in zip(folders, (t1, t2, label), (".png", ".png", label_ext)):
        if array is None:
            continue
        (split / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(split / folder / f"{stem}{ext}")


def make_split(
    root: Path, count: int = 6, size: int = 32, seed: int = 0, stems: list[str] | None = None
) -> Path:
    """A SYSU-layout split whose pairs each carry a changed square at a known place.

    Every sample's t1 is a constant gray whose level encodes its index, so tests can tell
    which file a batch row came from; t2 adds a bright square, which the label marks 255.
    """
    rng = np.random.default_rng(seed)
    stems = stems or [f"{i:05d}" for i in range(count)]
    for i, stem in enumerate(stems):
        t1 = np.full((size, size, 3), 10 + 5 * i, np.uint8)
        t2 = t1.copy()
        label = np.zeros((size, size), np.uint8)
        if i % 3 != 2:  # every third sample has no change
            y, x = rng.integers(0, size // 2, 2)
            side = size // 4
            t2[y : y + side, x : x + side] = 250
            label[y : y + side, x : x + side] = 255
        write_sample(root, stem, t1, t2, label)
    return root


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    return make_split(tmp_path / "train")
