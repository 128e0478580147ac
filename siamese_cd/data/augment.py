"""Joint geometric augmentation of a (t1, t2, mask) sample, in NumPy.

The same flip and rotation is applied to both dates and the mask, so the change stays where it
was; masks are only permuted, never interpolated, so they stay exactly binary.
"""

from __future__ import annotations

import numpy as np


class Augment:
    """Random flips and 90-degree rotations applied identically to t1, t2 and the mask.

    These are the augmentations of the published FC-Siam training. Rotations by 90 and 270
    degrees are used only on square samples, so that every sample of a batch keeps its shape.

    Args:
        flip: flip left-right and up-down, each with probability 0.5.
        rotate: rotate by a multiple of 90 degrees chosen uniformly.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> t1 = t2 = np.zeros((8, 8, 3), np.uint8)
        >>> mask = np.zeros((8, 8), np.uint8)
        >>> a1, a2, m = Augment()(t1, t2, mask, rng)
        >>> a1.shape, m.shape
        ((8, 8, 3), (8, 8))
    """

    def __init__(self, flip: bool = True, rotate: bool = True):
        self.flip = flip
        self.rotate = rotate

    def __call__(
        self,
        t1: np.ndarray,
        t2: np.ndarray,
        mask: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        arrays = [t1, t2] + ([mask] if mask is not None else [])
        if self.flip:
            if rng.random() < 0.5:
                arrays = [a[:, ::-1] for a in arrays]
            if rng.random() < 0.5:
                arrays = [a[::-1] for a in arrays]
        if self.rotate:
            square = t1.shape[0] == t1.shape[1]
            k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            arrays = [np.rot90(a, k, axes=(0, 1)) for a in arrays]
        arrays = [np.ascontiguousarray(a) for a in arrays]
        return arrays[0], arrays[1], arrays[2] if mask is not None else None

    def get_config(self) -> dict:
        return {"flip": self.flip, "rotate": self.rotate}

    def __repr__(self) -> str:
        return f"Augment(flip={self.flip}, rotate={self.rotate})"
