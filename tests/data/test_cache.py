import json
import os

import numpy as np
import pytest

from siamese_cd.data.pipeline.cache import DATA_NAME, INDEX_NAME, META_NAME
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError
from tests.fakes import count_decodes, make_split, write_sample


def test_cache_store_is_written_once_and_reads_back_the_same(tmp_path, monkeypatch):
    split = make_split(tmp_path / "train", count=5)
    cache_dir = tmp_path / "cache"
    cached = PairedImageDataset(split, batch_size=5, cache_dir=cache_dir, progress=False)
    (store,) = list(cache_dir.iterdir())
    assert store.name.startswith("train-")
    assert {p.name for p in store.iterdir()} == {DATA_NAME, INDEX_NAME, META_NAME}
    meta = json.loads((store / META_NAME).read_text())
    assert meta["count"] == 5 and meta["channels"] == 3 and meta["dtype"] == "|u1"
    # uint8 pixels: 2 images of 32x32x3 and a 32x32 mask per pair.
    assert (store / DATA_NAME).stat().st_size == 5 * (2 * 32 * 32 * 3 + 32 * 32)

    plain = PairedImageDataset(split, batch_size=5)
    for got, want in zip(cached[0], plain[0]):
        for a, b in zip(
            got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)
        ):
            np.testing.assert_array_equal(a, b)

    calls = count_decodes(monkeypatch)
    again = PairedImageDataset(split, batch_size=5, cache_dir=cache_dir, progress=False)
    again[0]
    again.change_fraction(progress=False)
    assert calls == []  # nothing decoded: read from the store
    assert again.change_fraction(progress=False) == plain.change_fraction(progress=False)


def test_a_changed_file_or_option_gives_a_new_store(tmp_path):
    split = make_split(tmp_path / "train", count=3)
    cache_dir = tmp_path / "cache"
    first = PairedImageDataset(split, cache_dir=cache_dir, progress=False)
    stale = first.cache.directory
    # Same size, new content and modification time: must not be served stale.
    label = split / "label" / "00000.png"
    write_sample(
        split, "00000", *[np.full((32, 32, 3), 99, np.uint8)] * 2, np.zeros((32, 32), np.uint8)
    )
    os.utime(label, ns=(1, 1))
    second = PairedImageDataset(split, cache_dir=cache_dir, progress=False)
    assert second.cache.directory != stale
    np.testing.assert_array_equal(second.sample(0)[0], 99)
    third = PairedImageDataset(split, cache_dir=cache_dir, label_threshold=200, progress=False)
    assert len({first.cache.directory, second.cache.directory, third.cache.directory}) == 3


def test_cache_with_tiles_and_crops(tmp_path):
    split = make_split(tmp_path / "s", count=2, size=64)
    cache_dir = tmp_path / "cache"
    tiled = PairedImageDataset(
        split, batch_size=8, tile_size=32, cache_dir=cache_dir, progress=False
    )
    plain = PairedImageDataset(split, batch_size=8, tile_size=32)
    assert tiled.num_samples == 8
    np.testing.assert_array_equal(tiled[0][0][0], plain[0][0][0])
    np.testing.assert_array_equal(tiled[0][1], plain[0][1])
    cropped = PairedImageDataset(
        split, batch_size=2, crop_size=24, cache_dir=cache_dir, seed=1, progress=False
    )
    (t1, t2), mask = cropped[0]
    assert t1.shape == (2, 24, 24, 3)
    changed = np.abs(t2 - t1).max(axis=-1, keepdims=True) > 0
    np.testing.assert_array_equal(changed, mask.astype(bool))


def test_unlabelled_cache(tmp_path):
    split = make_split(tmp_path / "s", count=2)
    data = PairedImageDataset(
        t1_dir=split / "time1", t2_dir=split / "time2", cache_dir=tmp_path / "c", progress=False
    )
    assert not data.cache.labelled and len(data[0]) == 1


def test_mixed_band_counts_cannot_be_cached(tmp_path):
    split = make_split(tmp_path / "s", count=2)
    gray = np.zeros((32, 32), np.uint8)
    write_sample(split, "00001", gray, gray, gray)
    with pytest.raises(DatasetError) as info:
        PairedImageDataset(split, grayscale="keep", cache_dir=tmp_path / "c", progress=False)
    message = str(info.value)
    assert message.startswith(f"{split / 'time1' / '00001.png'}: 1 band(s) of uint8")
    assert f"{split / 'time1' / '00000.png'} has 3" in message
    assert not any((tmp_path / "c").iterdir())  # no half-written store left behind
