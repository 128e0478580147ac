"""A symbolic link to a missing file is named as a broken link, not as a missing counterpart."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.data.check import check_dataset
from siamese_cd.data.layouts.pairing import pair_by_stem, pairs_from_csv
from siamese_cd.data.layouts.registry import pair_split
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import PairingError
from siamese_cd.evaluation.inference import predict_folders
from tests.fakes import make_split

STEMS = ("00000", "00001")


def break_link(path, target):
    """Replace `path` by a symbolic link to `target`, which does not exist."""
    path.unlink(missing_ok=True)
    path.symlink_to(target)
    assert path.is_symlink() and not path.exists()
    return path


def said(link, target) -> str:
    return re.escape(f"{link}: broken symbolic link to {target}")


def test_a_broken_link_is_named_by_pairing_and_training(tmp_path):
    split = make_split(tmp_path / "train", count=3)
    target = tmp_path / "elsewhere" / "00001.png"
    link = break_link(split / "time1" / "00001.png", target)
    for on_missing in ("error", "skip"):  # not a missing file: skipping does not hide it
        with pytest.raises(PairingError, match=said(link, target)) as info:
            pair_split(split, on_missing=on_missing)
        assert "counterpart" not in str(info.value)
        with pytest.raises(PairingError, match=said(link, target)):  # fit and tf.data paths
            PairedImageDataset(split, on_missing=on_missing)
    with pytest.raises(PairingError, match=said(link, target)):  # predict on folders
        predict_folders(None, split / "time1", split / "time2", tmp_path / "maps")
    assert not (tmp_path / "maps").exists()


def test_check_reports_a_broken_link_and_no_orphans(tmp_path, capsys):
    split = make_split(tmp_path / "train", count=3)
    link = break_link(split / "label" / "00002.png", "../gone/00002.png")  # relative target
    loop = break_link(split / "time2" / "00000.png", "00000.png")  # a link to itself
    report = check_dataset(split, progress=False)
    assert sorted((p.kind, p.path) for p in report.problems) == [
        ("broken_link", str(link)),
        ("broken_link", str(loop)),
    ]
    messages = sorted(p.message for p in report.problems)
    assert messages == [f"{link}: broken symbolic link to ../gone/00002.png",
                        f"{loop}: broken symbolic link to 00000.png"]  # fmt: skip
    assert report.splits[0].pairs == 1 and report.splits[0].orphans == 0
    assert main(["check", str(split), "--json"]) == 1
    kinds = {p["kind"] for p in json.loads(capsys.readouterr().out)["problems"]}
    assert kinds == {"broken_link"}
    assert main(["check", str(split)]) == 1
    assert f"{link}: broken symbolic link to ../gone/00002.png" in capsys.readouterr().out


def test_a_broken_link_in_a_csv_or_a_scene_folder_is_named(tmp_path):
    split = make_split(tmp_path / "train", count=2)
    link = break_link(split / "time2" / "00001.png", tmp_path / "gone.png")
    table = tmp_path / "pairs.csv"
    rows = [",".join(f"train/{f}/{s}.png" for f in ("time1", "time2", "label")) for s in STEMS]
    table.write_text("t1,t2,label\n" + "\n".join(rows) + "\n")
    for on_missing in ("error", "skip"):
        with pytest.raises(PairingError, match="line 3: " + said(link, tmp_path / "gone.png")):
            pairs_from_csv(table, on_missing=on_missing)
    # Scene folders: <root>/<scene>/{t1, t2, label}.png
    root = tmp_path / "scenes"
    for scene in ("a", "b"):
        (root / scene).mkdir(parents=True)
        for stem in ("t1", "t2", "label"):
            Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / scene / f"{stem}.png")
    link = break_link(root / "b" / "t1.png", "/nowhere/t1.png")
    with pytest.raises(PairingError, match=said(link, "/nowhere/t1.png")):
        PairedImageDataset(root)


def test_a_link_to_an_existing_file_pairs_as_the_file(tmp_path):
    split = make_split(tmp_path / "train", count=2)
    kept = tmp_path / "kept.png"
    (split / "time1" / "00001.png").rename(kept)
    (split / "time1" / "00001.png").symlink_to(kept)
    pairs = pair_by_stem(split / "time1", split / "time2", split / "label")
    assert [p.stem for p in pairs] == ["00000", "00001"]
    assert check_dataset(split, progress=False).ok
