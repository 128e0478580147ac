"""Render change-detection samples as side-by-side RGB panels, in NumPy.

One panel per sample, left to right::

    t1 | t2 | truth | prediction | errors | probability

- ``truth`` and ``prediction``: white is change, black no change.
- ``errors``: t2 with every pixel the prediction got wrong or right about change painted in
  an opaque colour: true positives green (0, 255, 0), false positives red (255, 0, 0), false
  negatives blue (0, 0, 255); true negatives show t2 unchanged.
- ``probability``: the change probability as a viridis heat map, dark purple at 0 through
  teal to yellow at 1.

Images come as the model is given them, raw pixels as stored; `to_rgb_uint8` is the one place
they are converted for display (integer pixels over their type's range, optional stretch).

Example:
    >>> t = np.zeros((1, 4, 4, 3), np.uint8)
    >>> truth = np.ones((1, 4, 4, 1), np.float32)
    >>> make_panels(t, t, truth, truth * 0.9).shape
    (1, 4, 24, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PANELS = ("t1", "t2", "truth", "prediction", "errors", "probability")
DESCRIPTION = (
    "t1 | t2 | truth | prediction | errors | probability. Truth and prediction: white = change. "
    "Errors on t2: green = true positive, red = false positive, blue = false negative. "
    "Probability: viridis, purple = 0, yellow = 1."
)
TRUE_POSITIVE = (0, 255, 0)
FALSE_POSITIVE = (255, 0, 0)
FALSE_NEGATIVE = (0, 0, 255)
# Viridis sampled at 0, 1/4, 1/2, 3/4 and 1, interpolated linearly in between.
_VIRIDIS = np.array(
    [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float32
)


def display_range(images: np.ndarray) -> float:
    """The value shown as full brightness: an integer type's maximum, 1 for floats."""
    if np.issubdtype(images.dtype, np.integer):
        return float(np.iinfo(images.dtype).max)
    return 1.0


def to_rgb_uint8(
    images: np.ndarray, rgb_bands: Sequence[int] = (0, 1, 2), stretch: bool = False
) -> np.ndarray:
    """Show (N, H, W, C) images as uint8 RGB through three chosen bands, for display only.

    Integer pixels are shown over their type's range (uint8 / 255, uint16 / 65535), floats
    as [0, 1]; floats outside [0, 1] (such as reflectances) have no fixed range and are
    stretched. Single-band images are shown as gray. With `stretch`, each image's 2nd to
    98th percentile is spread over the full range, which makes dark multispectral
    reflectances readable.

    Raises:
        ValueError: if a band index is out of range.

    Example:
        >>> to_rgb_uint8(np.full((1, 1, 1, 3), 51, np.uint8))[0, 0, 0].tolist()
        [51, 51, 51]
        >>> to_rgb_uint8(np.full((1, 1, 1, 1), 0.2, np.float32))[0, 0, 0].tolist()
        [51, 51, 51]
    """
    channels = images.shape[-1]
    if channels == 1:
        rgb = np.repeat(images, 3, axis=-1)
    else:
        bad = [b for b in rgb_bands if not -channels <= b < channels]
        if bad or len(rgb_bands) != 3:
            raise ValueError(f"rgb_bands {tuple(rgb_bands)} does not fit {channels} bands")
        rgb = images[..., list(rgb_bands)]
    scale = display_range(images)
    rgb = rgb.astype(np.float32) / np.float32(scale)
    if not stretch and scale == 1.0 and rgb.size:
        finite = rgb[np.isfinite(rgb)]
        stretch = finite.size > 0 and (finite.min() < 0.0 or finite.max() > 1.0)
    if stretch:
        low = np.percentile(rgb, 2, axis=(1, 2, 3), keepdims=True)
        high = np.percentile(rgb, 98, axis=(1, 2, 3), keepdims=True)
        rgb = (rgb - low) / np.maximum(high - low, 1e-6)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) 0/1 masks as uint8 RGB, white for change."""
    return np.repeat((mask > 0.5).astype(np.uint8) * 255, 3, axis=-1)


def error_overlay(t2_rgb: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Paint true positives, false positives and false negatives over uint8 RGB t2 images.

    Args:
        t2_rgb: (N, H, W, 3) uint8.
        truth: (N, H, W, 1) 0/1 masks.
        prediction: (N, H, W, 1) 0/1 masks.

    Returns:
        (N, H, W, 3) uint8: `TRUE_POSITIVE`, `FALSE_POSITIVE` and `FALSE_NEGATIVE` colours on
        those pixels, t2 elsewhere.
    """
    actual, predicted = truth[..., 0] > 0.5, prediction[..., 0] > 0.5
    out = t2_rgb.copy()
    out[actual & predicted] = TRUE_POSITIVE
    out[~actual & predicted] = FALSE_POSITIVE
    out[actual & ~predicted] = FALSE_NEGATIVE
    return out


def heat_map(probability: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) probabilities in [0, 1] as uint8 RGB viridis colours (NaN as 0)."""
    # A diverged model predicts NaN; it is drawn, and the NaN guard reports the loss.
    finite = np.nan_to_num(probability[..., 0], nan=0.0, posinf=1.0, neginf=0.0)
    position = np.clip(finite, 0.0, 1.0) * (len(_VIRIDIS) - 1)
    low = np.minimum(np.floor(position).astype(int), len(_VIRIDIS) - 2)
    fraction = (position - low)[..., None]
    colours = _VIRIDIS[low] * (1 - fraction) + _VIRIDIS[low + 1] * fraction
    return np.round(colours).astype(np.uint8)


def make_panels(
    t1: np.ndarray,
    t2: np.ndarray,
    truth: np.ndarray,
    probability: np.ndarray,
    threshold: float = 0.5,
    rgb_bands: Sequence[int] = (0, 1, 2),
    stretch: bool = False,
) -> np.ndarray:
    """Side-by-side panels, see the module docstring for what each shows.

    Args:
        t1: (N, H, W, C) images, raw pixels (see `to_rgb_uint8`).
        t2: (N, H, W, C) images, raw pixels.
        truth: (N, H, W, 1) 0/1 masks.
        probability: (N, H, W, 1) change probabilities.
        threshold: probability at or above which a pixel is predicted as change.
        rgb_bands: the bands shown as red, green and blue.
        stretch: percentile-stretch each image for display.

    Returns:
        (N, H, 6 * W, 3) uint8.
    """
    prediction = (probability >= threshold).astype(np.float32)
    t2_rgb = to_rgb_uint8(t2, rgb_bands, stretch)
    tiles = [
        to_rgb_uint8(t1, rgb_bands, stretch),
        t2_rgb,
        mask_to_rgb(truth),
        mask_to_rgb(prediction),
        error_overlay(t2_rgb, truth, prediction),
        heat_map(probability),
    ]
    return np.concatenate(tiles, axis=2)
