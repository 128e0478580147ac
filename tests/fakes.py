"""Fake change-detection data written by code (never stored in git), importable by any test.

`make_split` writes a tiny split whose samples tests can tell apart; `write_sample` and
`write_geotiff` write single files; `count_decodes` records which image files the dataset
decodes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

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
    root: Path,
    count: int = 6,
    size: int | tuple[int, int] = 32,
    seed: int = 0,
    stems: list[str] | None = None,
    folders: tuple[str, str, str] = ("time1", "time2", "label"),
) -> Path:
    """A split (SYSU layout unless `folders` says otherwise) with a changed square per pair.

    Every sample's t1 is a constant gray whose level encodes its index, so tests can tell
    which file a batch row came from; t2 adds a bright square, which the label marks 255.
    `size` is a side or (height, width).
    """
    rng = np.random.default_rng(seed)
    stems = stems or [f"{i:05d}" for i in range(count)]
    height, width = (size, size) if isinstance(size, int) else size
    for i, stem in enumerate(stems):
        t1 = np.full((height, width, 3), 10 + 5 * i, np.uint8)
        t2 = t1.copy()
        label = np.zeros((height, width), np.uint8)
        if i % 3 != 2:  # every third sample has no change
            side = min(height, width) // 4
            y, x = rng.integers(0, min(height, width) // 2, 2)
            t2[y : y + side, x : x + side] = 250
            label[y : y + side, x : x + side] = 255
        write_sample(root, stem, t1, t2, label, folders=folders)
    return root


def write_geotiff(path: Path, array: np.ndarray) -> Path:
    """Write an (H, W, C) array as a plain multi-band GeoTIFF (no georeferencing)."""
    rasterio = pytest.importorskip("rasterio")
    height, width, count = array.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            height=height,
            width=width,
            count=count,
            dtype=array.dtype.name,
        ) as dst:
            dst.write(np.moveaxis(array, -1, 0))
    return path


def count_decodes(monkeypatch) -> list:
    """Record every image file the dataset decodes; returns the (growing) list of paths."""
    from siamese_cd.data.pipeline import batches as batches_module
    from siamese_cd.data.pipeline import source as source_module

    calls = []
    # read_image reads samples; decode_into decodes straight into a batch slot.
    for module, name in ((source_module, "read_image"), (batches_module, "decode_into")):
        original = getattr(module, name)

        def counting(path, *args, _original=original, **options):
            calls.append(path)
            return _original(path, *args, **options)

        monkeypatch.setattr(module, name, counting)
    return calls
