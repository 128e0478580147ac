"""Augmentation of a (t1, t2, mask) sample, in NumPy.

Geometric transforms (flips, 90-degree rotations, an optional zoom) are applied identically to
both dates and the mask, so the change stays where it was; masks are only permuted or resampled
by nearest neighbour, never interpolated, so they stay exactly binary. Radiometric jitter
(brightness, contrast, gamma, hue, saturation, noise) is drawn independently for each date, as
two acquisitions differ in light and sensor. It works in raw pixel units: 8- or 16-bit pixels are
divided by their type's maximum (`decoding.pixel_scale`), jittered in [0, 1] and multiplied back,
so the result is float32 in the files' own range (0..255 for 8-bit data). A date swap exchanges
t1 and t2, which leaves a binary change mask unchanged.

Every draw comes from the `numpy.random.Generator` passed in, so a seeded generator gives the
same result each time.
"""

from __future__ import annotations

import numpy as np

from siamese_cd.data.readers.decoding import pixel_scale

# RGB <-> YIQ, where a hue shift is a rotation of the (I, Q) plane.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=np.float32,
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) * array.shape[0] / height).astype(np.intp)
    cols = (np.arange(width) * array.shape[1] / width).astype(np.intp)
    return array[rows[:, None], cols[None, :]]


def _resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (h, w, C) array of any pixel type, rounding back to that type."""
    in_h, in_w = array.shape[:2]
    y = np.clip((np.arange(height) + 0.5) * in_h / height - 0.5, 0, in_h - 1)
    x = np.clip((np.arange(width) + 0.5) * in_w / width - 0.5, 0, in_w - 1)
    y0, x0 = y.astype(np.intp), x.astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, in_h - 1), np.minimum(x0 + 1, in_w - 1)
    wy = (y - y0).astype(np.float32)[:, None, None]
    wx = (x - x0).astype(np.float32)[None, :, None]
    a = array.astype(np.float32)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    out = top * (1 - wy) + bottom * wy
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(array.dtype)


class Augment:
    """Random augmentation of a change-detection sample: geometric, radiometric, date swap.

    Geometric parts act on t1, t2 and the mask together. Rotations by 90 and 270 degrees are
    used only on square samples, so that every sample of a batch keeps its shape. Radiometric
    parts act on each date separately; their amounts are fractions of the pixel type's range
    (``brightness=0.1`` shifts 8-bit pixels by up to 25.5), and the result is float32 clipped
    to that range. They need 8- or 16-bit images; `hue` and `saturation` need 3 bands (RGB).
    All parts are off at 0 or None, except flips and rotations, which are the augmentations
    of the published FC-Siam training.

    Args:
        flip: flip left-right and up-down, each with probability 0.5.
        rotate: rotate by a multiple of 90 degrees chosen uniformly.
        scale: ``(low, high)`` with ``0 < low <= high <= 1``: zoom in by cutting a window
            whose sides are a uniform fraction in that range of the sample's, at a random
            place, and resizing it back to the sample's size (images bilinear, mask nearest).
        brightness: add a uniform offset in ``[-brightness, brightness]``.
        contrast: scale the deviation from the image mean by a factor in
            ``[1 - contrast, 1 + contrast]``.
        gamma: raise to a power in ``[1 - gamma, 1 + gamma]``.
        hue: rotate the hue by up to ``hue`` of a full turn (0.5 = 180 degrees).
        saturation: scale the saturation by a factor in ``[1 - saturation, 1 + saturation]``.
        noise: add Gaussian noise of this standard deviation.
        swap: probability of exchanging t1 and t2.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> t1 = t2 = np.zeros((8, 8, 3), np.uint8)
        >>> mask = np.zeros((8, 8), np.uint8)
        >>> a1, a2, m = Augment()(t1, t2, mask, rng)
        >>> a1.shape, m.shape
        ((8, 8, 3), (8, 8))
        >>> strong = Augment(scale=(0.8, 1.0), brightness=0.1, contrast=0.1, swap=0.5)
        >>> image = np.full((8, 8, 3), 0.5, np.float32)
        >>> strong.jitter(image, rng).dtype
        dtype('float32')
        >>> raw = np.full((8, 8, 3), 200, np.uint8)
        >>> b1, b2, m = strong.apply(raw, raw, mask, rng)  # raw units: floats in 0..255
        >>> b1.dtype, bool(b1.max() > 1 and b1.max() <= 255)
        (dtype('float32'), True)
    """

    def __init__(
        self,
        flip: bool = True,
        rotate: bool = True,
        scale: tuple[float, float] | None = None,
        brightness: float = 0.0,
        contrast: float = 0.0,
        gamma: float = 0.0,
        hue: float = 0.0,
        saturation: float = 0.0,
        noise: float = 0.0,
        swap: float = 0.0,
    ):
        if scale is not None:
            scale = (float(scale[0]), float(scale[1]))
            if not 0 < scale[0] <= scale[1] <= 1:
                raise ValueError(
                    f"scale must be (low, high) with 0 < low <= high <= 1, got {scale}"
                )
        for name, value, high in (
            ("brightness", brightness, 1.0),
            ("contrast", contrast, 1.0),
            ("gamma", gamma, 0.99),
            ("hue", hue, 0.5),
            ("saturation", saturation, 1.0),
            ("noise", noise, 1.0),
            ("swap", swap, 1.0),
        ):
            if not 0 <= value <= high:
                raise ValueError(f"{name} must be in [0, {high}], got {value}")
        self.flip = bool(flip)
        self.rotate = bool(rotate)
        self.scale = scale
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.gamma = float(gamma)
        self.hue = float(hue)
        self.saturation = float(saturation)
        self.noise = float(noise)
        self.swap = float(swap)

    @property
    def radiometric(self) -> bool:
        """Whether any radiometric part is on (its batches are then float32, in raw units)."""
        return any(
            (self.brightness, self.contrast, self.gamma, self.hue, self.saturation, self.noise)
        )

    @property
    def needs_rgb(self) -> bool:
        """Whether a part that only makes sense for RGB images (hue, saturation) is on."""
        return bool(self.hue or self.saturation)

    def __call__(
        self,
        t1: np.ndarray,
        t2: np.ndarray,
        mask: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Apply the geometric parts and the date swap to integer or float arrays.

        Args:
            t1: (H, W, C) image of the first date.
            t2: (H, W, C) image of the second date.
            mask: (H, W) mask, or None without labels.
            rng: the source of randomness.

        Returns:
            ``(t1, t2, mask)`` transformed, C-contiguous, in their input types.
        """
        arrays = [t1, t2] + ([mask] if mask is not None else [])
        if self.scale is not None:
            height, width = t1.shape[:2]
            fraction = rng.uniform(*self.scale)
            h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
            top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
            if (h, w) != (height, width):
                arrays = [a[top : top + h, left : left + w] for a in arrays]
                arrays = [_resize_bilinear(a, height, width) for a in arrays[:2]] + [
                    _resize_nearest(a, height, width) for a in arrays[2:]
                ]
        if self.flip:
            if rng.random() < 0.5:
                arrays = [a[:, ::-1] for a in arrays]
            if rng.random() < 0.5:
                arrays = [a[::-1] for a in arrays]
        if self.rotate:
            square = t1.shape[0] == t1.shape[1]
            k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            arrays = [np.rot90(a, k, axes=(0, 1)) for a in arrays]
        if self.swap and rng.random() < self.swap:
            arrays[0], arrays[1] = arrays[1], arrays[0]
        arrays = [np.ascontiguousarray(a) for a in arrays]
        return arrays[0], arrays[1], arrays[2] if mask is not None else None

    def apply(
        self,
        t1: np.ndarray,
        t2: np.ndarray,
        mask: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The whole augmentation of a sample: `__call__`, then radiometric jitter per date.

        Returns:
            ``(t1, t2, mask)``; the images float32 in raw units when a radiometric part is on,
            otherwise in their input type.

        Raises:
            ImageReadError: if a radiometric part is on and the pixels are not 8 or 16-bit.
        """
        t1, t2, mask = self(t1, t2, mask, rng)
        if self.radiometric:
            t1, t2 = self.jitter_raw(t1, rng), self.jitter_raw(t2, rng)
        return t1, t2, mask

    def jitter_raw(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        out: np.ndarray | None = None,
        path=None,
    ) -> np.ndarray:
        """The radiometric parts on raw 8- or 16-bit pixels, giving float32 in the same range.

        Args:
            image: (H, W, C) uint8 or uint16 image.
            rng: the source of randomness.
            out: float32 array of the image's shape to write into; None makes one.
            path: the image's file, named by the error.

        Raises:
            ImageReadError: if the pixels have no fixed maximum (e.g. float32).
        """
        scale = np.float32(pixel_scale(image.dtype, path))
        out = np.empty(image.shape, np.float32) if out is None else out
        np.divide(image, scale, out=out, dtype=np.float32)
        self.jitter(out, rng)
        out *= scale
        return out

    def jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply the radiometric parts, in place, to one date scaled to [0, 1].

        Args:
            image: (H, W, C) float32 image in [0, 1]; modified in place.
            rng: the source of randomness.

        Returns:
            `image`, clipped to [0, 1].
        """
        if self.brightness:
            image += np.float32(rng.uniform(-self.brightness, self.brightness))
        if self.contrast:
            factor = np.float32(rng.uniform(1 - self.contrast, 1 + self.contrast))
            mean = image.mean(axis=(0, 1), dtype=np.float32)
            image -= mean
            image *= factor
            image += mean
        if self.hue or self.saturation:
            if image.shape[-1] != 3:
                raise ValueError(f"hue and saturation need 3-band images, got {image.shape[-1]}")
            if self.saturation:
                factor = np.float32(rng.uniform(1 - self.saturation, 1 + self.saturation))
                gray = image @ _LUMA
                image -= gray[..., None]
                image *= factor
                image += gray[..., None]
            if self.hue:
                angle = rng.uniform(-self.hue, self.hue) * 2 * np.pi
                cos, sin = np.cos(angle), np.sin(angle)
                rotation = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], np.float32)
                image[...] = image @ (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).T
        if self.gamma:
            np.clip(image, 0, 1, out=image)
            np.power(image, np.float32(rng.uniform(1 - self.gamma, 1 + self.gamma)), out=image)
        if self.noise:
            image += rng.normal(0, self.noise, image.shape).astype(np.float32)
        np.clip(image, 0, 1, out=image)
        return image

    def get_config(self) -> dict:
        return {
            "flip": self.flip,
            "rotate": self.rotate,
            "scale": list(self.scale) if self.scale is not None else None,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "gamma": self.gamma,
            "hue": self.hue,
            "saturation": self.saturation,
            "noise": self.noise,
            "swap": self.swap,
        }

    @classmethod
    def from_config(cls, config: dict) -> Augment:
        return cls(**config)

    def __repr__(self) -> str:
        defaults = Augment().get_config()
        shown = {
            k: v
            for k, v in self.get_config().items()
            if k in ("flip", "rotate") or v != defaults[k]
        }
        return f"Augment({', '.join(f'{k}={v!r}' for k, v in shown.items())})"
