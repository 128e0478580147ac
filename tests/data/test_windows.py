import numpy as np
import pytest

from siamese_cd.data.sampling.windows import (
    TileIndex,
    as_size,
    center_window,
    random_window,
    tile_starts,
    window_starts,
    windows,
)
from siamese_cd.errors import DatasetError


def test_tiles_cover_the_side_and_the_last_one_ends_at_the_border():
    assert tile_starts(1024, 256, 256) == [0, 256, 512, 768]
    assert tile_starts(300, 256, 256) == [0, 44]
    assert tile_starts(256, 256, 128) == [0]
    assert tile_starts(512, 256, 128) == [0, 128, 256]
    assert tile_starts(100, 256, 256) == [0]  # shorter than a tile: one window, clipped


def test_levir_scene_gives_16_tiles():
    index = TileIndex([(1024, 1024)], tile=256)
    assert len(index) == 16
    assert index.windows_of(0)[:2] == [(0, 0, 256, 256), (0, 256, 256, 256)]
    assert index.locate(15) == (0, (768, 768, 256, 256))


def test_index_numbers_tiles_scene_by_scene():
    index = TileIndex([(64, 64), (32, 96), (10, 10)], tile=32, stride=(32, 32))
    assert len(index) == 4 + 3 + 1
    assert index.too_small() == [2]
    assert index.locate(4) == (1, (0, 0, 32, 32))
    assert index.locate(6) == (1, (0, 64, 32, 32))
    assert index.locate(7) == (2, (0, 0, 10, 10))  # one window, clipped to the scene
    with pytest.raises(IndexError):
        index.locate(8)


def test_windows():
    rng = np.random.default_rng(0)
    for _ in range(20):
        top, left, h, w = random_window(10, 12, (4, 5), rng)
        assert 0 <= top <= 6 and 0 <= left <= 7 and (h, w) == (4, 5)
    assert center_window(10, 12, (4, 4)) == (3, 4, 4, 4)


def test_sizes():
    assert as_size(8, "crop_size") == (8, 8)
    assert as_size((8, 16), "crop_size") == (8, 16)
    with pytest.raises(DatasetError, match="crop_size must be positive"):
        as_size(0, "crop_size")
    with pytest.raises(DatasetError, match="tile_size must be an int"):
        as_size("big", "tile_size")


def test_prediction_windows_cover_the_scene_and_end_flush():
    assert window_starts(100, 64, 32) == [0, 32, 36]
    assert window_starts(64, 64, 32) == [0]
    assert window_starts(40, 64, 32) == [0]
    assert window_starts(1000, 256, 192) == [0, 192, 384, 576, 744]
    assert list(windows(40, 100, tile=64, overlap=32)) == [
        (0, 0, 40, 64),
        (0, 32, 40, 64),
        (0, 36, 40, 64),
    ]


def test_one_rule_for_tiles_and_prediction_windows():
    """Tiles of the dataset and prediction windows are the same windows, small scenes too."""
    for height, width in [(100, 130), (64, 64), (40, 200), (10, 10), (257, 513)]:
        for tile, overlap in [(64, 0), (64, 16), (32, 8)]:
            index = TileIndex([(height, width)], tile=tile, stride=tile - overlap)
            assert index.windows_of(0) == list(windows(height, width, tile, overlap))
