"""Splits of a dataset folder: split folders, and OSCD and AirChange with their own split."""

import os

import pytest

from siamese_cd.cli import main
from siamese_cd.data.layouts.airchange import TEST_REGION, airchange_scenes
from siamese_cd.data.layouts.oscd import oscd_source
from siamese_cd.data.layouts.scene_layouts import hold_out, split_scenes
from siamese_cd.data.layouts.splits import VAL_SCENES, open_split, training_splits
from siamese_cd.data.pipeline.cache import fingerprint
from siamese_cd.data.sampling.windows import patches_per_scene
from siamese_cd.errors import DatasetError
from tests.fake_datasets import SIZE_10M, write_airchange, write_oscd
from tests.fakes import make_split


@pytest.fixture(scope="module")
def airchange(tmp_path_factory):
    # Full-size scenes: the test split cuts 784 x 448 from each.
    return write_airchange(tmp_path_factory.mktemp("air"), scenes=(("Szada", 3), ("Tiszadob", 4)))


@pytest.fixture(scope="module")
def oscd(tmp_path_factory):
    pytest.importorskip("rasterio")
    return write_oscd(tmp_path_factory.mktemp("oscd"), train=["a", "b", "c", "d", "e"], test=["f"])


def test_hold_out_keeps_at_least_one_scene_on_each_side():
    assert hold_out(["a", "b", "c"], 2) == (["a", "b"], ["c"])  # at most half
    assert hold_out(["a", "b", "c", "d", "e"], 2) == (["a", "b", "c"], ["d", "e"])
    with pytest.raises(DatasetError, match="too few"):
        hold_out(["a"], 2)


def test_airchange_reads_a_list_of_scenes_and_names_unknown_ones(airchange):
    assert airchange_scenes(airchange, ["Szada/2", "Tiszadob/1"]) == (
        ["Szada/2", "Tiszadob/1"],
        [None, None],
    )
    with pytest.raises(DatasetError, match=r"Szada/9.*Szada/1, Szada/2"):
        airchange_scenes(airchange, ["Szada/9"])


def test_airchange_trains_on_crops_validates_on_held_out_scenes_and_tests_the_crops(airchange):
    splits = training_splits(airchange, batch_size=8, multiple=16, seed=3, progress=False)
    train_scenes = ["Szada/2", "Szada/3", "Tiszadob/1", "Tiszadob/2", "Tiszadob/4"]
    assert split_scenes(airchange, "train") == train_scenes
    held = train_scenes[-VAL_SCENES:]
    assert [p.stem for p in splits.train.pairs] == train_scenes[:-VAL_SCENES]
    assert [p.stem for p in splits.val.pairs] == held
    assert [p.stem for p in splits.test.pairs] == ["Szada/1", "Tiszadob/3"]
    # The paper's 96 x 96 patches, as many per scene as a stride of 48 cuts from 640 x 952.
    per_scene = patches_per_scene([[640, 952]], 96)
    assert per_scene == 13 * 19
    assert splits.train.source.crop_size == (96, 96)
    assert splits.train.num_samples == 3 * per_scene
    (t1, t2), mask = splits.train[0]
    assert t1.shape == t2.shape == (8, 96, 96, 3) and mask.shape == (8, 96, 96, 1)
    # Whole scenes, one per batch; the test scenes cut to the top-left 784 x 448.
    assert splits.val.batch_size == splits.test.batch_size == 1
    assert splits.test.source.scene_size(0) == TEST_REGION[2:]
    assert "validating on held-out Tiszadob/2, Tiszadob/4" in splits.note


def test_oscd_without_test_labels_is_not_scored_and_says_so(oscd):
    splits = training_splits(oscd, batch_size=4, multiple=4, bands="rgb", progress=False)
    assert [p.stem for p in splits.train.pairs] == ["a", "b", "c"]
    assert [p.stem for p in splits.val.pairs] == ["d", "e"]
    assert splits.test is None and "not scored" in splits.note
    # The crop fits the smallest city and the network (a multiple of 4 here).
    side = min(SIZE_10M) // 4 * 4
    assert splits.train.source.crop_size == (side, side) and splits.train.channels == 3


def test_bands_by_name_are_only_for_oscd(airchange, tmp_path):
    with pytest.raises(DatasetError, match=r"only for OSCD.*AirChange"):
        training_splits(airchange, batch_size=4, bands="rgb", progress=False)
    with pytest.raises(DatasetError, match="only for OSCD"):
        open_split(tmp_path, "test", bands="all")


def test_split_folders_are_read_as_before(tmp_path):
    make_split(tmp_path / "train")
    with pytest.raises(DatasetError, match="no val/ folder"):
        training_splits(tmp_path, batch_size=4)
    make_split(tmp_path / "val")
    splits = training_splits(tmp_path, batch_size=4, crop_size=16, progress=False)
    assert splits.test is None and splits.note == ""
    assert splits.train.source.crop_size == (16, 16) and splits.val.batch_size == 4
    make_split(tmp_path / "test")
    assert open_split(tmp_path, "test", batch_size=4).batch_size == 4
    # The tuner scores on val only: it leaves the test split unread.
    assert training_splits(tmp_path, batch_size=4, with_test=False, progress=False).test is None


def test_the_cache_fingerprint_sees_a_band_rewritten_in_place(oscd):
    pairs = oscd_source(oscd, split="train", bands="rgb").pairs
    before = fingerprint(pairs, {})
    band = sorted(pairs[0].t1.iterdir())[0]
    stat = os.stat(band)
    os.utime(band, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, new time
    assert fingerprint(pairs, {}) != before


@pytest.mark.slow
def test_train_and_evaluate_take_an_oscd_download(tmp_path, capsys):
    pytest.importorskip("rasterio")
    data = write_oscd(tmp_path / "oscd", train=["a", "b", "c"], test=["d"], test_labels=True)
    model = tmp_path / "run" / "model.keras"
    common = ["--epochs", "1", "--depth", "2", "--filters", "2", "--batch-size", "2"]
    argv = ["train", str(data), *common, "--bands", "rgb", "--logdir", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "OSCD: training on 2 scenes" in out and "validating on held-out c" in out
    assert "Test split (1 pairs" in out
    # evaluate reads as many bands as the model takes (3: rgb) from the same download.
    assert main(["evaluate", str(model), str(data), "--json", str(tmp_path / "s.json")]) == 0
    assert "f1" in capsys.readouterr().out and (tmp_path / "s.json").is_file()


def test_evaluate_names_a_split_without_labels(oscd, tmp_path, capsys):
    from siamese_cd.models.siamese import SiameseChangeModel

    model = tmp_path / "m.keras"
    SiameseChangeModel(depth=2, filters=2, preprocessing="unit").save(model)
    assert main(["evaluate", str(model), str(oscd), "--split", "test"]) == 2
    assert "no labels to score against" in capsys.readouterr().err


def test_a_scene_smaller_than_the_network_takes_is_named():
    from siamese_cd.data.sampling.windows import patch_for

    with pytest.raises(DatasetError, match=r"smallest scene \(12 px\).*16 px"):
        patch_for([[12, 40], [64, 64]], 96, 16)


def test_evaluate_asks_for_bands_when_the_model_takes_neither_rgb_nor_all(oscd, tmp_path, capsys):
    from siamese_cd.models.siamese import SiameseChangeModel

    model = tmp_path / "m4.keras"
    SiameseChangeModel(depth=2, filters=2, in_channels=4, preprocessing="unit").save(model)
    assert main(["evaluate", str(model), str(oscd), "--split", "train"]) == 2
    assert "takes 4 bands: give --bands" in capsys.readouterr().err
