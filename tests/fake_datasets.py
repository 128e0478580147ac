"""Small OSCD and AirChange trees written by code, with the real datasets' names and quirks.

OSCD (`write_oscd`): the three sibling folders with spaces and " - " in their names (or the
merged tree), one-line comma-separated ``train.txt``/``test.txt``, long Sentinel-2 product
prefixes on band files, bands at three resolutions with matching transforms (10 m rasters of
60 x 66 pixels, 20 m of 30 x 33, 60 m of 10 x 11), B8A, date 2 a few pixels larger than date
1, ``cm.png`` as RGBA or ``<city>-cm.tif`` holding 1/2. Each band's value encodes its band
and date (`band_value`), so tests can check band order and resampling.

AirChange (`write_airchange`): ``Szada/<n>``, ``Tiszadob/<n>``, ``Archieve`` with ``im1``,
``im2``, ``gt`` BMPs, extensions ``.bmp`` and ``.BMP`` mixed inside a folder, masks with stray
grey values. Size is a parameter (952 x 640 as in the real data, or smaller).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from siamese_cd.data.layouts.oscd import ALL_BANDS, IMAGES, TEST_LABELS, TRAIN_LABELS

PREFIX = "S2A_OPER_MSI_L1C_TL_SGS__20160801T103456_A005823_T31UDQ"
# Metres per pixel of each band (Sentinel-2).
RESOLUTION = {
    **dict.fromkeys(("B02", "B03", "B04", "B08"), 10),
    **dict.fromkeys(("B05", "B06", "B07", "B8A", "B11", "B12"), 20),
    **dict.fromkeys(("B01", "B09", "B10"), 60),
}
SIZE_10M = (60, 66)  # (height, width) of date 1 on the 10 m grid: divisible by 2 and 6
DATE2_EXTRA = (6, 6)  # date 2 is larger by this much, on its far sides
ORIGIN = (500000.0, 5000000.0)  # top-left corner in metres (UTM-like)
CRS = "EPSG:32631"


def band_value(band: str, date: int) -> int:
    """The constant uint16 value of a band of a date: 1000 x date + 10 x band position."""
    return 1000 * date + 10 * (ALL_BANDS.index(band) + 1)


def write_band(path: Path, array: np.ndarray, resolution: float, georeferenced: bool = True):
    """Write one band as a single-band GeoTIFF on a grid of `resolution` metres."""
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=array.shape[0], width=array.shape[1], count=1)
    if georeferenced:
        profile.update(
            crs=CRS, transform=Affine(resolution, 0, ORIGIN[0], 0, -resolution, ORIGIN[1])
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", dtype=array.dtype.name, **profile) as sink:
            sink.write(array, 1)


def change_square(size: tuple[int, int] = SIZE_10M) -> np.ndarray:
    """The fake change mask on the 10 m grid: a 12 x 12 square at rows/cols 12-23."""
    mask = np.zeros(size, np.uint8)
    mask[12:24, 12:24] = 1
    return mask


def write_city(city_dir: Path, date2_extra=DATE2_EXTRA, rect: bool = False) -> None:
    """``imgs_1/``, ``imgs_2/`` (or ``imgs_<d>_rect/``), ``pair/`` and ``dates.txt`` of a city.

    Every band is constant (`band_value`) except B02 of date 2, which is brighter inside the
    change square, so a model can learn something.
    """
    for date in (1, 2):
        height, width = SIZE_10M
        if date == 2:
            height, width = height + date2_extra[0], width + date2_extra[1]
        folder = city_dir / (f"imgs_{date}_rect" if rect else f"imgs_{date}")
        for band in ALL_BANDS:
            factor = 1 if rect else RESOLUTION[band] // 10
            shape = (height // factor, width // factor)
            array = np.full(shape, band_value(band, date), np.uint16)
            if band == "B02" and date == 2:
                array[12:24, 12:24] = 5000
            name = f"{band}.tif" if rect else f"{PREFIX}_{band}.tif"
            write_band(folder / name, array, 10 if rect else RESOLUTION[band])
    (city_dir / "pair").mkdir(exist_ok=True)
    for name in ("img1.png", "img2.png"):
        Image.fromarray(np.zeros((*SIZE_10M, 3), np.uint8)).save(city_dir / "pair" / name)
    (city_dir / "dates.txt").write_text("date_1: 20160801\ndate_2: 20170915\n")


def write_labels(cm_dir: Path, city: str, formats=("png", "tif"), rgba: bool = True) -> None:
    """``cm.png`` (0/255, RGBA or RGB) and/or ``<city>-cm.tif`` (1/2) of the change square."""
    mask = change_square()
    cm_dir.mkdir(parents=True, exist_ok=True)
    if "png" in formats:
        grey = mask * 255
        bands = [grey, grey, grey] + ([np.full_like(grey, 255)] if rgba else [])
        Image.fromarray(np.stack(bands, axis=-1)).save(cm_dir / "cm.png")
    if "tif" in formats:
        write_band(cm_dir / f"{city}-cm.tif", (mask + 1).astype(np.uint8), 10)


def write_oscd(
    root: Path,
    train: list[str] = ("aguasclaras", "bercy"),
    test: list[str] = ("lyon",),
    test_labels: bool = False,
    merged: bool = False,
    label_formats=("png", "tif"),
    rect: bool = False,
) -> Path:
    """An OSCD tree under `root`; returns the folder to read (root itself).

    ``merged=True`` writes ``<root>/<city>/{imgs_1, imgs_2, cm}`` with the split lists at the
    root; otherwise the three sibling folders with their long names.
    """
    images = root if merged else root / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    (images / "train.txt").write_text(",".join(train) + "\n")
    (images / "test.txt").write_text(",".join(test))
    for split, cities in (("train", train), ("test", test)):
        for city in cities:
            write_city(images / city, rect=rect)
            if split == "test" and not test_labels:
                continue
            labels = TRAIN_LABELS if split == "train" else TEST_LABELS
            cm_dir = images / city / "cm" if merged else root / labels / city / "cm"
            write_labels(cm_dir, city, label_formats)
    return root


def airchange_mask(height: int, width: int, seed: int) -> np.ndarray:
    """A 0/255 mask with a changed block and a few stray grey values (non-zero = change)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
    mask[top : top + height // 4, left : left + width // 4] = 255
    mask[0, 0], mask[1, 1] = 128, 7  # stray grey values: change
    return mask


def write_airchange(
    root: Path,
    size: tuple[int, int] = (640, 952),
    scenes=(("Szada", 3), ("Tiszadob", 3)),
    archive: bool = True,
) -> Path:
    """An AirChange tree: ``<site>/<n>/{im1, im2, gt}`` BMPs with mixed extension case.

    Each scene's im1 is a constant grey encoding its number; im2 is brighter where the mask
    changed. `size` is (height, width).
    """
    height, width = size
    folders = [f"{site}/{n}" for site, count in scenes for n in range(1, count + 1)]
    folders += ["Archieve"] if archive else []
    for k, scene in enumerate(folders):
        folder = root / scene
        folder.mkdir(parents=True, exist_ok=True)
        mask = airchange_mask(height, width, k)
        im1 = np.full((height, width, 3), 20 + k, np.uint8)
        im2 = im1.copy()
        im2[mask > 0] = 230
        # Mixed case inside one folder, as in the download.
        Image.fromarray(im1).save(folder / "im1.bmp")
        Image.fromarray(im2).save(folder / "im2.BMP")
        Image.fromarray(mask).save(folder / ("gt.BMP" if k % 2 else "gt.bmp"))
    return root
