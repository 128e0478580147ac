"""Whether the two dates of a scene lie on one ground grid: the CRS and transform of GeoTIFFs.

A change model compares the two dates pixel by pixel, so both must cover the same ground on
the same grid: the same coordinate reference system (CRS) and the same transform (origin,
pixel size and rotation). `grid_mismatch` is the one rule, applied on every path: ``predict``
(`siamese_cd.evaluation.inference.check_scenes`), the samples of a split read for training,
evaluation and `as_tf_dataset` (`siamese_cd.data.pipeline.source.SampleSource.check_grid`), and
``siamese-cd check`` (finding ``georef_mismatch``).

Only headers are read. PNG, JPEG and BMP files hold no georeferencing: a pair of them is
passed without opening either file, and beside a ``.tif``/``.tiff`` such a file counts as not
georeferenced. A TIFF without a CRS and with the identity transform (a plain TIFF) is not
georeferenced either, so two plain TIFFs, or a plain TIFF and a PNG, compare as equal.
The label is not compared: masks are often stored as plain PNGs beside GeoTIFF images.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import rasterio
    >>> folder = Path(tempfile.mkdtemp())
    >>> def write(name, west, crs="EPSG:32631"):
    ...     transform = rasterio.Affine(10, 0, west, 0, -10, 4650000)
    ...     with rasterio.open(folder / name, "w", driver="GTiff", width=4, height=4, count=1,
    ...                        dtype="uint8", crs=crs, transform=transform) as tif:
    ...         tif.write(np.zeros((1, 4, 4), np.uint8))
    ...     return folder / name
    >>> a, b = write("a.tif", 500000), write("b.tif", 500000)
    >>> grid_mismatch(a, b) is None
    True
    >>> grid_mismatch(a, write("c.tif", 500000, "EPSG:32632")).split(" have ")[1]
    "different CRS (EPSG:32631 vs EPSG:32632); reproject one onto the other's grid"
    >>> grid_mismatch(a, write("d.tif", 500020)).split(" have ")[1][:72]
    'different transforms, (10, 0, 500000, 0, -10, 4650000) vs (10, 0, 500020'
    >>> grid_mismatch(folder / "x.png", folder / "y.png") is None  # not opened
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from siamese_cd.data.readers.decoding import _rasterio, uses_rasterio
from siamese_cd.errors import GeoreferenceError, ImageReadError


@dataclass(frozen=True)
class Grid:
    """Where a raster's pixels lie: its CRS (None if it has none) and its affine transform."""

    crs: object
    transform: object

    def describe_transform(self) -> str:
        """The transform's six coefficients ``(a, b, c, d, e, f)``, as GDAL orders them."""
        return "(" + ", ".join(f"{v:.10g}" for v in tuple(self.transform)[:6]) + ")"


def read_grid(path: str | Path) -> Grid | None:
    """The grid of a ``.tif``/``.tiff`` file from its header; None if it is not georeferenced.

    Other formats hold no georeferencing: None, without opening the file.

    Raises:
        ImageReadError: if the header of a TIFF cannot be read (naming the file).
    """
    path = Path(path)
    if not uses_rasterio(path):
        return None
    rasterio = _rasterio(path)
    try:
        with rasterio.open(path) as source:
            crs, transform = source.crs, source.transform
    except (rasterio.errors.RasterioError, OSError) as error:
        raise ImageReadError(f"{path}: cannot read image header ({error})") from error
    if crs is None and transform.is_identity:
        return None
    return Grid(crs, transform)


def grid_mismatch(t1: str | Path, t2: str | Path) -> str | None:
    """What differs between the grids of the two dates `t1` and `t2`, naming both files, or
    None if they lie on one grid (or neither is a TIFF, in which case nothing is opened).

    Raises:
        ImageReadError: if the header of a TIFF cannot be read.
    """
    if not (uses_rasterio(t1) or uses_rasterio(t2)):
        return None
    grid1, grid2 = read_grid(t1), read_grid(t2)
    both = f"t1 {t1} and t2 {t2}"
    if grid1 is None and grid2 is None:
        return None
    if grid1 is None or grid2 is None:
        which = t1 if grid1 is not None else t2
        return (
            f"of {both}, only {which} is georeferenced; give both dates on one grid (both "
            "GeoTIFFs with the same CRS and transform, or neither georeferenced)"
        )
    if grid1.crs != grid2.crs:
        return (
            f"{both} have different CRS ({grid1.crs} vs {grid2.crs}); reproject one onto the "
            "other's grid"
        )
    if not grid1.transform.almost_equals(grid2.transform):
        return (
            f"{both} have different transforms, {grid1.describe_transform()} vs "
            f"{grid2.describe_transform()}, so their pixels do not cover the same ground; "
            "resample one onto the other's grid"
        )
    return None


def check_same_grid(t1: str | Path, t2: str | Path) -> None:
    """Raise unless the two dates lie on one grid (see `grid_mismatch`).

    Raises:
        GeoreferenceError: naming both files and what differs (CRS, or transform).
        ImageReadError: if the header of a TIFF cannot be read.
    """
    message = grid_mismatch(t1, t2)
    if message is not None:
        raise GeoreferenceError(message)
