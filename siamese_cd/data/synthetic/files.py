"""Writing synthetic scenes to files: 8-bit PNGs, or multi-band 16-bit GeoTIFFs.

`siamese_cd.data.synthetic.generate.make_synthetic_dataset` renders pairs and writes them through
these helpers. With ``bands=4, dtype="uint16"`` images are GeoTIFFs and labels 0/255 GeoTIFFs. A
band is
``1000 + 4 * v`` for a rendered 8-bit value ``v``, so values lie around 1,500 like surface
reflectance scaled by 10,000, and a change of the rendering is as plain in raw units. Bands past
the third mix R, G and B. Each scene gets its own place on a 10 m UTM grid.

Example:
    >>> rgb = np.array([[[0, 128, 255]]], np.uint8)
    >>> spectral(rgb, 4, "uint16").tolist()
    [[[1000, 1512, 2020, 1612]]]
    >>> check_pixels(3, "uint8"), check_pixels(4, "uint16")
    ('.png', '.tif')
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from siamese_cd.errors import DatasetError

SPLITS = ("train", "val", "test")
SUBDIRS = ("time1", "time2", "label")

# 16-bit bands: OFFSET + GAIN * (8-bit value), about 1,000 to 2,000 like surface reflectance
# scaled by 10,000; bands past the third mix R, G and B with these weights, in turn.
OFFSET, GAIN = 1000, 4
EXTRA_BANDS = np.array([(0.1, 0.6, 0.3), (0.5, 0.3, 0.2), (0.2, 0.2, 0.6)], np.float32)
# Ground grid of the GeoTIFFs: 10 m pixels in UTM zone 31N, one scene every 10 km.
CRS, PIXEL_METRES, SCENE_STEP = "EPSG:32631", 10.0, 10_000.0


def check_pixels(bands: object, dtype: object) -> str:
    """Validate `bands` and `dtype`; the image file extension they call for."""
    if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or bands < 1:
        raise DatasetError(f"bands must be an integer >= 1, got {bands!r}")
    if dtype not in ("uint8", "uint16"):
        raise DatasetError(f"dtype must be 'uint8' or 'uint16', got {dtype!r}")
    return ".png" if (bands, dtype) == (3, "uint8") else ".tif"


def spectral(rgb: np.ndarray, bands: int, dtype: str) -> np.ndarray:
    """`bands` bands from a rendered 8-bit RGB image, in `dtype` (see the module docstring)."""
    extra = [rgb.astype(np.float32) @ EXTRA_BANDS[k % 3] for k in range(max(0, bands - 3))]
    values = np.concatenate([rgb.astype(np.float32)] + [e[..., None] for e in extra], -1)
    values = np.rint(values[..., :bands])
    return (values if dtype == "uint8" else OFFSET + GAIN * values).astype(dtype)


def write_geotiff(path: Path, array: np.ndarray, origin: tuple[float, float]) -> None:
    """Write (H, W, C) pixels as a GeoTIFF on a 10 m UTM grid whose corner is `origin`.

    Every band is tagged as data (MINISBLACK): left to itself GDAL would write 3 or 4 bands of
    8 bits as RGB, with the 4th band as alpha, and readers that honour the tag drop it.
    """
    try:
        import rasterio
        from rasterio.transform import Affine
    except ImportError as error:
        raise DatasetError(
            f"{path}: writing GeoTIFFs needs rasterio; pip install 'siamese_cd[geo]'"
        ) from error
    height, width, count = array.shape
    profile = {"driver": "GTiff", "height": height, "width": width, "count": count}
    profile |= {"dtype": array.dtype.name, "crs": CRS, "photometric": "MINISBLACK"}
    west, north = origin
    profile["transform"] = Affine(PIXEL_METRES, 0.0, west, 0.0, -PIXEL_METRES, north)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(array, -1, 0))


def write_pair(paths: list[Path], arrays, bands: int, dtype: str, origin) -> None:
    """Write one (t1, t2, label) triple: PNGs, or GeoTIFFs of `bands` `dtype` bands."""
    if paths[0].suffix == ".png":
        for path, array in zip(paths, arrays, strict=True):
            Image.fromarray(array).save(path)
        return
    t1, t2, label = arrays
    write_geotiff(paths[0], spectral(t1, bands, dtype), origin)
    write_geotiff(paths[1], spectral(t2, bands, dtype), origin)
    write_geotiff(paths[2], label[..., None], origin)


def warn_stray(out: Path, counts: dict[str, int], ext: str) -> None:
    """Warn about leftover files a loader would pick up, e.g. after shrinking a split."""
    stray = []
    for split in SPLITS:
        expected = {f"{i:05d}{ext}" for i in range(counts[split])}
        for sub in SUBDIRS:
            folder = out / split / sub
            if folder.is_dir():
                stray += [p for p in folder.iterdir() if p.name not in expected]
    if stray:
        warnings.warn(
            f"{out}: {len(stray)} file(s) not written by this generation were left in place, "
            f"e.g. {stray[0]}; delete them if a loader should not see them",
            stacklevel=3,
        )
