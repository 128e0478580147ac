"""Checks of decoded pixels that name the file: NaN or infinite values, and masks whose
non-zero values never reach the label threshold.

Example:
    >>> import numpy as np
    >>> mask = np.array([[0, 7]], np.uint8)
    >>> below_threshold(mask, (mask >= 128).astype(np.uint8), 128)[:30]
    'non-zero values {7} all below '
    >>> check_finite(np.array([1.0, np.nan], np.float32), "a.tif")
    Traceback (most recent call last):
    ...
    siamese_cd.errors.NonFiniteError: a.tif: 1 NaN and 0 infinite pixel value(s); a model cannot learn from them. Fill them (e.g. with the band's mean, or 0) or crop them out
"""  # noqa: E501

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from siamese_cd.errors import NonFiniteError
from siamese_cd.hints import option_hint

# Values of a JPEG mask up to this are compression noise around 0, not a marking.
LOSSY_NOISE = 64


def check_finite(array: np.ndarray, path: str | Path) -> np.ndarray:
    """`array`, if it holds no NaN or infinite value (only float pixels can).

    Raises:
        ImageReadError: naming the file and how many pixels are not finite.
    """
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise NonFiniteError(
            f"{path}: {nan} NaN and {inf} infinite pixel value(s); a model cannot learn from "
            "them. Fill them (e.g. with the band's mean, or 0) or crop them out"
        )
    return array


def below_threshold(
    values: np.ndarray, mask: np.ndarray, threshold: int, lossy: bool = False
) -> str | None:
    """The problem of a mask whose non-zero values never reach `threshold`, or None.

    Such a mask reads as "no change" everywhere, which is rarely what its author meant
    (e.g. a mask of 0 and 7). `siamese-cd check` reports it, and reading it warns once. In a
    lossy (JPEG) mask, values up to `LOSSY_NOISE` are compression noise around 0.
    """
    if mask.any() or values.dtype == bool or values.max(initial=0) <= (LOSSY_NOISE if lossy else 0):
        return None
    present = np.unique(values[values != 0])
    shown = ", ".join(str(v) for v in present[:8]) + (", ..." if len(present) > 8 else "")
    return (
        f"non-zero values {{{shown}}} all below the label threshold {threshold}, so the mask "
        "reads as no change everywhere; lower the threshold "
        f"({option_hint('label_threshold=', '--label-threshold')}) if these values mark change"
    )


_warned_threshold: set[str] = set()  # files warned about, each once


def warn_if_below_threshold(path: Path, values: np.ndarray, mask: np.ndarray, threshold) -> None:
    """Warn once per file about a mask whose non-zero values never reach `threshold`."""
    if str(path) in _warned_threshold:
        return
    lossy = Path(path).suffix.lower() in (".jpg", ".jpeg")
    problem = below_threshold(values, mask, threshold, lossy)
    if problem is not None:
        _warned_threshold.add(str(path))
        warnings.warn(f"{path}: {problem}", stacklevel=3)
