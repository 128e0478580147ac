"""Windows into scenes: tiles for evaluation and prediction, random and central crops for training.

Every window rule lives here. Windows of side ``tile`` every ``stride`` pixels cover a side
completely: when the side is not a whole number of strides, the last window is moved back to
end at the border (it overlaps its neighbour) rather than padded. A side shorter than the
window gets one window, clipped to the side. A 1024 x 1024 scene in tiles of 256 gives 16
tiles; `PairedImageDataset` refuses scenes smaller than its ``tile_size`` (its batches need one
tile shape), while prediction (`windows`) takes such a scene whole.

Only scene sizes are held, never pixels: the n-th tile of a split is found from the cumulative
tile counts, so memory grows by a few bytes per scene.

Example:
    >>> tile_starts(1024, 256, 256)
    [0, 256, 512, 768]
    >>> tile_starts(300, 256, 256)
    [0, 44]
    >>> tile_starts(100, 256, 256)  # shorter than the window: one window, clipped
    [0]
    >>> list(windows(100, 300, tile=256, overlap=0))
    [(0, 0, 100, 256), (0, 44, 100, 256)]
    >>> index = TileIndex([(1024, 1024), (256, 512)], tile=256)
    >>> len(index), index.locate(17)
    (18, (1, (0, 256, 256, 256)))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from siamese_cd.data.readers.decoding import Window
from siamese_cd.errors import DatasetError


def as_size(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``256`` or ``(256, 512)`` as ``(height, width)`` of positive ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        size = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        size = (int(value[0]), int(value[1]))
    else:
        raise DatasetError(f"{name} must be an int or (height, width), got {value!r}")
    if min(size) < 1:
        raise DatasetError(f"{name} must be positive, got {value!r}")
    return size


def tile_count(length: int, tile: int, stride: int) -> int:
    """Number of windows along one side of `length` pixels (1 if the window does not fit)."""
    if length <= tile:
        return 1
    return -(-(length - tile) // stride) + 1


def tile_start(k: int, length: int, tile: int, stride: int) -> int:
    """Start of window `k` along one side: every `stride`, the last one ending at the border."""
    return min(k * stride, max(length - tile, 0))


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start of each window along one side; the last one ends at the border.

    A side shorter than `tile` gets one window at 0 (clipped to the side by its user).
    """
    return [tile_start(k, length, tile, stride) for k in range(tile_count(length, tile, stride))]


# The name `siamese_cd.evaluation.inference` uses for the same rule.
window_starts = tile_starts


def windows(height: int, width: int, tile: int, overlap: int) -> Iterator[Window]:
    """``(top, left, height, width)`` of the prediction windows of a scene, row by row.

    Windows of side `tile` overlap by `overlap` pixels; a scene side shorter than `tile` gets
    one window as long as the side.
    """
    stride = tile - overlap
    for top in tile_starts(height, tile, stride):
        for left in tile_starts(width, tile, stride):
            yield top, left, min(tile, height), min(tile, width)


def cut_windows(arrays: Sequence[np.ndarray | None], boxes: Sequence[Window]) -> list[tuple]:
    """Each window of `boxes` cut from every array of a scene (None stays None).

    Example:
        >>> image = np.arange(16).reshape(4, 4)
        >>> [tuple(a.tolist() if a is not None else None for a in cut)
        ...  for cut in cut_windows((image, None), [(0, 1, 2, 2)])]
        [([[1, 2], [5, 6]], None)]
    """
    return [
        tuple(a[y : y + h, x : x + w] if a is not None else None for a in arrays)
        for y, x, h, w in boxes
    ]


# The side of the paper's random training patches (Daudt et al. 2018), the default crop of
# scene datasets (OSCD, AirChange) that hold a few large scenes.
PAPER_PATCH = 96


def patch_for(sizes: np.ndarray, patch: int, multiple: int) -> int:
    """`patch`, made a multiple of `multiple` and no larger than the smallest scene side.

    Example:
        >>> patch_for(np.array([[640, 952], [70, 90]]), 96, 16)
        64
    """
    fitted = min(patch, int(np.min(sizes))) // multiple * multiple
    if fitted < multiple:
        raise DatasetError(
            f"the smallest scene ({int(np.min(sizes))} px) is smaller than one patch of "
            f"{multiple} px, the least the network takes"
        )
    return fitted


def patches_per_scene(sizes: np.ndarray, patch: int) -> int:
    """Patches per scene and epoch: as many as a stride of half a patch cuts, on average.

    Example:
        >>> patches_per_scene(np.array([[480, 480], [240, 480]]), 96)  # (9 * 9 + 4 * 9) / 2
        58
    """
    stride = max(1, patch // 2)
    counts = [tile_count(h, patch, stride) * tile_count(w, patch, stride) for h, w in sizes]
    return max(1, round(float(np.mean(counts))))


def random_window(height: int, width: int, size: tuple[int, int], rng) -> Window:
    """A uniformly placed ``size`` window inside a ``height`` x ``width`` scene."""
    h, w = size
    return int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w


def center_window(height: int, width: int, size: tuple[int, int]) -> Window:
    """The ``size`` window in the middle of a ``height`` x ``width`` scene."""
    h, w = size
    return (height - h) // 2, (width - w) // 2, h, w


class TileIndex:
    """Numbering of the tiles of many scenes, scene by scene, row by row.

    Args:
        sizes: ``(height, width)`` of each scene.
        tile: tile ``(height, width)``, or one int for square tiles.
        stride: step between tiles; defaults to the tile size (no overlap).

    Example:
        >>> index = TileIndex([(512, 512), (300, 256)], tile=256)
        >>> len(index), index.tiles_of(1)
        (6, 2)
        >>> index.locate(5)  # scene 1, second row, moved back to end at the border
        (1, (44, 0, 256, 256))
    """

    def __init__(self, sizes, tile, stride=None):
        self.tile = as_size(tile, "tile_size")
        self.stride = as_size(stride, "tile_stride") if stride is not None else self.tile
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        th, tw = self.tile
        sh, sw = self.stride
        self._rows = np.array([tile_count(h, th, sh) for h in self.sizes[:, 0]], np.int64)
        self._cols = np.array([tile_count(w, tw, sw) for w in self.sizes[:, 1]], np.int64)
        self._ends = np.cumsum(self._rows * self._cols)

    def too_small(self) -> list[int]:
        """Indices of the scenes smaller than one tile (their one tile is clipped)."""
        small = (self.sizes[:, 0] < self.tile[0]) | (self.sizes[:, 1] < self.tile[1])
        return [int(i) for i in np.flatnonzero(small)]

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def tiles_of(self, scene: int) -> int:
        """Number of tiles of `scene`."""
        return int(self._rows[scene] * self._cols[scene])

    def first_of(self, scene: int) -> int:
        """Index of the first tile of `scene`."""
        return int(self._ends[scene]) - self.tiles_of(scene)

    def locate(self, index: int) -> tuple[int, Window]:
        """Scene index and ``(top, left, height, width)`` of tile `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile {index} out of range for {len(self)} tiles")
        scene = int(np.searchsorted(self._ends, index, side="right"))
        local = index - self.first_of(scene)
        row, col = divmod(local, int(self._cols[scene]))
        height, width = (int(v) for v in self.sizes[scene])
        (th, tw), (sh, sw) = self.tile, self.stride
        top, left = tile_start(row, height, th, sh), tile_start(col, width, tw, sw)
        return scene, (top, left, min(th, height), min(tw, width))

    def windows_of(self, scene: int) -> list[Window]:
        """Every tile window of `scene`, in index order."""
        first = self.first_of(scene)
        return [self.locate(first + k)[1] for k in range(self.tiles_of(scene))]
