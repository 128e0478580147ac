"""Decode image and label files into NumPy arrays.

Decoding uses Pillow, NumPy and, for ``.tif``/``.tiff`` files, rasterio only: it runs in
`PyDataset` worker threads (Pillow and rasterio release the GIL while decoding) and in forked
worker processes, where TensorFlow must not be touched.

Images come back as (H, W, C) arrays in the file's own pixel type (uint8 for 8-bit files,
uint16 for 16-bit ones, whatever a GeoTIFF holds); labels as (H, W) uint8 arrays of 0 and 1.

Example:
    >>> image = read_image("time1/0001.png")  # doctest: +SKIP
    >>> image.shape, image.dtype  # doctest: +SKIP
    ((256, 256, 3), dtype('uint8'))
    >>> read_label("label/0001.png").max()  # doctest: +SKIP
    1
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from siamese_cd.errors import DatasetError, ImageReadError

# (top, left, height, width) of a rectangle of pixels.
Window = tuple[int, int, int, int]

GRAYSCALE = ("expand", "keep")
RASTERIO_EXTENSIONS = frozenset({".tif", ".tiff"})
# Lossy formats: a label stored this way is noisy, so it is always thresholded and never
# taken for a 0/1 mask (a noisy 0/255 mask of an unchanged scene can hold only 0s and 1s).
LOSSY_EXTENSIONS = frozenset({".jpg", ".jpeg"})
DEFAULT_LABEL_THRESHOLD = 128
GEO_INSTALL_HINT = "pip install 'siamese_cd[geo]' (or: pip install rasterio)"

_warned_alpha: set[str] = set()
_PILLOW_16_BIT = ("I;16", "I;16B", "I;16L", "I")


def uses_rasterio(path: str | Path) -> bool:
    """Whether `path` is read through rasterio (GeoTIFF and other TIFF files)."""
    return Path(path).suffix.lower() in RASTERIO_EXTENSIONS


def is_lossy(path: str | Path) -> bool:
    """Whether `path` is stored in a lossy format (JPEG)."""
    return Path(path).suffix.lower() in LOSSY_EXTENSIONS


def check_bands(bands: Sequence[int] | None) -> tuple[int, ...] | None:
    """Validate a band selection (1-based, as in GDAL) and return it as a tuple."""
    if bands is None:
        return None
    try:
        selection = tuple(int(b) for b in bands)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"bands must be a sequence of band numbers, got {bands!r}") from error
    if not selection or min(selection) < 1:
        raise DatasetError(f"bands counts from 1 (as in GDAL) and cannot be empty, got {bands!r}")
    return selection


def check_grayscale(grayscale: str) -> str:
    if grayscale not in GRAYSCALE:
        raise DatasetError(f"grayscale must be one of {GRAYSCALE}, got {grayscale!r}")
    return grayscale


def _warn_alpha_once(path: Path) -> None:
    folder = str(path.parent)
    if folder not in _warned_alpha:
        _warned_alpha.add(folder)
        warnings.warn(f"{path}: alpha band dropped (said once per folder)", stacklevel=4)


def _rasterio(path: Path):
    try:
        import rasterio
    except ImportError as error:
        raise ImageReadError(
            f"{path}: reading .tif/.tiff files needs rasterio, which is not installed; "
            f"install the geo extra: {GEO_INSTALL_HINT}"
        ) from error
    # Plain TIFFs have no geotransform and only pixels are used here, so rasterio's warning
    # about it is noise. A process-wide filter for that one category (re-added if something
    # reset the filters), because warnings.catch_warnings is not thread-safe and reads run
    # in worker threads.
    category = rasterio.errors.NotGeoreferencedWarning
    if not any(f[0] == "ignore" and f[2] is category for f in warnings.filters):
        warnings.filterwarnings("ignore", category=category)
    return rasterio


def _cut(array: np.ndarray, window: Window | None, path: Path) -> np.ndarray:
    if window is None:
        return array
    top, left, height, width = window
    if top < 0 or left < 0 or top + height > array.shape[0] or left + width > array.shape[1]:
        raise ImageReadError(
            f"{path}: window {window} (top, left, height, width) lies outside the image of "
            f"size {array.shape[:2]}"
        )
    return array[top : top + height, left : left + width]


def _select(array: np.ndarray, bands: tuple[int, ...], path: Path) -> np.ndarray:
    count = array.shape[-1]
    if max(bands) > count:
        raise ImageReadError(
            f"{path}: band {max(bands)} requested (bands={list(bands)}, counted from 1) but "
            f"the image has {count} band(s)"
        )
    return array[..., [b - 1 for b in bands]]


def _open_pillow(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        # Pillow reads PNGs of 16 bits per channel in colour as 8-bit, dropping the low byte;
        # the tile's raw mode, known before decoding, tells.
        if image.format == "PNG" and image.mode not in _PILLOW_16_BIT and image.tile:
            rawmode = image.tile[0].args
            if isinstance(rawmode, str) and ";16" in rawmode:
                raise ImageReadError(
                    f"{path}: a 16-bit {image.mode} PNG, which Pillow can only read as 8-bit "
                    "(losing precision); save it as a 16-bit TIFF, read through rasterio "
                    f"({GEO_INSTALL_HINT}), or as an 8-bit PNG"
                )
        image.load()
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error
    return image


def _pillow_image(path: Path, bands, grayscale: str) -> np.ndarray:
    image = _open_pillow(path)
    mode = image.mode
    if mode in _PILLOW_16_BIT:
        array = np.asarray(image)
        if array.dtype != np.uint16:
            if array.min() < 0 or array.max() > 65535:
                raise ImageReadError(f"{path}: 32-bit integer pixels outside the 16-bit range")
            array = array.astype(np.uint16)
        array = array[..., None]
    elif mode in ("RGB", "RGBA", "L", "LA"):
        array = np.asarray(image)
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        array = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    elif mode == "1":
        array = np.asarray(image.convert("L"))
    elif mode in ("CMYK", "YCbCr"):
        array = np.asarray(image.convert("RGB"))
    else:
        raise ImageReadError(f"{path}: unsupported pixel mode {mode!r}")
    if array.ndim == 2:
        array = array[..., None]
    if bands is not None:
        return _select(array, bands, path)
    if array.shape[-1] in (2, 4):
        _warn_alpha_once(path)
        array = array[..., :-1]
    if array.shape[-1] == 1 and grayscale == "expand":
        array = np.repeat(array, 3, axis=-1)
    return array


def _rasterio_read(path: Path, bands, window: Window | None, drop_alpha: bool):
    """Bands of a raster as (H, W, C), windowed reads done by GDAL."""
    rasterio = _rasterio(path)
    try:
        with rasterio.open(path) as source:
            count = source.count
            if bands is not None:
                if max(bands) > count:
                    raise ImageReadError(
                        f"{path}: band {max(bands)} requested (bands={list(bands)}, "
                        f"counted from 1) but the image has {count} band(s)"
                    )
                indexes = list(bands)
            else:
                alpha = rasterio.enums.ColorInterp.alpha
                indexes = [
                    i
                    for i, interp in enumerate(source.colorinterp, start=1)
                    if not (drop_alpha and interp == alpha)
                ]
                if len(indexes) < count:
                    _warn_alpha_once(path)
            rio_window = None
            if window is not None:
                top, left, height, width = window
                if top + height > source.height or left + width > source.width:
                    raise ImageReadError(
                        f"{path}: window {window} (top, left, height, width) lies outside "
                        f"the image of size {(source.height, source.width)}"
                    )
                rio_window = rasterio.windows.Window(left, top, width, height)
            data = source.read(indexes, window=rio_window)
    except ImageReadError:
        raise
    except (rasterio.errors.RasterioError, OSError, ValueError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error
    return np.ascontiguousarray(np.moveaxis(data, 0, -1))


def read_image(
    path: str | Path,
    *,
    bands: Sequence[int] | None = None,
    grayscale: str = "expand",
    window: Window | None = None,
) -> np.ndarray:
    """Read an image as an (H, W, C) array in the file's pixel type (uint8, uint16, ...).

    By default an alpha band is dropped (with one warning per folder), palette images are
    expanded, and grayscale is repeated to three bands (``grayscale="keep"`` keeps one band).
    With `bands`, exactly those bands are returned, counted from 1 as in GDAL, with no alpha
    or grayscale handling. ``.tif``/``.tiff`` files are read through rasterio (the ``geo``
    extra), which reads only the `window` from disk; other formats are decoded whole by Pillow.

    Args:
        path: the image file.
        bands: band numbers to keep, e.g. ``(4, 3, 2)``; None for the default handling.
        grayscale: ``"expand"`` (one band repeated to three) or ``"keep"`` (one band).
        window: ``(top, left, height, width)`` to read only part of the image.

    Raises:
        ImageReadError: if the file cannot be decoded, has an unsupported pixel format, lacks
            a requested band, or needs rasterio and rasterio is not installed.
    """
    path = Path(path)
    bands = check_bands(bands)
    check_grayscale(grayscale)
    if uses_rasterio(path):
        array = _rasterio_read(path, bands, window, drop_alpha=True)
        if bands is None and array.shape[-1] == 1 and grayscale == "expand":
            array = np.repeat(array, 3, axis=-1)
        return array
    return _cut(_pillow_image(path, bands, grayscale), window, path)


def read_label_values(path: str | Path, *, window: Window | None = None) -> np.ndarray:
    """Read a label as stored, reduced to one (H, W) band: the brightest of R, G and B.

    Gray labels are returned as they are; an alpha band is ignored. This is what
    `read_label` thresholds, and what ``siamese-cd check`` inspects.
    """
    path = Path(path)
    if uses_rasterio(path):
        array = _rasterio_read(path, None, window, drop_alpha=False)
    else:
        image = _open_pillow(path)
        if image.mode == "P":
            image = image.convert("RGB")
        elif image.mode == "1":
            image = image.convert("L")
        array = _cut(np.asarray(image), window, path)
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1) if array.shape[-1] != 2 else array[..., 0]
    return array


def binarize_label(
    values: np.ndarray, threshold: int = DEFAULT_LABEL_THRESHOLD, lossy: bool = False
) -> np.ndarray:
    """Turn label values into a uint8 0/1 mask.

    Values at or above `threshold` are change. A losslessly stored mask whose values are only
    0 and 1 is a 0/1 mask: its 1s are change whatever the threshold, so it is not silently read
    as all zeros.
    """
    if values.dtype == bool:
        return values.astype(np.uint8)
    if not lossy and values.size and values.max() <= 1:
        return (values >= 1).view(np.uint8)
    return (values >= threshold).view(np.uint8)


def read_label(
    path: str | Path,
    threshold: int = DEFAULT_LABEL_THRESHOLD,
    *,
    window: Window | None = None,
) -> np.ndarray:
    """Read a change mask as an (H, W) uint8 array of 0 (no change) and 1 (change).

    Pixels at or above `threshold` (default 128, for 8-bit masks) are change, which reads 0/255
    masks, JPEG-noisy masks and RGB masks (by their brightest band, so white or any coloured
    marking counts). A PNG or TIFF mask whose values are only 0 and 1 is recognised as a 0/1
    mask; JPEG masks are always thresholded. With a `window`, only that part is returned (and
    0/1 recognition looks at that part).

    Raises:
        ImageReadError: if the file cannot be decoded.
    """
    path = Path(path)
    return binarize_label(read_label_values(path, window=window), threshold, is_lossy(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image, read from its header without decoding the pixels.

    Raises:
        ImageReadError: if the header cannot be read.
    """
    path = Path(path)
    if uses_rasterio(path):
        rasterio = _rasterio(path)
        try:
            with rasterio.open(path) as source:
                return source.height, source.width
        except (rasterio.errors.RasterioError, OSError) as error:
            raise ImageReadError(f"{path}: cannot read image header ({error})") from error
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot read image header ({error})") from error
    return height, width


def pixel_scale(dtype: np.dtype, path: str | Path | None = None) -> float:
    """The maximum of an unsigned integer pixel type, which "unit" normalisation divides by.

    Raises:
        ImageReadError: for other pixel types, which have no fixed maximum.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.unsignedinteger):
        where = f"{path}: " if path is not None else ""
        raise ImageReadError(
            f"{where}{dtype} pixels have no fixed maximum to scale by for normalization='unit'; "
            "use normalization='standardize' (with mean= and std=, or compute_stats())"
        )
    return float(np.iinfo(dtype).max)


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Scale integer pixels to float32 in [0, 1] by the maximum of their dtype."""
    if not np.issubdtype(image.dtype, np.integer):
        raise TypeError(f"expected integer pixels, got {image.dtype}")
    return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
