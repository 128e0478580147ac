"""The OSCD reader on generated trees with the real dataset's names and quirks."""

from pathlib import Path

import numpy as np
import pytest

from siamese_cd.data.layouts.oscd import ALL_BANDS, IMAGES, band_files, band_names, oscd_source
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError, ImageReadError
from tests.fake_datasets import PREFIX, SIZE_10M, band_value, change_square, write_band, write_oscd

pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def oscd(tmp_path_factory) -> Path:
    return write_oscd(
        tmp_path_factory.mktemp("oscd"), train=["aguasclaras", "bercy"], test=["lyon"]
    )


def test_the_all_band_order_is_by_number_with_b8a_after_b08():
    assert ALL_BANDS[7:9] == ("B08", "B8A") and len(ALL_BANDS) == 13
    assert band_names("rgb") == ("B04", "B03", "B02")
    assert band_names(["b8a", "B01"]) == ("B8A", "B01")
    with pytest.raises(DatasetError, match="B13"):
        band_names(["B13"])


def test_long_product_prefixes_are_read_as_band_names(oscd):
    files = band_files(oscd / IMAGES / "bercy" / "imgs_1")
    assert sorted(files) == sorted(ALL_BANDS)
    assert files["B8A"].name == f"{PREFIX}_B8A.tif"


def test_every_band_lands_on_the_10m_grid_in_the_documented_order(oscd):
    source = oscd_source(oscd, "train", bands="all", progress=False)
    t1, t2, mask = source.read_pair(0)
    assert t1.shape == t2.shape == (*SIZE_10M, 13) and t1.dtype == np.uint16
    # Constant bands resample to themselves, away from the raster's edges.
    centre = (slice(12, 48), slice(12, 54))
    for k, band in enumerate(ALL_BANDS):
        assert np.all(t1[centre][..., k] == band_value(band, 1)), band
        if band != "B02":
            assert np.all(t2[centre][..., k] == band_value(band, 2)), band


def test_rgb_is_b04_b03_b02_and_date2_is_cut_to_date1s_grid(oscd):
    source = oscd_source(oscd, "train", bands="rgb", progress=False)
    t1, t2, _ = source.read_pair(1)
    assert t1.shape == t2.shape == (*SIZE_10M, 3)  # date 2 is 6 pixels larger on disk
    assert [int(v) for v in t1[30, 30]] == [band_value(b, 1) for b in ("B04", "B03", "B02")]
    # B02 of date 2 is brighter in the change square: aligned by the transform, not shifted.
    assert np.all(t2[12:24, 12:24, 2] == 5000) and t2[30, 30, 2] == band_value("B02", 2)


def test_10m_bands_are_read_as_stored(oscd):
    t1, _, _ = oscd_source(oscd, "train", bands=["B08"], progress=False).read_pair(0)
    assert np.all(t1 == band_value("B08", 1))  # edges too: no resampling on its own grid


def test_tif_labels_map_1_2_to_0_1_and_rgba_png_labels_read_too(tmp_path):
    for formats in (("tif",), ("png",)):
        root = write_oscd(tmp_path / formats[0], train=["a"], test=[], label_formats=formats)
        mask = oscd_source(root, "train", bands="rgb", progress=False).read_mask(0)
        assert np.array_equal(mask, change_square()), formats


def test_a_tif_label_with_other_values_is_an_error(tmp_path):
    root = write_oscd(tmp_path, train=["a"], test=[], label_formats=("tif",))
    label = root / "Onera Satellite Change Detection dataset - Train Labels/a/cm/a-cm.tif"
    write_band(label, np.zeros(SIZE_10M, np.uint8), 10)
    with pytest.raises(ImageReadError, match="a-cm.tif"):
        oscd_source(root, "train", bands="rgb", progress=False).read_mask(0)


def test_splits_come_from_the_one_line_lists(oscd):
    assert [p.stem for p in oscd_source(oscd, "train", progress=False).pairs] == [
        "aguasclaras",
        "bercy",
    ]
    test = oscd_source(oscd, "test", progress=False)
    assert [p.stem for p in test.pairs] == ["lyon"] and not test.labelled
    with pytest.raises(DatasetError, match="separate release"):
        oscd_source(oscd, "all", progress=False)
    assert [p.stem for p in oscd_source(oscd, ["bercy"], progress=False).pairs] == ["bercy"]


def test_test_labels_are_read_when_present_and_the_images_folder_works_as_root(tmp_path):
    root = write_oscd(tmp_path, train=["a"], test=["b"], test_labels=True)
    assert oscd_source(root, "test", progress=False).labelled
    assert oscd_source(root / IMAGES, "test", progress=False).labelled


def test_the_merged_tree_and_rect_folders(tmp_path):
    root = write_oscd(tmp_path / "m", train=["a"], test=[], merged=True, rect=True)
    assert (root / "a" / "imgs_1_rect" / "B01.tif").is_file()
    source = oscd_source(root, "train", bands="all", progress=False)
    assert source.pairs[0].t1.name == "imgs_1_rect"
    t1, _, mask = source.read_pair(0)
    assert t1.shape == (*SIZE_10M, 13) and np.array_equal(mask, change_square())


def test_paired_image_dataset_finds_oscd_and_needs_a_split(oscd):
    with pytest.raises(DatasetError, match="split="):
        PairedImageDataset(oscd, progress=False)
    data = PairedImageDataset(oscd, split="train", bands="rgb", tile_size=30, progress=False)
    (t1, t2), mask = data[0]
    assert data.num_samples == 2 * 2 * 3 and t1.shape[1:] == (30, 30, 3)
    assert t1.dtype == np.uint16 and data.channels == 3


def test_tf_dataset_and_cache_give_the_same_oscd_samples(oscd, tmp_path):
    plain = PairedImageDataset(oscd, split="train", bands="rgb", batch_size=2, progress=False)
    cached = PairedImageDataset(
        oscd, split="train", bands="rgb", batch_size=2, cache_dir=tmp_path, progress=False
    )
    (t1, _), mask = plain[0]
    (c1, _), cmask = cached[0]
    ((g1, _), gmask) = next(iter(plain.as_tf_dataset()))
    assert np.array_equal(t1, c1) and np.array_equal(t1, g1.numpy())
    assert np.array_equal(mask, cmask) and np.array_equal(mask, gmask.numpy())
