"""The AirChange reader and the scene-folder layout on generated trees."""

import numpy as np
import pytest
from PIL import Image

from siamese_cd.data.layouts.airchange import TEST_REGION, airchange_source, is_airchange
from siamese_cd.data.layouts.scene_layouts import scene_layout
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError, ImageReadError, PairingError
from tests.fake_datasets import airchange_mask, write_airchange


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_airchange(tmp_path_factory.mktemp("air"), size=(80, 119))


def test_the_standard_split_leaves_out_the_test_scenes_and_archieve(small):
    assert is_airchange(small) and scene_layout(small) == "AirChange"
    train = airchange_source(small, "train", progress=False)
    assert [p.stem for p in train.pairs] == ["Szada/2", "Szada/3", "Tiszadob/1", "Tiszadob/2"]
    every = airchange_source(small, "all", progress=False)
    assert "Archieve" not in [p.stem for p in every.pairs] and len(every.pairs) == 6


def test_mixed_extension_case_is_read(small):
    pair = airchange_source(small, "train", progress=False).pairs[0]
    assert {pair.t1.suffix, pair.t2.suffix} == {".bmp", ".BMP"}


def test_stray_grey_mask_values_are_change(small):
    source = airchange_source(small, "train", progress=False)
    mask = source.read_mask(0)
    expected = (airchange_mask(80, 119, 1) != 0).astype(np.uint8)  # Szada/2 is the 2nd written
    assert np.array_equal(mask, expected) and mask[1, 1] == 1 and mask[0, 0] == 1


def test_test_scenes_are_cut_to_the_top_left_784x448(tmp_path):
    assert TEST_REGION == (0, 0, 448, 784)
    root = write_airchange(tmp_path, size=(640, 952), scenes=(("Szada", 1), ("Tiszadob", 3)))
    test = airchange_source(root, "test", progress=False)
    assert [p.stem for p in test.pairs] == ["Szada/1", "Tiszadob/3"]
    t1, t2, mask = test.read_pair(1)
    assert t1.shape == (448, 784, 3) and mask.shape == (448, 784)
    full = np.asarray(Image.open(root / "Tiszadob" / "3" / "im2.BMP"))
    assert np.array_equal(t2, full[:448, :784])
    data = PairedImageDataset(root, split="test", batch_size=2, progress=False)
    (b1, _), bmask = data[0]
    assert b1.shape == (2, 448, 784, 3) and bmask.shape == (2, 448, 784, 1)


def test_a_missing_test_scene_or_a_scene_smaller_than_the_crop_is_an_error(small, tmp_path):
    root = write_airchange(tmp_path, size=(8, 8), scenes=(("Szada", 2), ("Tiszadob", 2)))
    with pytest.raises(DatasetError, match="Tiszadob/3"):
        airchange_source(root, "test", progress=False)
    with pytest.raises(ImageReadError, match="outside"):
        airchange_source(small, "test", progress=False).read_pair(0)


def test_scene_folders_with_configurable_names(tmp_path):
    for scene in ("a", "b"):
        (tmp_path / scene).mkdir()
        for stem, value in (("before", 1), ("after", 2), ("truth", 255)):
            Image.fromarray(np.full((16, 16), value, np.uint8)).save(
                tmp_path / scene / f"{stem}.png"
            )
    names = ("before", "after", "truth")
    assert scene_layout(tmp_path) is None and scene_layout(tmp_path, names) == "scene folders"
    data = PairedImageDataset(tmp_path, scene_files=names, batch_size=2, progress=False)
    (t1, t2), mask = data[0]
    assert [p.stem for p in data.pairs] == ["a", "b"] and int(t2.max()) == 2
    assert float(mask.min()) == 1.0
    (tmp_path / "b" / "after.png").unlink()
    with pytest.raises((PairingError, DatasetError)):
        PairedImageDataset(tmp_path, scene_files=names, progress=False)
