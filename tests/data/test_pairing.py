import warnings

import numpy as np
import pytest

from siamese_cd.data.layouts.pairing import (
    Pair,
    PairList,
    match_stems,
    pair_by_stem,
    pairs_from_csv,
)
from siamese_cd.data.layouts.registry import detect_layout, find_layout, pair_split
from siamese_cd.errors import DatasetError, PairingError
from tests.fakes import make_split, write_sample


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


@pytest.mark.parametrize(
    ("folders", "layout"),
    [
        (("time1", "time2", "label"), "SYSU-CD"),
        (("A", "B", "label"), "LEVIR-CD or WHU-CD"),
        (("prev", "curr", "label"), "WHU-CD"),
        (("A", "B", "OUT"), "CDD"),
    ],
)
def test_every_layout_is_detected(tmp_path, folders, layout):
    split = make_split(tmp_path / "s", count=3, folders=folders)
    name, t1, t2, label = detect_layout(split)
    assert name == layout
    assert (t1.name, t2.name, label.name) == folders
    pairs = pair_split(split)
    assert [p.stem for p in pairs] == ["00000", "00001", "00002"]
    assert pairs[0].label.parent.name == folders[2]


def test_unknown_layout_lists_every_layout(tmp_path):
    (tmp_path / "s" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        find_layout(tmp_path / "s")
    message = str(info.value)
    assert str(tmp_path / "s") in message and "matches no known layout" in message
    for expected in ("time1/time2/label", "A/B/label", "prev/curr/label", "A/B/OUT"):
        assert expected in message
    assert "SYSU-CD" in message and "LEVIR-CD" in message and "CDD" in message


def test_two_layouts_in_one_folder_is_an_error(tmp_path):
    split = make_split(tmp_path / "s", count=1, folders=("A", "B", "label"))
    (split / "OUT").mkdir()
    with pytest.raises(DatasetError, match="more than one layout"):
        pair_split(split)


def test_pair_list_is_a_compact_read_only_list(tmp_path):
    split = make_split(tmp_path / "s", count=4)
    pairs = pair_split(split)
    assert isinstance(pairs, PairList)
    assert len(pairs) == 4 and pairs[-1].stem == "00003" and pairs[1:3][0].stem == "00001"
    assert [p.stem for p in pairs] == ["00000", "00001", "00002", "00003"]
    assert pairs[2] == Pair(
        "00002",
        split / "time1" / "00002.png",
        split / "time2" / "00002.png",
        split / "label" / "00002.png",
    )
    assert pairs.paths("t2")[0] == str(split / "time2" / "00000.png")
    with pytest.raises(IndexError):
        pairs[4]


def write_csv(path, rows):
    path.write_text("\n".join(",".join(row) for row in rows) + "\n")
    return path


def test_csv_of_triples_with_relative_paths(tmp_path):
    split = make_split(tmp_path / "s", count=3)
    csv_path = write_csv(
        tmp_path / "s" / "pairs.csv",
        [("t1", "t2", "label")]
        + [(f"time1/{i:05d}.png", f"time2/{i:05d}.png", f"label/{i:05d}.png") for i in (2, 0)],
    )
    pairs = pairs_from_csv(csv_path)
    assert [p.stem for p in pairs] == ["00002", "00000"]  # row order, not sorted
    assert pairs[0].label == split / "label" / "00002.png"


def test_csv_without_header_and_without_labels(tmp_path):
    make_split(tmp_path / "s", count=2)
    csv_path = write_csv(
        tmp_path / "s" / "p.csv", [(f"time1/{i:05d}.png", f"time2/{i:05d}.png") for i in (0, 1)]
    )
    pairs = pairs_from_csv(csv_path)
    assert len(pairs) == 2 and pairs[0].label is None


def test_csv_missing_file_error_names_line_and_file(tmp_path):
    make_split(tmp_path / "s", count=2)
    csv_path = write_csv(
        tmp_path / "s" / "p.csv",
        [
            ("time1/00000.png", "time2/00000.png", "label/00000.png"),
            ("time1/00001.png", "time2/gone.png", "label/00001.png"),
        ],
    )
    with pytest.raises(PairingError) as info:
        pairs_from_csv(csv_path)
    message = str(info.value)
    assert "1 row(s) of" in message and str(csv_path) in message
    assert "line 2" in message and str(tmp_path / "s" / "time2" / "gone.png") in message
    with pytest.warns(UserWarning, match="Skipping 1 row"):
        assert len(pairs_from_csv(csv_path, on_missing="skip")) == 1


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("a.png",)], r"line 1: expected the columns t1,t2\[,label\]"),
        (
            [
                ("time1/00000.png", "time2/00000.png", "label/00000.png"),
                ("time1/00001.png", "time2/00001.png", ""),
            ],
            "line 2: has no label but the rows before it do",
        ),
    ],
)
def test_csv_bad_rows_name_file_and_line(tmp_path, rows, expected):
    make_split(tmp_path / "s", count=2)
    csv_path = write_csv(tmp_path / "s" / "p.csv", rows)
    with pytest.raises(DatasetError, match=expected) as info:
        pairs_from_csv(csv_path)
    assert str(csv_path) in str(info.value)


def test_match_stems_reports_orphans_without_raising(tmp_path):
    split = make_split(tmp_path / "s", count=3)
    (split / "label" / "00001.png").unlink()
    pairs, orphans = match_stems([split / "time1", split / "time2", split / "label"])
    assert [p.stem for p in pairs] == ["00000", "00002"]
    assert [o.path.name for o in orphans] == ["00001.png", "00001.png"]
    assert orphans[0].missing_from == (split / "label",)
