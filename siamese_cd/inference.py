"""Change maps for scenes of any size: overlapping windows, blended without seams.

A scene is cut into `tile_size` windows that overlap by `overlap` pixels. Each window's
prediction is weighted by a ramp that is zero in the outer quarter of the overlap and rises
linearly to one over its middle half, then the weighted predictions are averaged. Pixels are
therefore never taken from near a window's edge, where zero padding distorts a convolutional
network, and neighbouring windows fade into each other instead of meeting at a seam. At the
scene's own edges the ramp is left out, so every pixel has weight.

Memory is the window batch plus the output: the scene's inputs are read one window at a time
from a reader (`ArrayScene` for arrays in memory; files are read window by window where their
format allows it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.errors import ConfigError, ImageReadError
from siamese_cd.losses import change_probability


class Scene(Protocol):
    """A source of image windows: `shape` is (H, W, C); `read` returns float32 in [0, 1]."""

    shape: tuple[int, int, int]

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray: ...


class ArrayScene:
    """A scene held as an (H, W, C) array; integer pixels are scaled by their dtype's max."""

    def __init__(self, array: np.ndarray, name: str = "array"):
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ImageReadError(f"{name}: expected an (H, W, C) image, got shape {array.shape}")
        self.array = array
        self.name = name
        self.shape = tuple(int(s) for s in array.shape)

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        window = self.array[top : top + height, left : left + width]
        if np.issubdtype(window.dtype, np.integer):
            return window.astype(np.float32) / np.float32(np.iinfo(window.dtype).max)
        return window.astype(np.float32, copy=False)


def window_starts(size: int, tile: int, stride: int) -> list[int]:
    """Starts of windows of length `tile` covering [0, size): every `stride`, the last one
    flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def ramp(length: int, overlap: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """1-D blending weights of a window: 0 over the outer quarter of the overlap, then linear
    to 1 over its middle half, on each side that meets another window."""
    weights = np.ones(length, np.float32)
    if overlap <= 0:
        return weights
    distance = np.arange(length, dtype=np.float32) + 0.5  # from the window's start
    rising = np.clip((distance - overlap / 4) / (overlap / 2), 0.0, 1.0)
    if fade_start:
        weights = np.minimum(weights, rising)
    if fade_end:
        weights = np.minimum(weights, rising[::-1])
    return weights


def windows(
    height: int, width: int, tile: int, overlap: int
) -> Iterator[tuple[int, int, int, int]]:
    """(top, left, height, width) of the windows covering a scene, row by row."""
    stride = tile - overlap
    for top in window_starts(height, tile, stride):
        for left in window_starts(width, tile, stride):
            yield top, left, min(tile, height), min(tile, width)


def predict_scene(
    model,
    t1,
    t2,
    tile_size: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Change probability of a whole scene, predicted window by window.

    Args:
        model: a change model taking ``(t1, t2)`` batches, e.g. `SiameseChangeModel`.
        t1: the first date, an (H, W, C) array or a `Scene`.
        t2: the second date, of the same size.
        tile_size: window side in pixels.
        overlap: pixels shared by neighbouring windows; must be less than `tile_size`. Results
            equal whole-image prediction when ``tile_size - overlap`` is a multiple of
            ``2**depth`` and a quarter of the overlap exceeds the network's border effects.
        batch_size: windows per model call; with the tile size, this bounds memory.
        progress: show a progress bar over windows.

    Returns:
        (H, W) float32 change probabilities.

    Raises:
        ConfigError: for a bad tile size or overlap.
        ImageReadError: if the dates differ in size or bands.

    Example:
        >>> probability = predict_scene(model, t1, t2, tile_size=256, overlap=64)  # doctest: +SKIP
        >>> mask = probability >= 0.5  # doctest: +SKIP
    """
    if tile_size < 1 or not 0 <= overlap < tile_size:
        raise ConfigError(
            f"need tile_size >= 1 and 0 <= overlap < tile_size, got {tile_size} and {overlap}"
        )
    scene1 = t1 if hasattr(t1, "read") else ArrayScene(np.asarray(t1), "t1")
    scene2 = t2 if hasattr(t2, "read") else ArrayScene(np.asarray(t2), "t2")
    if scene1.shape != scene2.shape:
        raise ImageReadError(
            f"t1 {getattr(scene1, 'name', '')} {scene1.shape} and t2 "
            f"{getattr(scene2, 'name', '')} {scene2.shape} differ in size or bands"
        )
    height, width, _ = scene1.shape
    total = np.zeros((height, width), np.float32)
    # Weights are separable, so their per-pixel sum is an outer product of two 1-D sums and no
    # scene-sized weight array is needed.
    row_weights = np.zeros(height, np.float32)
    col_weights = np.zeros(width, np.float32)
    boxes = list(windows(height, width, tile_size, overlap))
    for top in sorted({b[0] for b in boxes}):
        h = boxes[0][2]
        row_weights[top : top + h] += ramp(h, overlap, top > 0, top + h < height)
    for left in sorted({b[1] for b in boxes}):
        w = boxes[0][3]
        col_weights[left : left + w] += ramp(w, overlap, left > 0, left + w < width)

    bar = tqdm(total=len(boxes), desc="Predicting windows", unit="window", disable=not progress)
    for start in range(0, len(boxes), batch_size):
        batch = boxes[start : start + batch_size]
        x1 = np.stack([scene1.read(*box) for box in batch])
        x2 = np.stack([scene2.read(*box) for box in batch])
        scores = np.asarray(model.predict_on_batch((x1, x2)))
        probabilities = change_probability(scores)[..., 0]
        for (top, left, h, w), probability in zip(batch, probabilities):
            weight = np.outer(
                ramp(h, overlap, top > 0, top + h < height),
                ramp(w, overlap, left > 0, left + w < width),
            )
            total[top : top + h, left : left + w] += probability * weight
        bar.update(len(batch))
    bar.close()
    total /= np.outer(row_weights, col_weights)
    return total
