"""`as_tf_dataset` gives the same batches as the PyDataset path."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.data.sampling.augment import Augment
from tests.fakes import make_split, write_geotiff, write_sample


def flatten(batch):
    if len(batch) == 1:
        return [np.asarray(a) for a in batch[0]]
    (t1, t2), mask = batch
    return [np.asarray(t1), np.asarray(t2), np.asarray(mask)]


def assert_same_batches(data, atol=0.0):
    """Equal batches (images within `atol`, masks exactly); images in the dataset's pixel
    type, masks float32."""
    tf_batches = list(data.as_tf_dataset())
    assert len(tf_batches) == len(data)
    for index, tf_batch in enumerate(tf_batches):
        arrays = zip(flatten(tf_batch), flatten(data[index]))
        for k, (got, want) in enumerate(arrays):
            dtype = np.float32 if k == 2 else data.pixel_dtype
            assert got.dtype == want.dtype == dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=atol if k < 2 else 0)


def test_same_batches_as_the_pydataset(tmp_path):
    split = make_split(tmp_path / "s", count=7)
    assert_same_batches(PairedImageDataset(split, batch_size=3))


def test_same_tiles(tmp_path):
    split = make_split(tmp_path / "s", count=3, size=(40, 72))
    assert_same_batches(PairedImageDataset(split, batch_size=5, tile_size=32, tile_stride=(8, 20)))


def test_same_unlabelled_inputs_only(tmp_path):
    split = make_split(tmp_path / "s", count=3)
    data = PairedImageDataset(t1_dir=split / "time1", t2_dir=split / "time2", batch_size=2)
    element = next(iter(data.as_tf_dataset()))
    assert len(element) == 1
    assert_same_batches(data)


def test_same_raw_pixels_as_stored(split_dir):
    data = PairedImageDataset(split_dir, batch_size=4)
    assert_same_batches(data)
    (t1, t2), _ = next(iter(data.as_tf_dataset()))
    assert t1.dtype == tf.uint8
    np.testing.assert_array_equal(t1.numpy()[0], data.read_pair(0)[0])


def test_same_pixels_for_gray_rgba_palette_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    label = np.zeros((16, 16), np.uint8)
    label[:4] = 1  # a 0/1 label
    gray = rng.integers(0, 255, (16, 16), dtype=np.uint8)
    write_sample(tmp_path / "gray", "a", gray, gray, label)
    assert_same_batches(PairedImageDataset(tmp_path / "gray"))
    assert_same_batches(PairedImageDataset(tmp_path / "gray", grayscale="keep"))

    rgba = rng.integers(0, 255, (16, 16, 4), dtype=np.uint8)
    write_sample(tmp_path / "rgba", "a", rgba, rgba, label * 255)
    with pytest.warns(UserWarning, match="alpha"):
        data = PairedImageDataset(tmp_path / "rgba")
        assert_same_batches(data)

    palette = Image.fromarray(gray).convert("P")
    for folder in ("time1", "time2"):
        (tmp_path / "pal" / folder).mkdir(parents=True)
        palette.save(tmp_path / "pal" / folder / "a.png")
    (tmp_path / "pal" / "label").mkdir()
    Image.fromarray(label).save(tmp_path / "pal" / "label" / "a.png")
    assert_same_batches(PairedImageDataset(tmp_path / "pal"))

    wide = rng.integers(0, 65535, (16, 16), dtype=np.uint16)
    write_sample(tmp_path / "wide", "a", wide, wide, label)
    assert_same_batches(PairedImageDataset(tmp_path / "wide", grayscale="keep"))


def test_jpeg_images_and_labels(tmp_path):
    split = tmp_path / "s"
    rng = np.random.default_rng(1)
    for folder in ("time1", "time2", "label"):
        (split / folder).mkdir(parents=True)
    for stem in ("a", "b"):
        image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(image).save(split / "time1" / f"{stem}.jpg", quality=90)
        Image.fromarray(image[::-1]).save(split / "time2" / f"{stem}.jpg", quality=90)
        label = np.zeros((16, 16), np.uint8)
        label[4:12, 4:12] = 255
        Image.fromarray(label).save(split / "label" / f"{stem}.jpg", quality=60)
    assert_same_batches(PairedImageDataset(split, batch_size=2), atol=2)  # 8-bit levels


def test_tiff_through_the_numpy_readers(tmp_path):
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        for folder in ("time1", "time2"):
            image = rng.integers(0, 5000, (12, 12, 4), dtype=np.uint16)
            write_geotiff(tmp_path / "s" / folder / f"{stem}.tif", image)
        write_geotiff(tmp_path / "s" / "label" / f"{stem}.tif", np.full((12, 12, 1), 255, np.uint8))
    assert_same_batches(PairedImageDataset(tmp_path / "s", batch_size=2, bands=(3, 2, 1)))
    # PNG images with TIFF labels, paired by stem.
    split = make_split(tmp_path / "mixed", count=2)
    for path in (split / "label").iterdir():
        write_geotiff(path.with_suffix(".tif"), np.asarray(Image.open(path))[..., None])
        path.unlink()
    assert_same_batches(PairedImageDataset(split, batch_size=2))


def test_same_from_the_cache(tmp_path):
    split = make_split(tmp_path / "s", count=5, size=48)
    cache = tmp_path / "c"
    tiled = PairedImageDataset(split, batch_size=4, tile_size=32, cache_dir=cache, progress=False)
    assert_same_batches(tiled)
    whole = PairedImageDataset(split, batch_size=2, cache_dir=cache, progress=False)
    assert_same_batches(whole)  # whole scenes: read a batch at a time
    uncached = PairedImageDataset(split, batch_size=2)
    for got, want in zip(flatten(whole[2]), flatten(uncached[2])):
        np.testing.assert_array_equal(got, want)
    unlabelled = PairedImageDataset(
        t1_dir=split / "time1",
        t2_dir=split / "time2",
        batch_size=2,
        cache_dir=cache,
        progress=False,
    )
    assert_same_batches(unlabelled)


def test_cached_crops_and_augmentation(tmp_path):
    split = make_split(tmp_path / "s", count=3, size=48)
    data = PairedImageDataset(
        split, batch_size=3, crop_size=24, augment=True, cache_dir=tmp_path / "c", progress=False
    )
    ((t1, t2), mask) = next(iter(data.as_tf_dataset()))
    assert t1.shape == (3, 24, 24, 3) and mask.shape == (3, 24, 24, 1)
    changed = np.abs(t2.numpy() - t1.numpy()).max(axis=-1, keepdims=True) > 0
    np.testing.assert_array_equal(changed, mask.numpy().astype(bool))


def test_shuffle_reshuffles_every_epoch(tmp_path):
    split = make_split(tmp_path / "s", count=12)
    ds = PairedImageDataset(split, batch_size=5, shuffle=True, seed=0).as_tf_dataset()

    def epoch():
        levels = np.concatenate([t1.numpy()[:, 0, 0, 0] for (t1, _), _ in ds])
        return [(int(v) - 10) // 5 for v in levels]

    first, second = epoch(), epoch()
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second


def test_crops_and_augmentation(tmp_path):
    split = make_split(tmp_path / "s", count=4, size=48)
    data = PairedImageDataset(
        split, batch_size=4, crop_size=24, augment=Augment(brightness=0.1, swap=0.5), seed=5
    )
    first = [flatten(b) for b in data.as_tf_dataset(deterministic=True)]
    ((t1, t2, mask),) = first
    assert t1.shape == (4, 24, 24, 3) and mask.shape == (4, 24, 24, 1)
    # Raw units: float32 within the 8-bit range, not squeezed into [0, 1].
    assert set(np.unique(mask)) <= {0.0, 1.0} and 0 <= t1.min() and 1 < t1.max() <= 255
    again = [
        flatten(b)
        for b in PairedImageDataset(
            split, batch_size=4, crop_size=24, augment=Augment(brightness=0.1, swap=0.5), seed=5
        ).as_tf_dataset(deterministic=True)
    ]
    np.testing.assert_array_equal(again[0][0], t1)  # seeded


def test_crops_without_augmentation_stay_aligned(tmp_path):
    split = make_split(tmp_path / "s", count=4, size=48)
    for (t1, t2), mask in PairedImageDataset(
        split, batch_size=4, crop_size=16, seed=2
    ).as_tf_dataset():
        changed = np.abs(t2.numpy() - t1.numpy()).max(axis=-1, keepdims=True) > 0
        np.testing.assert_array_equal(changed, mask.numpy().astype(bool))


def test_size_mismatch_names_the_files(tmp_path):
    split = make_split(tmp_path / "s", count=2)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(split / "time2" / "00001.png")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"sizes differ.*time2/00001\.png"):
        list(PairedImageDataset(split, batch_size=1).as_tf_dataset())
