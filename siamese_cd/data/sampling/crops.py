"""Options of training on few large scenes: several random crops per scene and epoch.

A split of 10 to 24 large scenes gives 10 to 24 samples per epoch with one crop per scene.
``samples_per_scene=K`` makes an epoch ``K x scenes`` crops, and ``min_change`` draws crops
again (a bounded number of times) until one holds enough changed pixels, which matters when
2-3 % of a scene's pixels changed. Masks looked at for `min_change` are kept in memory,
a bounded number of them.

Example:
    >>> check_scene_sampling(4, 0.01, crop_size=(96, 96), labelled=True)
    (4, 0.01)
    >>> memory = MaskMemory(limit=2)
    >>> [memory.get(i, lambda i: np.full((2, 2), i, np.uint8)).sum() for i in (0, 1, 2, 0)]
    [np.uint64(0), np.uint64(4), np.uint64(8), np.uint64(0)]
    >>> len(memory)
    2
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from siamese_cd.errors import DatasetError

# Whole-scene masks kept for `min_change`: 64 masks of 1200 x 1100 pixels are about 85 MB.
MASKS_KEPT = 64


def check_scene_sampling(
    samples_per_scene: int,
    min_change: float,
    crop_size: tuple[int, int] | None,
    labelled: bool,
) -> tuple[int, float]:
    """Validate `samples_per_scene` and `min_change` against the other sample options.

    Raises:
        DatasetError: if `samples_per_scene` is not a positive int, `min_change` is not in
            [0, 1), or either is used without `crop_size` (or `min_change` without labels).
    """
    if isinstance(samples_per_scene, bool) or not isinstance(samples_per_scene, (int, np.integer)):
        raise DatasetError(f"samples_per_scene must be an int, got {samples_per_scene!r}")
    if samples_per_scene < 1:
        raise DatasetError(f"samples_per_scene must be at least 1, got {samples_per_scene}")
    if not 0 <= min_change < 1:
        raise DatasetError(f"min_change must be in [0, 1), got {min_change!r}")
    if crop_size is None and (samples_per_scene > 1 or min_change > 0):
        raise DatasetError(
            "samples_per_scene and min_change choose random crops: give crop_size too"
        )
    if min_change > 0 and not labelled:
        raise DatasetError("min_change looks at the change masks; this dataset has none")
    return int(samples_per_scene), float(min_change)


class MaskMemory:
    """The most recently used whole-scene masks, at most `limit` of them, thread-safe."""

    def __init__(self, limit: int = MASKS_KEPT):
        self.limit = limit
        self._masks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._masks)

    def get(self, scene: int, read: Callable[[int], np.ndarray]) -> np.ndarray:
        """Mask of `scene`, read with ``read(scene)`` the first time."""
        with self._lock:
            if scene in self._masks:
                self._masks.move_to_end(scene)
                return self._masks[scene]
        mask = read(scene)  # outside the lock: decoding releases the GIL
        with self._lock:
            self._masks[scene] = mask
            while len(self._masks) > self.limit:
                self._masks.popitem(last=False)
        return mask
