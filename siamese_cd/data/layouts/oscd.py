"""The Onera Satellite Change Detection dataset (OSCD): Sentinel-2 city pairs, one file per band.

**Layout.** The download unpacks into sibling folders named
``Onera Satellite Change Detection dataset - Images``, ``... - Train Labels`` and
``... - Test Labels`` (`IMAGES`, `TRAIN_LABELS`, `TEST_LABELS`). ``Images/train.txt`` and
``Images/test.txt`` each hold one line of comma-separated city names. Per city, ``imgs_1/``
and ``imgs_2/`` hold one GeoTIFF per band at its native resolution, named
``<long product prefix>_B01.tif`` ... ``_B12.tif`` and ``_B8A.tif``; ``imgs_1_rect/`` and
``imgs_2_rect/``, where present, hold every band on the 10 m grid (``B01.tif`` ...) and are
read instead. Labels are ``<labels>/<city>/cm/<city>-cm.tif`` (1 = no change, 2 = change),
read first, or ``cm/cm.png`` (0/255, RGB or RGBA). The merged tree
``<root>/<city>/{imgs_1, imgs_2, cm}`` with ``train.txt``/``test.txt`` at the root is read too.
Give either the folder holding the three sibling folders, the ``Images`` folder, or the root
of a merged tree.

**Pixels.** Bands are chosen by name: ``"rgb"`` (B04, B03, B02), ``"all"`` (the 13 bands in
`ALL_BANDS` order: B01, B02, ..., B08, B8A, B09, B10, B11, B12), or a list of names. Every band
of both dates is put on date 1's 10 m grid (the grid of its largest raster) by rasterio:
bands already on it are read as stored, others through a `WarpedVRT` with bilinear
resampling, placed by their transforms. That resamples 20 m and 60 m bands, and aligns date 2,
which may differ in size from date 1 by a few pixels, onto date 1's grid. Pixels stay uint16
reflectances (the model standardises them per band).

**Splits.** ``"train"`` and ``"test"`` read the cities of ``train.txt`` and ``test.txt``;
``"all"`` both; a list of city names reads those. Test labels are a separate release: a split
whose cities have no labels is read unlabelled (for prediction).

Example:
    >>> import tempfile
    >>> import rasterio
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())  # a merged tree: <city>/{imgs_1, imgs_2, cm}
    >>> for city in ("paris", "lyon"):
    ...     for date in ("imgs_1", "imgs_2"):
    ...         (root / city / date).mkdir(parents=True)
    ...         for band in RGB_BANDS:
    ...             path = root / city / date / f"S2A_OPER_MSI_L1C_T31UDQ_{band}.tif"
    ...             with rasterio.open(path, "w", driver="GTiff", width=66, height=60,
    ...                                count=1, dtype="uint16", crs="EPSG:32631",
    ...                                transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as tif:
    ...                 tif.write(np.full((1, 60, 66), 1500, np.uint16))
    >>> (root / "paris" / "cm").mkdir()
    >>> Image.fromarray(np.zeros((60, 66), np.uint8)).save(root / "paris" / "cm" / "cm.png")
    >>> _ = (root / "train.txt").write_text("paris"), (root / "test.txt").write_text("lyon")
    >>> source = oscd_source(root, split="train", bands="rgb")
    >>> source.pairs[0].stem, source.channels, source.dtype, source.scene_size(0)
    ('paris', 3, dtype('uint16'), (60, 66))
    >>> oscd_source(root, split="test", bands="rgb").labelled  # test labels: a separate release
    False
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from siamese_cd.data.layouts.pairing import Pair
from siamese_cd.data.layouts.scenes import SceneSource
from siamese_cd.data.readers.decoding import GEO_INSTALL_HINT, Window, read_label
from siamese_cd.errors import DatasetError, ImageReadError

NAME = "OSCD"
IMAGES = "Onera Satellite Change Detection dataset - Images"
TRAIN_LABELS = "Onera Satellite Change Detection dataset - Train Labels"
TEST_LABELS = "Onera Satellite Change Detection dataset - Test Labels"
SPLIT_FILES = {"train": "train.txt", "test": "test.txt"}
# The documented band order of ``bands="all"``: by number, B8A after B08.
ALL_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
RGB_BANDS = ("B04", "B03", "B02")
BAND_SETS = {"rgb": RGB_BANDS, "all": ALL_BANDS}
# ``..._B01.tif`` (long product prefix) or ``B01.tif`` (the _rect folders), any case.
_BAND_FILE = re.compile(r"(?:^|_)(B(?:0[1-9]|1[0-2]|8A))\.tiff?$", re.IGNORECASE)
# Where bands are stored without georeference, this stands in for their CRS: both dates
# then meet through their transforms alone.
_LOCAL_CRS = "EPSG:3857"


def band_names(bands: str | Sequence[str] | None) -> tuple[str, ...]:
    """Band names of ``"rgb"``, ``"all"`` (also None) or a list of names like ``["B08"]``.

    Raises:
        DatasetError: for an unknown set or band name.
    """
    if bands is None:
        return ALL_BANDS
    if isinstance(bands, str):
        if bands.lower() in BAND_SETS:
            return BAND_SETS[bands.lower()]
        bands = [part.strip() for part in bands.split(",")]
    names = tuple(str(b).upper() for b in bands)
    unknown = [b for b in names if b not in ALL_BANDS]
    if unknown or not names:
        raise DatasetError(
            f"OSCD bands must be 'rgb', 'all' or names from {', '.join(ALL_BANDS)}; got {bands!r}"
        )
    return names


def find_oscd(root: str | Path) -> tuple[Path, list[Path]] | None:
    """The images folder of an OSCD tree and the folders its labels may be in; None if `root`
    is not one."""
    root = Path(root)
    if (root / IMAGES).is_dir():
        images, parent = root / IMAGES, root
    elif any((root / name).is_file() for name in SPLIT_FILES.values()) and any(
        (p / "imgs_1").is_dir() or (p / "imgs_1_rect").is_dir() for p in root.iterdir()
    ):
        images, parent = root, root.parent if root.name == IMAGES else None
    else:
        return None
    labels = [parent / name for name in (TRAIN_LABELS, TEST_LABELS)] if parent else []
    return images, [folder for folder in labels if folder.is_dir()] + [images]


def split_cities(images: Path, split: str | Sequence[str]) -> list[str]:
    """The cities of a split: from ``train.txt``/``test.txt``, both (``"all"``), or a list.

    Raises:
        DatasetError: for an unknown split, a missing list file, or a city without a folder.
    """
    if isinstance(split, str):
        if split not in (*SPLIT_FILES, "all"):
            raise DatasetError(
                f"{images}: OSCD split must be 'train', 'test', 'all' or a list of cities, "
                f"got {split!r}"
            )
        cities = []
        for name in SPLIT_FILES if split == "all" else [split]:
            listing = images / SPLIT_FILES[name]
            if not listing.is_file():
                raise DatasetError(f"{listing}: no such file (the {name} cities of OSCD)")
            text = listing.read_text(encoding="utf-8-sig")
            cities += [city.strip() for city in re.split(r"[,\n]", text) if city.strip()]
    else:
        cities = [str(city) for city in split]
    missing = [city for city in cities if not (images / city).is_dir()]
    if missing or not cities:
        raise DatasetError(f"{images}: no folder for OSCD cities {missing or split!r}")
    return cities


def date_folder(city: Path, date: int) -> Path:
    """``imgs_<date>_rect`` where present (bands on the 10 m grid), else ``imgs_<date>``."""
    rect = city / f"imgs_{date}_rect"
    return rect if rect.is_dir() else city / f"imgs_{date}"


def band_files(folder: Path) -> dict[str, Path]:
    """Band name -> file of a date folder (``..._B8A.tif`` -> ``"B8A"``).

    Raises:
        DatasetError: if the folder is missing or two files hold the same band.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (one GeoTIFF per band expected)")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _BAND_FILE.search(path.name)
        if match is None:
            continue
        band = match.group(1).upper()
        if band in found:
            raise DatasetError(
                f"{folder}: two files hold band {band}: {found[band].name}, {path.name}"
            )
        found[band] = path
    return found


def label_file(label_roots: Sequence[Path], city: str) -> Path | None:
    """The change map of `city`: ``cm/<city>-cm.tif`` first, else ``cm/cm.png``; None if
    neither is in any label folder."""
    for root in label_roots:
        for name in (f"{city}-cm.tif", "cm.png"):
            path = root / city / "cm" / name
            if path.is_file():
                return path
    return None


def read_change_map(path: Path, window: Window | None = None) -> np.ndarray:
    """An OSCD change map as an (H, W) uint8 0/1 mask: ``-cm.tif`` maps 1/2 to 0/1, ``cm.png``
    (0/255, RGB or RGBA) is thresholded at 128.

    Raises:
        ImageReadError: if a ``-cm.tif`` holds values other than 1 and 2.
    """
    if path.suffix.lower() == ".png":
        return read_label(path, 128, window=window)
    rasterio = _rasterio()
    with rasterio.open(path) as source:
        values = source.read(1)
    values = values if window is None else _cut(values, window)
    unexpected = np.setdiff1d(np.unique(values), [1, 2])
    if unexpected.size:
        raise ImageReadError(
            f"{path}: OSCD change map values must be 1 (no change) or 2 (change), found "
            f"{unexpected[:5].tolist()}"
        )
    return (values == 2).astype(np.uint8)


def _rasterio():
    try:
        import rasterio
        import rasterio.vrt  # noqa: F401
    except ImportError as error:  # pragma: no cover - rasterio is installed with the geo extra
        raise ImageReadError(f"reading OSCD needs rasterio: {GEO_INSTALL_HINT}") from error
    return rasterio


def _cut(array: np.ndarray, window: Window) -> np.ndarray:
    top, left, height, width = window
    return array[top : top + height, left : left + width]


def _grid(path: Path) -> dict:
    """The grid (crs, transform, height, width) of a raster."""
    with _rasterio().open(path) as source:
        return {
            "crs": source.crs,
            "transform": source.transform,
            "height": source.height,
            "width": source.width,
        }


def read_on_grid(path: Path, grid: dict) -> np.ndarray:
    """Band 1 of `path` on `grid`: as stored if it is on it, else warped there (bilinear).

    Raises:
        ImageReadError: if the file cannot be read, or it carries no transform and its size
            differs from the grid's (it cannot then be placed).
    """
    rasterio = _rasterio()
    from rasterio.enums import Resampling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as source:
                same_size = (source.height, source.width) == (grid["height"], grid["width"])
                if same_size and source.transform == grid["transform"]:
                    return source.read(1)
                if source.transform.is_identity and not same_size:
                    raise ImageReadError(
                        f"{path}: no georeference (identity transform) and size "
                        f"{(source.height, source.width)} differs from the 10 m grid's "
                        f"{(grid['height'], grid['width'])}, so it cannot be placed on it"
                    )
                crs = grid["crs"] or source.crs or _LOCAL_CRS
                with rasterio.vrt.WarpedVRT(
                    source,
                    src_crs=source.crs or crs,
                    crs=crs,
                    transform=grid["transform"],
                    height=grid["height"],
                    width=grid["width"],
                    resampling=Resampling.bilinear,
                ) as warped:
                    return warped.read(1)
        except rasterio.errors.RasterioError as error:
            raise ImageReadError(f"{path}: cannot read band ({error})") from error


class OscdSource(SceneSource):
    """OSCD cities as scenes: chosen bands of both dates on date 1's 10 m grid, and the mask.

    Args:
        pairs: one `Pair` per city: its date folders and change map (or None).
        band_names: band names in the order of the image channels.
        options: those of `SampleSource` (crops, tiles, samples_per_scene, cache, ...).
    """

    def __init__(self, pairs: Sequence[Pair], band_names: Sequence[str], **options):
        self.band_names = tuple(band_names)
        super().__init__(pairs, **options)

    def decode_options(self) -> dict:
        return {**super().decode_options(), "oscd_bands": list(self.band_names)}

    def _files(self, folder: Path) -> tuple[dict[str, Path], list[Path]]:
        """All band files of a date folder, and those chosen, in channel order."""
        files = band_files(folder)
        missing = [band for band in self.band_names if band not in files]
        if missing:
            raise ImageReadError(f"{folder}: no file for band(s) {', '.join(missing)}")
        return files, [files[band] for band in self.band_names]

    def reference_grid(self, index: int) -> dict:
        """Date 1's 10 m grid: the grid of its largest band raster."""
        files, _ = self._files(self.pairs[index].t1)
        grids = [_grid(path) for path in files.values()]
        return max(grids, key=lambda grid: grid["height"] * grid["width"])

    def full_size(self, index: int) -> tuple[int, int]:
        grid = self.reference_grid(index)
        return grid["height"], grid["width"]

    def read_scene(self, index: int, region: Window | None) -> tuple:
        pair = self.pairs[index]
        grid = self.reference_grid(index)
        dates = []
        for folder in (pair.t1, pair.t2):
            _, chosen = self._files(folder)
            dates.append(np.stack([read_on_grid(path, grid) for path in chosen], axis=-1))
        mask = read_change_map(pair.label) if pair.label is not None else None
        if region is not None:
            dates = [_cut(image, region) for image in dates]
            mask = _cut(mask, region) if mask is not None else None
        return dates[0], dates[1], mask


def oscd_source(
    root: str | Path,
    split: str | Sequence[str] = "train",
    bands: str | Sequence[str] | None = "all",
    **options,
) -> OscdSource:
    """An `OscdSource` of an OSCD split; `options` go to `SampleSource`.

    Raises:
        DatasetError: if `root` is no OSCD tree, for a bad split or band, or when some cities
            of the split have labels and others not.
    """
    found = find_oscd(root)
    if found is None:
        raise DatasetError(f"{root}: not an OSCD folder (no {IMAGES!r} and no train.txt)")
    images, label_roots = found
    cities = split_cities(images, split)
    labels = [label_file(label_roots, city) for city in cities]
    if any(label is None for label in labels) and any(label is not None for label in labels):
        unlabelled = [city for city, label in zip(cities, labels) if label is None]
        raise DatasetError(
            f"{images}: no change map for {', '.join(unlabelled)} but the other cities have "
            "one (OSCD test labels are a separate release: unpack them beside the images, or "
            "read the test cities on their own, unlabelled)"
        )
    pairs = [
        Pair(city, date_folder(images / city, 1), date_folder(images / city, 2), label)
        for city, label in zip(cities, labels)
    ]
    name = split if isinstance(split, str) else "cities"
    options.setdefault("name", f"oscd-{name}")
    return OscdSource(pairs, band_names(bands), **options)
