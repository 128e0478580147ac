import numpy as np
import pytest
from PIL import Image

from siamese_cd.data import dataset as dataset_module
from siamese_cd.data.augment import Augment
from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError, ImageReadError
from tests.conftest import make_split, write_sample


def index_of(t1_batch):
    """make_split encodes each sample's index in its t1 gray level: 10 + 5 * i."""
    return [int(round((float(img[0, 0, 0]) * 255 - 10) / 5)) for img in t1_batch]


def test_batches_are_float32_nhwc_with_binary_masks(split_dir):
    data = PairedImageDataset(split_dir, batch_size=4)
    assert len(data) == 2
    (t1, t2), mask = data[0]
    assert t1.shape == t2.shape == (4, 32, 32, 3)
    assert mask.shape == (4, 32, 32, 1)
    assert t1.dtype == t2.dtype == mask.dtype == np.float32
    assert 0.0 <= t1.min() and t2.max() <= 1.0
    assert set(np.unique(mask)) <= {0.0, 1.0}
    # The last batch holds the remainder.
    (t1, _), mask = data[1]
    assert t1.shape[0] == mask.shape[0] == 2
    with pytest.raises(IndexError):
        data[2]


def test_masks_align_with_the_change(split_dir):
    data = PairedImageDataset(split_dir, batch_size=6)
    (t1, t2), mask = data[0]
    changed = np.abs(t2 - t1).max(axis=-1, keepdims=True) > 0
    np.testing.assert_array_equal(changed, mask.astype(bool))


def test_without_shuffle_order_is_file_order(split_dir):
    data = PairedImageDataset(split_dir, batch_size=3)
    assert index_of(data[0][0][0]) + index_of(data[1][0][0]) == list(range(6))


def test_shuffle_is_a_new_permutation_each_epoch_and_seeded(tmp_path):
    split = make_split(tmp_path / "s", count=12)

    def epoch_orders(seed):
        data = PairedImageDataset(split, batch_size=4, shuffle=True, seed=seed)
        orders = []
        for _ in range(3):
            orders.append(sum((index_of(data[b][0][0]) for b in range(len(data))), []))
            data.on_epoch_end()
        return orders

    orders = epoch_orders(seed=1)
    for order in orders:
        assert sorted(order) == list(range(12))  # every sample exactly once
    assert orders[0] != orders[1] != orders[2]
    assert orders[0] != list(range(12))
    assert epoch_orders(seed=1) == orders
    assert epoch_orders(seed=2) != orders


def test_decodes_only_the_batch(split_dir, monkeypatch):
    calls = []
    original = dataset_module.read_image

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(dataset_module, "read_image", counting)
    data = PairedImageDataset(split_dir, batch_size=2)
    assert calls == []  # construction lists files and decodes nothing
    data[1]
    assert sorted(p.name for p in calls) == ["00002.png", "00002.png", "00003.png", "00003.png"]


def test_augment_moves_images_and_mask_together(tmp_path):
    size = 16
    t1 = np.zeros((size, size, 3), np.uint8)
    t1[2:6, 1:9] = 255  # an asymmetric block, so every flip and rotation shows
    label = t1[..., 0].copy()
    write_sample(tmp_path / "s", "a", t1, t1, label)
    data = PairedImageDataset(tmp_path / "s", batch_size=1, augment=True, seed=3)
    seen = set()
    for _ in range(12):
        (a1, a2), mask = data[0]
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(a1[..., :1], mask)  # same transform, still binary
        seen.add(mask.tobytes())
        data.on_epoch_end()
    assert len(seen) > 3


def test_augment_keeps_non_square_shapes():
    rng = np.random.default_rng(0)
    t = np.zeros((4, 6, 3), np.uint8)
    for _ in range(10):
        a, b, m = Augment()(t, t, np.zeros((4, 6), np.uint8), rng)
        assert a.shape == (4, 6, 3) and m.shape == (4, 6)


def test_size_mismatch_names_files_and_shapes(tmp_path):
    split = make_split(tmp_path / "s", count=2)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(split / "time2" / "00001.png")
    data = PairedImageDataset(split, batch_size=2)
    with pytest.raises(ImageReadError) as info:
        data[0]
    message = str(info.value)
    assert "00001" in message and "sizes differ" in message
    assert str(split / "time2" / "00001.png") in message
    assert "(16, 16, 3)" in message and "(32, 32, 3)" in message and "(32, 32)" in message


def test_images_of_different_sizes_in_one_batch(tmp_path):
    split = make_split(tmp_path / "s", count=1)
    write_sample(
        split, "big", *(np.zeros((48, 48, 3), np.uint8),) * 2, np.zeros((48, 48), np.uint8)
    )
    with pytest.raises(ImageReadError, match="differ in size"):
        PairedImageDataset(split, batch_size=2)[0]


def test_unlabelled_yields_inputs_only(split_dir):
    data = PairedImageDataset(t1_dir=split_dir / "time1", t2_dir=split_dir / "time2", batch_size=2)
    batch = data[0]
    assert len(batch) == 1
    t1, t2 = batch[0]
    assert t1.shape == (2, 32, 32, 3)
    with pytest.raises(DatasetError, match="needs labels"):
        data.change_fraction()


def test_change_fraction_counts_every_mask(split_dir):
    data = PairedImageDataset(split_dir)
    expected = 4 * 8 * 8 / (6 * 32 * 32)  # four samples carry an 8x8 change
    assert data.change_fraction(progress=False) == pytest.approx(expected)


def test_sample_is_unaugmented_float(split_dir):
    data = PairedImageDataset(split_dir, augment=True, seed=0)
    t1, t2, mask = data.sample(0)
    assert t1.shape == (32, 32, 3) and mask.shape == (32, 32, 1)
    assert index_of(t1[None]) == [0]


def test_bad_arguments(split_dir):
    with pytest.raises(DatasetError, match="batch_size"):
        PairedImageDataset(split_dir, batch_size=0)
    with pytest.raises(DatasetError, match="not both"):
        PairedImageDataset(split_dir, t1_dir=split_dir / "time1")
    with pytest.raises(DatasetError, match="give a split folder"):
        PairedImageDataset()


def test_workers_default_to_cores(split_dir):
    data = PairedImageDataset(split_dir)
    assert data.workers >= 1
    assert PairedImageDataset(split_dir, workers=3).workers == 3
