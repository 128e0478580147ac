"""`siamese-cd check`: every bad input is reported with its file and its problem."""

import json

import numpy as np
import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.data.check import check_dataset
from tests.fakes import make_split


@pytest.fixture
def dataset(tmp_path):
    make_split(tmp_path / "data" / "train", count=6)
    make_split(tmp_path / "data" / "val", count=3, folders=("A", "B", "label"))
    return tmp_path / "data"


def problems_of(report, kind):
    return [p for p in report.problems if p.kind == kind]


def test_clean_dataset_passes(dataset, capsys):
    report = check_dataset(dataset, progress=False)
    assert report.ok
    assert [(s.name, s.layout, s.pairs, s.files_scanned) for s in report.splits] == [
        ("train", "SYSU-CD", 6, 18),
        ("val", "LEVIR-CD or WHU-CD", 3, 9),
    ]
    assert report.splits[0].changed_fraction == pytest.approx(4 * 8 * 8 / (6 * 32 * 32))
    assert main(["check", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "train (SYSU-CD" in out and "4.17% changed pixels" in out and "OK" in out


def test_a_single_split_folder_is_checked_too(dataset):
    report = check_dataset(dataset / "train", progress=False)
    assert [s.name for s in report.splits] == ["train"] and report.ok


def test_orphans_are_reported(dataset):
    (dataset / "train" / "label" / "00002.png").unlink()
    report = check_dataset(dataset, progress=False)
    orphans = problems_of(report, "orphan")
    assert [p.path for p in orphans] == [
        str(dataset / "train" / "time1" / "00002.png"),
        str(dataset / "train" / "time2" / "00002.png"),
    ]
    assert f"has no counterpart in {dataset / 'train' / 'label'}" in orphans[0].message
    assert report.splits[0].pairs == 5 and report.splits[0].orphans == 2


def test_truncated_and_unreadable_files_are_reported(dataset):
    truncated = dataset / "train" / "time2" / "00001.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    garbage = dataset / "val" / "label" / "00000.png"
    garbage.write_text("not an image")
    report = check_dataset(dataset, progress=False)
    unreadable = problems_of(report, "unreadable")
    assert {p.path for p in unreadable} == {str(truncated), str(garbage)}
    for problem in unreadable:
        assert problem.message.startswith(f"{problem.path}: cannot decode image")


def test_size_mismatch_is_reported_with_three_shapes(dataset):
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(dataset / "train" / "time2" / "00003.png")
    (problem,) = problems_of(check_dataset(dataset, progress=False), "size_mismatch")
    assert "sample '00003': sizes differ" in problem.message
    assert f"t2 {dataset / 'train' / 'time2' / '00003.png'} (16, 24, 3)" in problem.message
    assert "(32, 32, 3)" in problem.message and "(32, 32)" in problem.message


def test_label_values_outside_the_expected_set(dataset):
    label = np.zeros((32, 32), np.uint8)
    label[:2] = 255
    label[5, 5] = 77
    path = dataset / "val" / "label" / "00001.png"
    Image.fromarray(label).save(path)
    (problem,) = problems_of(check_dataset(dataset, progress=False), "label_values")
    assert problem.path == str(path)
    assert problem.message.startswith(f"{path}: label values outside {{0, 255}} and {{0, 1}}: 77")


def test_noisy_jpeg_labels_are_accepted_but_gray_ones_are_not(tmp_path):
    split = make_split(tmp_path / "s", count=2)
    for path in sorted((split / "label").iterdir()):
        Image.open(path).save(path.with_suffix(".jpg"), quality=60)
        path.unlink()
    assert check_dataset(split, progress=False).ok
    gray = np.full((32, 32), 128, np.uint8)
    Image.fromarray(gray).save(split / "label" / "00000.jpg", quality=95)
    (problem,) = problems_of(check_dataset(split, progress=False), "label_values")
    assert "00000.jpg" in problem.path and "128" in problem.message


def test_json_output_and_exit_code(dataset, capsys):
    (dataset / "val" / "B" / "00000.png").unlink()
    assert main(["check", str(dataset), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [s["name"] for s in report["splits"]] == ["train", "val"]
    assert report["splits"][1]["orphans"] == 2
    assert {p["kind"] for p in report["problems"]} == {"orphan"}
    assert report["problems"][0]["path"] == str(dataset / "val" / "A" / "00000.png")


def test_no_layout_is_an_error_listing_layouts(tmp_path, capsys):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    assert main(["check", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "match a known layout" in err and "time1/time2/label" in err and "A/B/OUT" in err


def test_a_split_without_any_change_pixel_is_noted_in_text_and_json(dataset, capsys):
    for label in (dataset / "val" / "label").iterdir():
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(label)
    report = check_dataset(dataset, progress=False)
    (note,) = report.notes
    assert (note.split, note.kind, note.path) == ("val", "no_change", str(dataset / "val"))
    assert note.message.startswith(f"{dataset / 'val'}: no label holds a change pixel")
    assert "val_f1 is 0 at every epoch" in note.message and "val_loss" in note.message
    assert report.ok and not report.problems  # a note: training still runs
    # The text report and --json show it; the exit status stays 0.
    assert main(["check", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "1 no change note(s):" in out and f"  [val] {note.message}" in out
    assert "OK: no problems found" in out
    assert main(["check", str(dataset), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert notes == [
        {"split": "val", "kind": "no_change", "path": str(dataset / "val"), "message": note.message}
    ]
    # Any split is noted; for training it is about what can be learnt.
    for label in (dataset / "train" / "label").iterdir():
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(label)
    notes = {n.split: n.message for n in check_dataset(dataset, progress=False).notes}
    assert sorted(notes) == ["train", "val"] and "no change to learn" in notes["train"]
