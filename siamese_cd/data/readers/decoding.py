"""Decode image and label files into NumPy arrays.

Decoding uses NumPy, libpng (through imagecodecs) for plain 8- and 16-bit PNGs, Pillow for
every other format and rasterio for ``.tif``/``.tiff`` files. It runs in `PyDataset` worker
threads (all three release the GIL while decoding) and in forked worker processes, where
TensorFlow must not be touched. libpng decodes a 256 x 256 RGB PNG in about 60% of Pillow's
CPU time, which is what lets the `fit` path keep up with TensorFlow's own ``decode_png``.

Images come back as (H, W, C) arrays in the file's own pixel type (uint8 for 8-bit files,
uint16 for 16-bit ones, whatever a GeoTIFF holds); labels as (H, W) uint8 arrays of 0 and 1.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(folder / "t1.png")
    >>> image = read_image(folder / "t1.png")
    >>> image.shape, image.dtype
    ((32, 32, 3), dtype('uint8'))
    >>> Image.fromarray(np.full((32, 32), 255, np.uint8)).save(folder / "label.png")
    >>> int(read_label(folder / "label.png").max())
    1
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from siamese_cd.data.readers.pixel_checks import (  # noqa: F401,E501 - re-exported
    LOSSY_NOISE,
    below_threshold,
    check_finite,
    warn_if_below_threshold,
)
from siamese_cd.errors import DatasetError, ImageReadError

# (top, left, height, width) of a rectangle of pixels.
Window = tuple[int, int, int, int]

GRAYSCALE = ("expand", "keep")
RASTERIO_EXTENSIONS = frozenset({".tif", ".tiff"})
# Band counts whose last band is alpha in formats with a transparency mask (not TIFF; see
# `drops_alpha`): gray + alpha and RGBA.
ALPHA_BAND_COUNTS = frozenset({2, 4})
# Lossy formats: a label stored this way is noisy, so it is always thresholded and never
# taken for a 0/1 mask (a noisy 0/255 mask of an unchanged scene can hold only 0s and 1s).
LOSSY_EXTENSIONS = frozenset({".jpg", ".jpeg"})
DEFAULT_LABEL_THRESHOLD = 128
GEO_INSTALL_HINT = "pip install 'siamese_cd[geo]' (or: pip install rasterio)"

_warned_alpha: set[str] = set()
_PILLOW_16_BIT = ("I;16", "I;16B", "I;16L", "I")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> bands stored, for the types libpng returns as stored: gray, RGB,
# gray + alpha, RGBA. Palette images and bit depths below 8 go to Pillow, which expands them.
_PNG_BANDS = {0: 1, 2: 3, 4: 2, 6: 4}


def uses_rasterio(path: str | Path) -> bool:
    """Whether `path` is read through rasterio (GeoTIFF and other TIFF files)."""
    return Path(path).suffix.lower() in RASTERIO_EXTENSIONS


def drops_alpha(path: str | Path, count: int) -> bool:
    """Whether reading `path`, an image of `count` bands, drops its last band as alpha.

    The one alpha rule of every reader (the `tf.data` path applies it in the graph, with
    `ALPHA_BAND_COUNTS`): a PNG, JPEG or BMP of 2 or 4 bands is gray or RGB plus a
    transparency mask, which is dropped (with one warning per folder). Every band of a
    ``.tif``/``.tiff`` is data and kept, whatever GDAL's colour interpretation says: GDAL
    tags the 4th band of every 4-band 8-bit GeoTIFF as alpha by default, and a near-infrared
    band is no transparency mask. `bands=` picks bands explicitly, alpha or not.

    Example:
        >>> drops_alpha("a.png", 4), drops_alpha("a.tif", 4), drops_alpha("a.png", 3)
        (True, False, False)
    """
    return count in ALPHA_BAND_COUNTS and not uses_rasterio(path)


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


def _open_pillow(path: Path, source=None) -> Image.Image:
    try:
        image = Image.open(path if source is None else source)
        # Pillow reads PNGs of 16 bits per channel in colour as 8-bit, dropping the low byte;
        # the tile's raw mode, known before decoding, tells. Only interlaced ones get here.
        if image.format == "PNG" and image.mode not in _PILLOW_16_BIT and image.tile:
            rawmode = image.tile[0].args
            if isinstance(rawmode, str) and ";16" in rawmode:
                raise ImageReadError(
                    f"{path}: an interlaced 16-bit {image.mode} PNG, which Pillow can only read "
                    "as 8-bit (losing precision); save it without interlacing, as a 16-bit "
                    f"TIFF read through rasterio ({GEO_INSTALL_HINT}), or as an 8-bit PNG"
                )
        image.load()
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error
    return image


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read file ({error})") from error


def _plain_png(data: bytes) -> tuple[int, int, int, int] | None:
    """``(height, width, bits, colour type)`` of a PNG that libpng decodes here, else None.

    Plain means 8 or 16 bits per sample, not interlaced, and not a palette image (libpng
    warns on stderr for interlaced images read whole); Pillow decodes the others.
    """
    if len(data) < 29 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth not in (8, 16) or colour_type not in _PNG_BANDS or interlace:
        return None
    return height, width, depth, colour_type


def _libpng(path: Path, data: bytes, out: np.ndarray | None = None) -> np.ndarray:
    try:
        return imagecodecs.png_decode(data, out=out)
    except (imagecodecs.PngError, ValueError, RuntimeError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error


def _decode_png(path: Path, data: bytes) -> np.ndarray | None:
    """(H, W, C) pixels of a plain PNG decoded by libpng (equal to Pillow's); else None."""
    header = _plain_png(data)
    if header is None:
        return None
    array = _libpng(path, data)
    if array.ndim == 2:
        array = array[..., None]
    # libpng turns a tRNS chunk of a gray or RGB image into an alpha band; Pillow ignores it.
    return array[..., : _PNG_BANDS[header[3]]]


def _decoded(path: Path, data: bytes | None = None) -> np.ndarray | Image.Image:
    """The pixels of a non-TIFF file: an array from libpng, else a loaded Pillow image."""
    data = _read_bytes(path) if data is None else data
    array = _decode_png(path, data)
    return array if array is not None else _open_pillow(path, io.BytesIO(data))


def _pillow_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in _PILLOW_16_BIT:
        array = np.asarray(image)
        if array.dtype != np.uint16:
            if array.min() < 0 or array.max() > 65535:
                raise ImageReadError(f"{path}: 32-bit integer pixels outside the 16-bit range")
            array = array.astype(np.uint16)
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
    return array[..., None] if array.ndim == 2 else array


def _file_image(path: Path, bands, grayscale: str, data: bytes | None = None) -> np.ndarray:
    array = _decoded(path, data)
    if isinstance(array, Image.Image):
        array = check_finite(_pillow_array(array, path), path)
    if bands is not None:
        return _select(array, bands, path)
    if drops_alpha(path, array.shape[-1]):
        _warn_alpha_once(path)
        array = array[..., :-1]
    if array.shape[-1] == 1 and grayscale == "expand":
        array = np.repeat(array, 3, axis=-1)
    return array


def _rasterio_read(path: Path, bands, window: Window | None):
    """Bands of a raster as (H, W, C), all of them unless `bands` says (GDAL's alpha tag is
    not followed: `drops_alpha`); windowed reads done by GDAL."""
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
                indexes = list(range(1, count + 1))
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

    By default the alpha band of a PNG (JPEG, BMP, ...) is dropped, with one warning per folder,
    while every band of a ``.tif``/``.tiff`` is kept, even one GDAL tags as alpha (the rule:
    `drops_alpha`); palette images are expanded, and grayscale is repeated to three bands
    (``grayscale="keep"`` keeps one band).
    With `bands`, exactly those bands are returned, counted from 1 as in GDAL, with no alpha
    or grayscale handling. ``.tif``/``.tiff`` files are read through rasterio (the ``geo``
    extra), which reads only the `window` from disk. Other formats are decoded whole: plain PNGs
    by libpng, the rest (palette or 1-bit PNGs, JPEG, BMP, ...) by Pillow.

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
        array = _rasterio_read(path, bands, window)
        if bands is None and array.shape[-1] == 1 and grayscale == "expand":
            array = np.repeat(array, 3, axis=-1)
        return check_finite(array, path)
    return _cut(_file_image(path, bands, grayscale), window, path)


def decode_into(
    path: str | Path, out: np.ndarray, *, grayscale: str = "expand"
) -> np.ndarray | None:
    """Read an image as `read_image` does (all bands), into `out` if it has the image's shape.

    A plain 8- or 16-bit PNG whose bands are kept as stored is decoded by libpng straight
    into `out` (a batch slot), which saves an array and a copy per image; other images are
    decoded and copied into it.

    Returns:
        None when the pixels are in `out`; otherwise the image, whose shape or pixel type
        differs from `out`'s, with `out` left as it was.

    Raises:
        ImageReadError: if the file cannot be decoded.
    """
    path = Path(path)
    if uses_rasterio(path):
        image = read_image(path, grayscale=grayscale)
    else:
        data = _read_bytes(path)
        header = _plain_png(data)
        if header is not None:
            height, width, depth, colour_type = header
            bands = _PNG_BANDS[colour_type]
            if (
                out.shape == (height, width, bands)
                and out.dtype == (np.uint8 if depth == 8 else np.uint16)
                and out.flags.c_contiguous
                and not drops_alpha(path, bands)
                and b"tRNS" not in data[33 : data.find(b"IDAT")]
                and not (bands == 1 and grayscale == "expand")
            ):
                _libpng(path, data, out[..., 0] if bands == 1 else out)
                return None
        image = _file_image(path, None, grayscale, data)
    if image.shape != out.shape or image.dtype != out.dtype:
        return image
    np.copyto(out, image)
    return None


def read_label_values(path: str | Path, *, window: Window | None = None) -> np.ndarray:
    """Read a label as stored, reduced to one (H, W) band: the brightest of R, G and B.

    Gray labels are returned as they are; an alpha band is ignored. This is what
    `read_label` thresholds, and what ``siamese-cd check`` inspects.
    """
    path = Path(path)
    if uses_rasterio(path):
        array = _rasterio_read(path, None, window)
    else:
        array = _decoded(path)
        if isinstance(array, Image.Image):
            if array.mode == "P":
                array = array.convert("RGB")
            elif array.mode == "1":
                array = array.convert("L")
            array = np.asarray(array)
        array = _cut(array, window, path)
    if array.ndim == 3:
        array = array[..., 0] if array.shape[-1] <= 2 else array[..., :3].max(axis=-1)
    return array


def decode_fault(path: str | Path, *, label: bool = False) -> str | None:
    """Why the library's reader cannot decode the image (or, with `label`, the label) at
    `path`, as the `ImageReadError` message naming the file; None if it decodes."""
    try:
        (read_label_values if label else read_image)(path)
    except ImageReadError as error:
        return str(error)
    return None


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
    values = read_label_values(path, window=window)
    mask = binarize_label(values, threshold, is_lossy(path))
    if window is None:
        warn_if_below_threshold(path, values, mask, threshold)
    return mask


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
    """The maximum of an unsigned integer pixel type: 255 for uint8, 65535 for uint16.

    The one place the pixel range of a type is defined. Radiometric augmentation works on
    pixels divided by it (and multiplies back), and showing pixels to a person stretches by it.

    Raises:
        ImageReadError: for other pixel types (e.g. float32), which have no fixed maximum.

    Example:
        >>> pixel_scale(np.uint8), pixel_scale(np.uint16)
        (255.0, 65535.0)
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.unsignedinteger):
        where = f"{path}: " if path is not None else ""
        raise ImageReadError(
            f"{where}{dtype} pixels have no fixed maximum (only 8- and 16-bit pixels have); "
            "radiometric augmentation (brightness, contrast, gamma, hue, saturation, noise) "
            "needs 8- or 16-bit images"
        )
    return float(np.iinfo(dtype).max)
