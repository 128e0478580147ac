"""Synthetic bi-temporal aerial scenes for change detection, written in the SYSU-CD layout.

Each pair shows the same patch of land at two dates. Between the dates some buildings are
built, some are demolished and occasionally a road is laid; the label marks the footprint of
every such object. The images also differ in ways that must *not* be labelled, as real image
pairs do: illumination and colour balance, the season of the vegetation, sensor noise and a
sub-pixel to one-pixel misregistration of the second date. Plain pixel differencing therefore
fails, while a small network learns the task in minutes.

Layout written by :func:`make_synthetic_dataset`::

    OUT/{train,val,test}/{time1,time2,label}/00000.png ...   (or .tif, see below)
    OUT/synthetic.json          # manifest, written last

Images are 8-bit RGB PNGs, or with ``bands=4, dtype="uint16"`` 16-bit GeoTIFFs with values
around 1,500 and 0/255 GeoTIFF labels (see `siamese_cd.data.synthetic.files`).

Example:
    >>> import numpy as np
    >>> from siamese_cd.data.synthetic.generate import make_synthetic_dataset, render_pair
    >>> import tempfile
    >>> out = make_synthetic_dataset(tempfile.mkdtemp(), train=2, val=1, test=1, size=32,
    ...                              progress=False)
    >>> sorted(p.name for p in (out / "train" / "time1").iterdir())
    ['00000.png', '00001.png']
    >>> geo = make_synthetic_dataset(tempfile.mkdtemp(), train=1, val=0, test=0, size=32,
    ...                              bands=4, dtype="uint16", progress=False)
    >>> sorted(p.name for p in (geo / "train" / "time1").iterdir())
    ['00000.tif']
    >>> t1, t2, label = render_pair(np.random.default_rng(0), 64)
    >>> t1.shape, t2.shape, label.shape
    ((64, 64, 3), (64, 64, 3), (64, 64))
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from siamese_cd.atomic import write_text
from siamese_cd.data.synthetic.files import (
    SCENE_STEP,
    SPLITS,
    SUBDIRS,
    check_pixels,
    warn_stray,
    write_pair,
)
from siamese_cd.data.synthetic.render import render_pair
from siamese_cd.errors import DatasetError

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "SPLITS", "make_synthetic_dataset", "render_pair"]

FORMAT_VERSION = 1
MANIFEST_NAME = "synthetic.json"


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DatasetError(f"{name} must be an integer >= 0 (number of image pairs), got {value!r}")
    return int(value)


def _check_size_and_seed(size: object, seed: object) -> tuple[int, int]:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise DatasetError(f"size must be an integer, got {size!r}")
    if size < 16 or size % 16:
        raise DatasetError(
            f"size must be a multiple of 16 and at least 16, got {size}: sides that divide by "
            "2**4 let the default depth-4 networks run without padding"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed must be an integer >= 0, got {seed!r}")
    return int(size), int(seed)


def _prepare(out: Path, counts: dict[str, int]) -> Path:
    """Make the split folders and remove the old manifest; returns the manifest's path."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: output path exists and is not a folder")
    manifest_path = out / MANIFEST_NAME
    try:
        manifest_path.unlink(missing_ok=True)
        # An empty split gets no folders: an empty test/ would read as a split without pairs.
        for split in (name for name in SPLITS if counts[name]):
            for sub in SUBDIRS:
                (out / split / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{out}: cannot prepare output folder: {exc}") from exc
    return manifest_path


def _write_splits(out: Path, counts, size: int, seed: int, bands: int, dtype: str, progress):
    """Render and write every pair; returns the changed fraction of each split."""
    ext = check_pixels(bands, dtype)
    fractions: dict[str, float] = {}
    with tqdm(
        total=3 * sum(counts.values()), unit="file", desc="synth", disable=not progress
    ) as bar:
        for split_id, split in enumerate(SPLITS):
            changed_pixels = 0
            for i in range(counts[split]):
                rng = np.random.default_rng([seed, split_id, i])
                t1, t2, label = render_pair(rng, size)
                changed_pixels += int(np.count_nonzero(label))
                paths = [out / split / sub / f"{i:05d}{ext}" for sub in SUBDIRS]
                origin = (SCENE_STEP * i, SCENE_STEP * (1 + split_id))
                write_pair(paths, (t1, t2, label), bands, dtype, origin)
                bar.update(3)
            n_pixels = counts[split] * size * size
            fractions[split] = round(changed_pixels / n_pixels, 6) if n_pixels else 0.0
    return fractions


def make_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    train: int = 1000,
    val: int = 100,
    test: int = 200,
    size: int = 64,
    seed: int = 0,
    progress: bool = True,
    *,
    bands: int = 3,
    dtype: str = "uint8",
) -> Path:
    """Write a synthetic change-detection dataset in the SYSU-CD layout.

    Image ``i`` of a split depends only on ``(seed, split, i)``, so the same seed gives
    byte-identical files, and changing one split's count leaves every other file unchanged.
    Regenerating into an existing folder overwrites the files this function writes and leaves
    any other file in place. The manifest ``synthetic.json`` is removed first and written last,
    so its presence means the generation finished.

    Args:
        out_dir: Folder to write into; created if missing.
        train: Number of training pairs.
        val: Number of validation pairs.
        test: Number of test pairs.
        size: Image height and width in pixels; a multiple of 16 and at least 16.
        seed: Non-negative integer seed.
        progress: Whether to show a progress bar.
        bands: Bands per image; other than 3 (or with uint16) GeoTIFFs are written.
        dtype: ``"uint8"`` or ``"uint16"`` (values around 1,500; GeoTIFFs, needs rasterio).

    Returns:
        The output folder as a :class:`pathlib.Path`.

    Raises:
        DatasetError: If an argument is out of range or ``out_dir`` is not a folder.
    """
    counts = {
        name: _check_count(name, n) for name, n in zip(SPLITS, (train, val, test), strict=True)
    }
    size, seed = _check_size_and_seed(size, seed)
    ext = check_pixels(bands, dtype)
    out = Path(out_dir)
    manifest_path = _prepare(out, counts)
    fractions = _write_splits(out, counts, size, seed, bands, dtype, progress)
    warn_stray(out, counts, ext)
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "siamese_cd.data.synthetic.generate",
        "layout": "SYSU-CD",
        "size": size,
        "seed": seed,
        **{"bands": int(bands), "dtype": dtype, "format": ext[1:]},
        "counts": counts,
        "changed_fraction": fractions,
    }
    write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return out
