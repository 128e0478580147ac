import numpy as np
import pytest
from PIL import Image

from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.data.sampling.augment import Augment
from siamese_cd.errors import DatasetError, ImageReadError
from tests.fakes import count_decodes, make_split, write_geotiff, write_sample


def index_of(t1_batch):
    """make_split encodes each sample's index in its t1 gray level: 10 + 5 * i."""
    scale = 255 if np.issubdtype(np.asarray(t1_batch).dtype, np.floating) else 1
    return [int(round((float(img[0, 0, 0]) * scale - 10) / 5)) for img in t1_batch]


def test_batches_are_nhwc_pixels_as_stored_with_float_binary_masks(split_dir):
    data = PairedImageDataset(split_dir, batch_size=4)
    assert len(data) == 2
    assert data.pixel_dtype == np.uint8
    (t1, t2), mask = data[0]
    assert t1.shape == t2.shape == (4, 32, 32, 3)
    assert mask.shape == (4, 32, 32, 1)
    assert t1.dtype == t2.dtype == np.uint8 and mask.dtype == np.float32
    assert index_of(t1) == [0, 1, 2, 3] and t2.max() == 250
    assert set(np.unique(mask)) <= {0.0, 1.0}
    # The pixels are the files' own, unscaled.
    for k in range(4):
        a, b, m = data.read_pair(k)
        np.testing.assert_array_equal(t1[k], a)
        np.testing.assert_array_equal(t2[k], b)
        np.testing.assert_array_equal(mask[k, ..., 0], m)
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
    calls = count_decodes(monkeypatch)
    data = PairedImageDataset(split_dir, batch_size=2)
    assert calls == []  # construction lists files and decodes nothing
    data[1]
    # The first batch also reads sample 0 once, for the bands and pixel type.
    assert {p.name for p in calls} == {"00000.png", "00002.png", "00003.png"}
    calls.clear()
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
        np.testing.assert_array_equal(a1[..., :1] // 255, mask)  # same transform, binary
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


def test_sample_is_unaugmented_and_raw(split_dir):
    data = PairedImageDataset(split_dir, augment=True, seed=0)
    t1, t2, mask = data.sample(0)
    assert t1.shape == (32, 32, 3) and mask.shape == (32, 32, 1)
    assert t1.dtype == np.uint8 and mask.dtype == np.float32
    assert index_of(t1[None]) == [0]
    np.testing.assert_array_equal(t1, data.read_pair(0)[0])


def test_bad_arguments(split_dir):
    with pytest.raises(DatasetError, match="batch_size"):
        PairedImageDataset(split_dir, batch_size=0)
    with pytest.raises(DatasetError, match="not both"):
        PairedImageDataset(split_dir, t1_dir=split_dir / "time1")
    with pytest.raises(DatasetError, match="give a split folder"):
        PairedImageDataset()
    with pytest.raises(DatasetError, match="label_threshold must be at least 1"):
        PairedImageDataset(split_dir, label_threshold=0)
    with pytest.raises(DatasetError, match="tile_stride needs tile_size"):
        PairedImageDataset(split_dir, tile_stride=8)
    with pytest.raises(DatasetError, match="augment must be"):
        PairedImageDataset(split_dir, augment="flips")


def test_workers_default_to_cores(split_dir):
    data = PairedImageDataset(split_dir)
    assert data.workers >= 1
    assert PairedImageDataset(split_dir, workers=3).workers == 3


# -- layouts, pixels, channels -------------------------------------------------------------------


def test_levir_layout_and_csv_give_the_same_batches(tmp_path):
    split = make_split(tmp_path / "levir", count=4, folders=("A", "B", "label"))
    rows = ["t1,t2,label"] + [f"A/{i:05d}.png,B/{i:05d}.png,label/{i:05d}.png" for i in range(4)]
    (split / "all.csv").write_text("\n".join(rows) + "\n")
    by_folder = PairedImageDataset(split, batch_size=4)[0]
    by_csv = PairedImageDataset(split / "all.csv", batch_size=4)[0]
    np.testing.assert_array_equal(by_folder[0][0], by_csv[0][0])
    np.testing.assert_array_equal(by_folder[1], by_csv[1])


def test_channels_follow_bands_and_grayscale(tmp_path):
    split = tmp_path / "s"
    gray = np.full((16, 16), 100, np.uint8)
    write_sample(split, "a", gray, gray, np.zeros((16, 16), np.uint8))
    assert PairedImageDataset(split).channels == 3
    kept = PairedImageDataset(split, grayscale="keep")
    assert kept.channels == 1 and kept[0][0][0].shape == (1, 16, 16, 1)
    rgb = make_split(tmp_path / "rgb", count=2)
    picked = PairedImageDataset(rgb, bands=(3, 1))
    assert picked.channels == 2 and picked[0][0][0].shape == (2, 32, 32, 2)
    with pytest.raises(DatasetError, match="grayscale must be one of"):
        PairedImageDataset(split, grayscale="gray")


def test_16_bit_images_stay_raw_and_jitter_in_raw_units(tmp_path):
    split = tmp_path / "s"
    image = np.full((8, 8), 1500, np.uint16)
    write_sample(split, "a", image, image, np.zeros((8, 8), np.uint8))
    data = PairedImageDataset(split, grayscale="keep")
    (t1, _), _ = data[0]
    assert data.pixel_dtype == np.uint16
    assert t1.dtype == np.uint16 and (t1 == 1500).all()
    assert data.sample(0)[0].dtype == np.uint16 and (data.sample(0)[0] == 1500).all()
    # Brightness of up to 1% of the 16-bit range: float32 around 1500, not [0, 1].
    bright = PairedImageDataset(split, grayscale="keep", augment=Augment(brightness=0.01))
    assert bright.pixel_dtype == np.float32
    (t1, _), _ = bright[0]
    assert t1.dtype == np.float32
    assert np.abs(t1 - 1500).max() <= 0.01 * 65535 + 1e-2
    assert len(np.unique(t1)) == 1  # one offset per date


def test_multiband_geotiff_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for role in ("time1", "time2"):
        for stem in ("a", "b"):
            write_geotiff(
                tmp_path / "s" / role / f"{stem}.tif",
                rng.integers(0, 9000, (8, 8, 4), dtype=np.uint16),
            )
    labels = tmp_path / "s" / "label"
    labels.mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(labels / f"{stem}.png")
    data = PairedImageDataset(tmp_path / "s", batch_size=2, bands=(4, 3, 2))
    (t1, _), mask = data[0]
    assert data.channels == 3 and t1.shape == (2, 8, 8, 3) and mask.shape == (2, 8, 8, 1)
    assert t1.dtype == np.uint16 and t1.max() < 9000


def test_float_pixels_pass_as_stored_and_refuse_radiometric_augmentation(tmp_path):
    for role in ("time1", "time2"):
        write_geotiff(tmp_path / "s" / role / "a.tif", np.full((4, 4, 2), 1500.25, np.float32))
    write_geotiff(tmp_path / "s" / "label" / "a.tif", np.zeros((4, 4, 1), np.uint8))
    data = PairedImageDataset(tmp_path / "s")
    (t1, t2), _ = data[0]
    assert data.pixel_dtype == np.float32 and t1.dtype == np.float32
    np.testing.assert_array_equal(t1, 1500.25)
    with pytest.raises(ImageReadError, match=r"a\.tif: float32 pixels have no fixed maximum"):
        PairedImageDataset(tmp_path / "s", augment=Augment(brightness=0.1))


def test_removed_scaling_options_are_refused(split_dir):
    """Pixels are scaled in the model only; the loader has no scaling options any more."""
    for option in ({"normalization": "standardize"}, {"mean": [1, 2, 3]}, {"float_batches": True}):
        with pytest.raises(TypeError, match="unexpected keyword"):
            PairedImageDataset(split_dir, **option)
    data = PairedImageDataset(split_dir)
    for name in ("raw_pixels", "compute_stats", "set_stats", "mean", "std"):
        assert not hasattr(data, name)


# -- crops and tiles -----------------------------------------------------------------------------


def test_random_crops_are_aligned_and_change_per_epoch(tmp_path):
    split = make_split(tmp_path / "s", count=2, size=(40, 48))
    data = PairedImageDataset(split, batch_size=2, crop_size=16, seed=0)
    seen = set()
    for _ in range(5):
        (t1, t2), mask = data[0]
        assert t1.shape == (2, 16, 16, 3) and mask.shape == (2, 16, 16, 1)
        changed = np.abs(t2 - t1).max(axis=-1, keepdims=True) > 0
        np.testing.assert_array_equal(changed, mask.astype(bool))
        seen.add(t2.tobytes())
        data.on_epoch_end()
    assert len(seen) > 1
    again = PairedImageDataset(split, batch_size=2, crop_size=16, seed=0)
    np.testing.assert_array_equal(
        again[0][0][1], PairedImageDataset(split, batch_size=2, crop_size=16, seed=0)[0][0][1]
    )
    assert data.sample(0)[0].shape == (16, 16, 3)  # the central crop


def test_crop_larger_than_scene_names_the_file(split_dir):
    data = PairedImageDataset(split_dir, crop_size=64)
    with pytest.raises(ImageReadError) as info:
        data[0]
    assert str(split_dir / "time1" / "00000.png") in str(info.value)
    assert "smaller than crop_size (64, 64)" in str(info.value)
    with pytest.raises(DatasetError, match="not both"):
        PairedImageDataset(split_dir, crop_size=16, tile_size=16)


def test_large_scene_in_tiles(tmp_path):
    # A LEVIR-CD-like scene, scaled down: 128 px in tiles of 32 gives 16 samples.
    split = make_split(tmp_path / "levir", count=2, size=128, folders=("A", "B", "label"))
    data = PairedImageDataset(split, batch_size=5, tile_size=32)
    assert len(data.pairs) == 2 and data.num_samples == 32 and len(data) == 7
    t1, t2, mask = data.read_pair(0)
    (b1, _), bmask = data[0]
    assert b1.shape == (5, 32, 32, 3)
    # Tile 5 of scene 0 is row 1, column 1.
    np.testing.assert_array_equal(data.sample(5)[2][..., 0], mask[32:64, 32:64])
    np.testing.assert_array_equal(bmask[4, ..., 0], mask[32:64, 0:32])
    # Tiles of scene 1 start at sample 16.
    np.testing.assert_array_equal(
        data.sample(16)[0], PairedImageDataset(split).sample(1)[0][:32, :32]
    )
    whole = PairedImageDataset(split).change_fraction(progress=False)
    assert data.change_fraction(progress=False) == pytest.approx(whole)


def test_overlapping_tiles_and_change_fraction(tmp_path):
    split = make_split(tmp_path / "s", count=1, size=40)
    data = PairedImageDataset(split, batch_size=4, tile_size=32, tile_stride=8)
    assert data.num_samples == 4  # starts 0 and 8 on both axes
    masks = np.concatenate([data[b][1] for b in range(len(data))])
    assert data.change_fraction(progress=False) == pytest.approx(masks.mean())


def test_scene_smaller_than_tile_names_it(split_dir):
    with pytest.raises(DatasetError) as info:
        PairedImageDataset(split_dir, tile_size=64)
    assert "6 scene(s) smaller than tile_size (64, 64)" in str(info.value)
    assert str(split_dir / "time1" / "00000.png") in str(info.value)


# -- augmentation --------------------------------------------------------------------------------


def test_full_augment_keeps_batches_valid_and_seeded(tmp_path):
    split = make_split(tmp_path / "s", count=4)
    augment = Augment(
        scale=(0.7, 1.0), brightness=0.1, contrast=0.1, gamma=0.1, noise=0.01, swap=0.5
    )

    def batch(seed):
        return PairedImageDataset(split, batch_size=4, augment=augment, seed=seed)[0]

    (t1, t2), mask = batch(3)
    # Raw units: float32 within the 8-bit range, not squeezed into [0, 1].
    assert t1.dtype == np.float32 and 0 <= t1.min() and t1.max() <= 255 and t1.max() > 1
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(batch(3)[0][0], t1)
    assert not np.array_equal(batch(4)[0][0], t1)


def test_hue_needs_rgb(tmp_path):
    split = tmp_path / "s"
    gray = np.zeros((8, 8), np.uint8)
    write_sample(split, "a", gray, gray, gray)
    with pytest.raises(DatasetError, match="hue/saturation need 3-band images, these have 1"):
        PairedImageDataset(split, grayscale="keep", augment=Augment(hue=0.1))


def test_augment_is_off_by_default_and_sample_never_augments(split_dir):
    plain = PairedImageDataset(split_dir, batch_size=6)
    assert plain.augment is None
    augmented = PairedImageDataset(split_dir, batch_size=6, augment=True, seed=0)
    np.testing.assert_array_equal(augmented.sample(1)[0], plain.sample(1)[0])


# -- fit path ------------------------------------------------------------------------------------


def test_keras_reads_every_batch_through_its_worker_threads(tmp_path):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    split = make_split(tmp_path / "s", count=10)
    data = PairedImageDataset(split, batch_size=3, shuffle=True, seed=0, workers=2)
    adapter = PyDatasetAdapter(data, shuffle=True)
    assert adapter.enqueuer is not None  # parallel batches
    for _ in range(2):
        adapter.on_epoch_begin()
        seen = []
        for (t1, _), mask in adapter.get_tf_dataset():
            seen += index_of(t1.numpy())
            assert mask.shape[1:] == (32, 32, 1)
        adapter.on_epoch_end()
        assert sorted(seen) == list(range(10))


def test_batch_arrays_are_reused_only_when_nothing_holds_them(split_dir):
    data = PairedImageDataset(split_dir, batch_size=3)
    (held, _), _ = data[0]
    expected = held.copy()
    view = data[0][0][1][:1]  # a slice keeps the memory of batch 0's t2 alive
    kept_t2 = view.copy()
    for _ in range(3):
        data[1]  # results dropped at once: their arrays may be recycled
    np.testing.assert_array_equal(held, expected)
    np.testing.assert_array_equal(view, kept_t2)
    first = data[1][0][0].ctypes.data
    assert data[1][0][0].ctypes.data == first  # recycled once released


def test_mixed_bit_depths_name_the_file(tmp_path):
    split = tmp_path / "s"
    label = np.zeros((8, 8), np.uint8)
    write_sample(split, "a", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), label)
    wide = np.zeros((8, 8), np.uint16)
    write_sample(split, "b", wide, wide, label)
    data = PairedImageDataset(split, batch_size=2, grayscale="keep")
    with pytest.raises(ImageReadError) as info:
        data[0]
    message = str(info.value)
    assert "b.png: uint16 pixels" in message and "uint8" in message and "one bit depth" in message
    # One file at a time, or jittered into float32 batches, a mixed split is refused too.
    data = PairedImageDataset(split, batch_size=1, grayscale="keep")
    with pytest.raises(ImageReadError, match=r"b\.png: uint16 pixels"):
        data[1]
    jittered = PairedImageDataset(
        split, batch_size=2, grayscale="keep", augment=Augment(brightness=0.1)
    )
    with pytest.raises(ImageReadError, match=r"b\.png: uint16 pixels"):
        jittered[0]


def test_direct_decoding_equals_the_general_path(tmp_path):
    """Batches decoded straight into their arrays equal decoded-then-copied ones."""
    rng = np.random.default_rng(0)
    split = tmp_path / "s"
    for stem in "abcde":
        t1, t2 = (rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2))
        write_sample(split, stem, t1, t2, rng.integers(0, 2, (8, 8), dtype=np.uint8) * 255)
    data = PairedImageDataset(split, batch_size=5)
    (t1, t2), mask = data[0]
    assert data._whole_raw_scenes()
    for k in range(5):
        a, b, m = data.read_pair(k)
        np.testing.assert_array_equal(t1[k], a)
        np.testing.assert_array_equal(t2[k], b)
        np.testing.assert_array_equal(mask[k, ..., 0], m)


def test_direct_path_still_reports_sizes_that_differ(tmp_path):
    split = make_split(tmp_path / "s", count=3)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(split / "time2" / "00002.png")
    data = PairedImageDataset(split, batch_size=3)
    with pytest.raises(ImageReadError, match=r"00002.*sizes differ|sizes differ.*00002"):
        data[0]
