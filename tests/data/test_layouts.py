"""The layout registry and the benchmark readers, on trees with the published names.

Each benchmark test writes a small tree (`tests.fake_benchmarks`) with the folder and file
names its registry class documents, and reads it the ways a user does: `PairedImageDataset`
with ``split=``, `training_splits` (what ``siamese-cd train`` runs) and ``siamese-cd check``.
"""

import subprocess
import sys

import numpy as np
import pytest

from siamese_cd.data.check import check_dataset
from siamese_cd.data.layouts import registry
from siamese_cd.data.layouts.registry import (
    FolderLayout,
    dataset_layout,
    describe_layouts,
    detect_layout,
    folder_layout,
    layouts,
    register,
)
from siamese_cd.data.layouts.splits import open_split, training_splits
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError, PairingError
from tests.fake_benchmarks import (
    change_square,
    write_cdd,
    write_folder_split,
    write_levir_cd,
    write_levir_cd_plus,
    write_s2looking,
    write_second,
    write_whu_cd,
)

# -- the registry ----------------------------------------------------------------------------


def test_every_catalog_module_registers_one_named_layout():
    import importlib
    import pkgutil

    catalog = importlib.import_module(registry.CATALOG)
    modules = [info.name for info in pkgutil.iter_modules(catalog.__path__, registry.CATALOG + ".")]
    found = layouts()
    assert sorted(layout.__module__ for layout in found) == sorted(modules)
    assert len({layout.name for layout in found}) == len(found)
    # Detection order: the scene downloads first, scene folders (the loosest) last.
    names = [layout.name for layout in found]
    assert names[:3] == ["OSCD", "AirChange", "WHU-CD release"] and names[-1] == "scene folders"


def test_split_folder_layouts_keep_their_names_and_order():
    assert describe_layouts() == (
        "SYSU-CD time1/time2/label; LEVIR-CD or WHU-CD A/B/label; WHU-CD prev/curr/label; "
        "CDD A/B/OUT; S2Looking Image1/Image2/label; SECOND im1/im2/label1"
    )


def test_a_new_layout_is_one_registered_class(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", list(registry._REGISTERED))

    @register
    class ToyCD(FolderLayout):
        name = "Toy-CD"
        folders = ("pre", "post", "mask")
        splits = ("train", "test")

    for split in ("train", "test"):
        write_folder_split(tmp_path / split, ["a", "b"], ("pre", "post", "mask"))
    assert folder_layout(tmp_path / "train") is ToyCD and dataset_layout(tmp_path) is ToyCD
    assert "Toy-CD pre/post/mask" in describe_layouts()
    data = PairedImageDataset(tmp_path, split="test", batch_size=2, progress=False)
    assert [p.stem for p in data.pairs] == ["a", "b"]
    with pytest.raises(TypeError, match="two layouts are named 'Toy-CD'"):
        register(type("Other", (FolderLayout,), {"name": "Toy-CD", "folders": ("x", "y", "z")}))
    with pytest.raises(TypeError, match="needs a name"):
        register(type("Nameless", (FolderLayout,), {"folders": ("x", "y", "z")}))


def test_importing_the_data_packages_and_the_registry_needs_no_keras():
    code = (
        "import sys, siamese_cd.data, siamese_cd.data.layouts as l, siamese_cd.data.readers, "
        "siamese_cd.data.sampling, siamese_cd.data.pipeline, siamese_cd.data.synthetic\n"
        "assert l.layouts() and l.pair_by_stem and siamese_cd.data.readers.read_image\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_split_of_a_folder_without_splits_is_refused(tmp_path):
    write_folder_split(tmp_path, ["a"], ("time1", "time2", "label"))
    with pytest.raises(DatasetError, match=r"split= picks a split of a download.*LEVIR-CD"):
        PairedImageDataset(tmp_path, split="train", progress=False)


# -- LEVIR-CD and LEVIR-CD+ ------------------------------------------------------------------


def test_levir_cd_reads_its_three_splits(tmp_path):
    root = write_levir_cd(tmp_path / "LEVIR-CD")
    assert dataset_layout(root).name == "LEVIR-CD"
    assert detect_layout(root / "train")[0] == "LEVIR-CD or WHU-CD"  # a split folder alone
    val = PairedImageDataset(root, split="val", batch_size=2, progress=False)
    assert [p.t1.name for p in val.pairs] == ["val_1.png", "val_2.png"]
    (_, _), mask = val[0]
    assert np.array_equal(mask[1, ..., 0], change_square(1))  # 255 read as change
    splits = training_splits(root, batch_size=2, progress=False)
    assert [p.stem for p in splits.test.pairs] == ["test_1", "test_2"] and splits.note == ""
    with pytest.raises(DatasetError, match=r"an LEVIR-CD dataset; pass split="):
        PairedImageDataset(root, progress=False)


def test_other_a_b_label_split_folders_are_plain_split_folders(tmp_path):
    for split in ("train", "val"):
        write_folder_split(tmp_path / split, ["whu_1", "whu_2"], ("A", "B", "label"))
    assert dataset_layout(tmp_path) is None  # not named train_*: not LEVIR-CD
    assert len(training_splits(tmp_path, batch_size=2, progress=False).val.pairs) == 2


def test_levir_cd_plus_holds_out_training_pairs_for_validation(tmp_path):
    root = write_levir_cd_plus(tmp_path)
    assert dataset_layout(root).name == dataset_layout(root / "LEVIR-CD+").name == "LEVIR-CD+"
    splits = training_splits(root, batch_size=2, progress=False)
    assert [p.stem for p in splits.train.pairs] == ["train_1", "train_2"]
    assert [p.stem for p in splits.val.pairs] == ["train_3"]
    assert [p.stem for p in splits.test.pairs] == ["test_1", "test_2"]
    assert "LEVIR-CD+: no validation split; validating on the last 1 of 3" in splits.note
    with pytest.raises(DatasetError, match=r"LEVIR-CD\+ has no val split \(its splits: train"):
        open_split(root, "val")
    report = check_dataset(root, progress=False)
    assert report.ok and [s.name for s in report.splits] == ["train", "test"]


# -- S2Looking -------------------------------------------------------------------------------


def test_s2looking_reads_label_not_label1_or_label2(tmp_path):
    root = write_s2looking(tmp_path)
    assert dataset_layout(root).name == "S2Looking"
    assert detect_layout(root / "S2Looking" / "val")[0] == "S2Looking"
    test = PairedImageDataset(root, split="test", batch_size=2, progress=False)
    assert test.pairs[0].label.parent.name == "label"
    (_, _), mask = test[0]
    assert np.array_equal(mask[0, ..., 0], change_square(0))  # label1/label2 are all 255
    splits = training_splits(root / "S2Looking", batch_size=2, progress=False)
    assert len(splits.train.pairs) == len(splits.val.pairs) == len(splits.test.pairs) == 2
    assert check_dataset(root / "S2Looking", progress=False).ok


def test_a_download_missing_a_folder_is_named(tmp_path):
    import shutil

    root = write_s2looking(tmp_path)
    shutil.rmtree(root / "S2Looking" / "val" / "Image2")
    with pytest.raises(DatasetError, match=r"looks like S2Looking, but .*val lacks Image2/"):
        PairedImageDataset(root, split="train", progress=False)
    download = write_cdd(tmp_path / "cdd")
    shutil.rmtree(download / "Real" / "subset" / "test")
    with pytest.raises(DatasetError, match=r"no train/ folder .*looks like CDD, but no test/"):
        training_splits(download, batch_size=2, progress=False)


def test_s2looking_names_a_missing_label(tmp_path):
    root = write_s2looking(tmp_path)
    (root / "S2Looking" / "train" / "label" / "2.png").unlink()
    with pytest.raises(PairingError, match=r"Image1/2\.png has no counterpart in .*train/label"):
        PairedImageDataset(root, split="train", progress=False)


# -- CDD -------------------------------------------------------------------------------------


def test_cdd_reads_real_subset_with_jpeg_masks(tmp_path):
    download = write_cdd(tmp_path)
    for root in (download, download / "Real", download / "Real" / "subset"):
        assert dataset_layout(root).name == "CDD"
    val = PairedImageDataset(download, split="val", batch_size=2, progress=False)
    assert val.pairs[0].t1.suffix == ".jpg" and "Real/subset/val/A" in str(val.pairs[0].t1)
    (_, _), mask = val[0]
    for k in range(2):  # the JPEG noise around the square is thresholded away
        assert np.array_equal(mask[k, ..., 0], change_square(k))
    report = check_dataset(download, progress=False)
    assert report.ok and [s.name for s in report.splits] == ["train", "val", "test"]
    assert all(s.layout == "CDD" for s in report.splits)


# -- SECOND ----------------------------------------------------------------------------------


@pytest.mark.parametrize("indices", [False, True], ids=["colours", "indices"])
def test_second_change_is_where_a_map_is_not_unchanged(tmp_path, indices):
    root = write_second(tmp_path, indices=indices)
    assert dataset_layout(root).name == "SECOND"
    data = PairedImageDataset(root, split="test", batch_size=2, progress=False)
    (_, _), mask = data[0]
    for k in range(2):
        assert np.array_equal(mask[k, ..., 0], change_square(k))
    # tf.data reads the masks through the same rule (the label files are not the masks).
    (_, _), tf_mask = next(iter(data.as_tf_dataset()))
    assert np.array_equal(tf_mask.numpy(), mask)


def test_second_trains_with_held_out_pairs_and_checks_clean(tmp_path):
    root = write_second(tmp_path)
    splits = training_splits(root, batch_size=2, crop_size=16, progress=False)
    assert [p.stem for p in splits.val.pairs] == ["00002"] and "SECOND" in splits.note
    report = check_dataset(root, progress=False)
    assert report.ok, report.problems
    changed = sum(int(change_square(k).sum()) for k in range(2))
    assert next(s for s in report.splits if s.name == "test").changed_pixels == changed


def test_second_cache_is_rebuilt_when_a_label2_map_changes(tmp_path):
    from PIL import Image

    from tests.fake_benchmarks import BUILDING, second_map

    root = write_second(tmp_path / "data")
    options = dict(batch_size=2, cache_dir=tmp_path / "cache", progress=False)
    before = PairedImageDataset(root / "test", **options).read_pair(0)[2]
    extra = change_square(0) | (np.arange(32)[:, None] > 28)  # three more changed rows
    Image.fromarray(second_map(extra, BUILDING)).save(root / "test" / "label2" / "00000.png")
    after = PairedImageDataset(root / "test", **options).read_pair(0)[2]
    assert int(after.sum()) == int(before.sum()) + 3 * 32


def test_second_names_a_missing_label2_map(tmp_path):
    root = write_second(tmp_path)
    (root / "train" / "label2" / "00001.png").unlink()
    with pytest.raises(PairingError, match=r"train/label2: no label2 map for 00001\.png"):
        PairedImageDataset(root / "train", progress=False)


# -- WHU-CD release --------------------------------------------------------------------------


def test_whu_cd_release_reads_one_scene_per_split(tmp_path):
    pytest.importorskip("rasterio")
    root = write_whu_cd(tmp_path)
    release = root / "Building change detection dataset_add"
    for folder in (root, release, release / "1. The two-period image data"):
        assert dataset_layout(folder).name == "WHU-CD release"
    train = PairedImageDataset(root, split="train", batch_size=1, progress=False)
    val = PairedImageDataset(root, split="val", batch_size=1, progress=False)
    test = PairedImageDataset(root, split="test", batch_size=1, progress=False)
    assert train.source.scene_size(0) == (56, 48) and val.source.scene_size(0) == (8, 48)
    assert test.source.scene_size(0) == (64, 48)
    (_, _), train_mask = train[0]
    assert float(train_mask.sum()) == 10 * 20  # the bottom rows' change is validation's
    (_, _), val_mask = val[0]
    assert float(val_mask[0, 2:6, 30:40].min()) == 1.0  # the change in the bottom rows
    (_, _), test_mask = test[0]
    assert float(test_mask.sum()) == 10 * 20 + 4 * 10  # change_label, not the building masks


def test_whu_cd_release_trains_on_crops_of_the_train_rows(tmp_path):
    pytest.importorskip("rasterio")
    root = write_whu_cd(tmp_path)
    splits = training_splits(root, batch_size=2, crop_size=16, progress=False)
    assert splits.train.source.crop_size == (16, 16)
    (t1, _), mask = splits.train[0]
    assert t1.shape == (2, 16, 16, 3) and mask.shape == (2, 16, 16, 1)
    assert splits.val.source.scene_size(0) == (8, 48) and splits.val.batch_size == 1
    assert "validating on the val split" in splits.note
    tiles = open_split(root, "test", tile_size=16)
    assert tiles.num_samples == 4 * 3


def test_whu_cd_release_names_a_missing_file(tmp_path):
    pytest.importorskip("rasterio")
    root = write_whu_cd(tmp_path)
    data = root / "Building change detection dataset_add" / "1. The two-period image data"
    (data / "change_label" / "test" / "change_label.tif").unlink()
    with pytest.raises(DatasetError, match=r"test split lacks .*change_label/test/change_label"):
        PairedImageDataset(root, split="test", progress=False)
    with pytest.raises(DatasetError, match=r"'val' \(the bottom eighth of the train scene\)"):
        PairedImageDataset(root, split="all", progress=False)
