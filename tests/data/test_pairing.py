import warnings

import numpy as np
import pytest

from siamese_cd.data.pairing import find_layout, pair_by_stem, pair_split
from siamese_cd.errors import DatasetError, PairingError
from tests.conftest import make_split, write_sample


def test_pairs_by_stem_not_by_position(tmp_path):
    split = make_split(tmp_path / "s", stems=["a", "b", "c", "d"])
    # A missing t1 file would shift every later pair if listings were zipped by position.
    (split / "time1" / "b.png").unlink()
    with pytest.warns(UserWarning, match="Skipping 2 file"):
        pairs = pair_split(split, on_missing="skip")
    assert [p.stem for p in pairs] == ["a", "c", "d"]
    for pair in pairs:
        assert pair.t1.stem == pair.t2.stem == pair.label.stem == pair.stem
        assert pair.t1.parent.name == "time1" and pair.t2.parent.name == "time2"


def test_orphan_error_names_the_file_and_the_missing_folder(tmp_path):
    split = make_split(tmp_path / "s", count=4)
    (split / "time2" / "00002.png").unlink()
    with pytest.raises(PairingError) as info:
        pair_split(split)
    message = str(info.value)
    assert "2 file(s) without a counterpart" in message
    assert str(split / "time1" / "00002.png") in message
    assert str(split / "label" / "00002.png") in message
    assert str(split / "time2") in message


def test_orphan_error_names_ten_and_gives_total(tmp_path):
    split = make_split(tmp_path / "s", count=14)
    for i in range(12):
        (split / "label" / f"{i:05d}.png").unlink()
    with pytest.raises(PairingError) as info:
        pair_split(split)
    message = str(info.value)
    assert "24 file(s)" in message
    assert "and 14 more" in message
    assert message.count("has no counterpart") == 10


def test_skip_warns_once_with_count_and_names(tmp_path):
    split = make_split(tmp_path / "s", count=5)
    (split / "label" / "00001.png").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = pair_split(split, on_missing="skip")
    assert len(pairs) == 4
    assert len(caught) == 1
    assert "Skipping 2 file(s)" in str(caught[0].message)
    assert "00001.png" in str(caught[0].message)


def test_stem_ignores_extension(tmp_path):
    split = tmp_path / "s"
    image = np.zeros((8, 8, 3), np.uint8)
    write_sample(split, "x", image, image, np.zeros((8, 8), np.uint8), label_ext=".tif")
    (pair,) = pair_split(split)
    assert pair.label.suffix == ".tif" and pair.t1.suffix == ".png"


def test_duplicate_stems_are_refused(tmp_path):
    split = make_split(tmp_path / "s", count=2)
    (split / "time1" / "00000.jpg").write_bytes((split / "time1" / "00000.png").read_bytes())
    with pytest.raises(PairingError, match=r"00000.*00000\.jpg and 00000\.png|00000\.jpg"):
        pair_split(split)


def test_hidden_and_non_image_files_are_not_samples(tmp_path):
    split = make_split(tmp_path / "s", count=2)
    (split / "time1" / ".DS_Store").write_bytes(b"x")
    (split / "label" / "README.txt").write_text("labels are 0/255")
    assert len(pair_split(split)) == 2


def test_unknown_layout_lists_layouts_looked_for(tmp_path):
    (tmp_path / "s" / "before").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        find_layout(tmp_path / "s")
    assert "time1/time2/label" in str(info.value)
    assert "before" in str(info.value)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="nope: not a directory"):
        pair_split(tmp_path / "nope")


def test_unlabelled_pairs(tmp_path):
    split = make_split(tmp_path / "s", count=3)
    pairs = pair_by_stem(split / "time1", split / "time2")
    assert len(pairs) == 3 and all(p.label is None for p in pairs)


def test_empty_folders_error(tmp_path):
    for name in ("time1", "time2", "label"):
        (tmp_path / name).mkdir()
    with pytest.raises(PairingError, match="no pairs found"):
        pair_split(tmp_path)


def test_bad_on_missing(tmp_path):
    split = make_split(tmp_path / "s", count=1)
    with pytest.raises(DatasetError, match="on_missing"):
        pair_split(split, on_missing="ignore")
