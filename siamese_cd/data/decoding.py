"""Decode image and label files into NumPy arrays.

Decoding uses Pillow and NumPy only: it runs in `PyDataset` worker threads (Pillow releases
the GIL while decoding) and in forked worker processes, where TensorFlow must not be touched.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from siamese_cd.errors import ImageReadError

_warned_alpha: set[str] = set()


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an (H, W, 3) array of uint8 (8-bit files) or uint16 (16-bit files).

    Grayscale is repeated to three bands and palette images are expanded. An alpha band is
    dropped, with one warning per folder.

    Raises:
        ImageReadError: if the file cannot be decoded or has an unsupported pixel format.
    """
    path = Path(path)
    image = _open(path)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image)
        if array.dtype != np.uint16:
            if array.min() < 0 or array.max() > 65535:
                raise ImageReadError(f"{path}: 32-bit integer pixels outside the 16-bit range")
            array = array.astype(np.uint16)
        return np.repeat(array[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        folder = str(path.parent)
        if folder not in _warned_alpha:
            _warned_alpha.add(folder)
            warnings.warn(f"{path}: alpha band dropped (said once per folder)", stacklevel=2)
    if mode not in ("RGB", "RGBA", "L", "LA", "P", "PA", "1"):
        raise ImageReadError(f"{path}: unsupported pixel mode {mode!r}")
    return np.asarray(image.convert("RGB"))


def read_label(path: str | Path, threshold: int = 128) -> np.ndarray:
    """Read a change mask as an (H, W) uint8 array of 0 (no change) and 1 (change).

    Pixels at or above `threshold` are change. RGB masks are reduced by their brightest band,
    so white or any coloured marking counts. A mask whose values are only 0 and 1 is a 0/1
    mask: its 1s are change whatever the threshold, so it is not silently read as all zeros.

    Raises:
        ImageReadError: if the file cannot be decoded.
    """
    path = Path(path)
    array = np.asarray(_open(path))
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1) if array.shape[-1] != 2 else array[..., 0]
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.max() <= 1:
        return (array >= 1).astype(np.uint8)
    return (array >= threshold).astype(np.uint8)


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Scale integer pixels to float32 in [0, 1] by the maximum of their dtype."""
    if not np.issubdtype(image.dtype, np.integer):
        raise TypeError(f"expected integer pixels, got {image.dtype}")
    return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
