import csv
import json

import numpy as np
import pytest

from siamese_cd import PairedImageDataset, SiameseChangeModel
from siamese_cd.cli import main
from siamese_cd.errors import DatasetError
from siamese_cd.evaluation.scores import evaluate
from tests.fakes import write_sample


class RedChannelOracle:
    """Predicts change wherever t2's red band is bright: predictions are set by the data.

    It takes raw pixels, as a model with a preprocessing layer does, and scales them itself.
    """

    in_channels = 3
    threshold = 0.5

    def __init__(self):
        self.dtypes = set()

    def predict_on_batch(self, x):
        self.dtypes.update(str(part.dtype) for part in x)
        return x[1][..., :1] / 255


def crafted_split(root, size=32):
    """Two scenes whose predicted (t2 red >= 128) and true masks overlap in known ways.

    Scene a: truth = rows 0-7; prediction = rows 4-11 -> tp 4*32, fp 4*32, fn 4*32.
    Scene b: truth empty; prediction = column 0 -> fp 32.
    """
    counts = {}
    t1 = np.zeros((size, size, 3), np.uint8)
    t2 = np.zeros((size, size, 3), np.uint8)
    truth = np.zeros((size, size), np.uint8)
    truth[0:8] = 255
    t2[4:12, :, 0] = 200
    write_sample(root, "a", t1, t2, truth)
    counts["a"] = {"tp": 4 * size, "fp": 4 * size, "fn": 4 * size, "tn": size * size - 12 * size}
    t2 = np.zeros((size, size, 3), np.uint8)
    t2[:, 0, 0] = 255
    write_sample(root, "b", t1, t2, np.zeros((size, size), np.uint8))
    counts["b"] = {"tp": 0, "fp": size, "fn": 0, "tn": size * size - size}
    return counts


def test_counts_and_scores_equal_hand_computed(tmp_path):
    expected = crafted_split(tmp_path / "test")
    result = evaluate(RedChannelOracle(), PairedImageDataset(tmp_path / "test", batch_size=1),
                      progress=False)  # fmt: skip
    tp, fp, fn = 128, 160, 128
    tn = 2 * 32 * 32 - tp - fp - fn
    assert result.counts == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert result.scores["precision"] == pytest.approx(tp / (tp + fp))
    assert result.scores["recall"] == pytest.approx(tp / (tp + fn))
    assert result.scores["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert result.scores["iou"] == pytest.approx(tp / (tp + fp + fn))
    n = tp + fp + fn + tn
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    assert result.scores["kappa"] == pytest.approx(((tp + tn) / n - pe) / (1 - pe))
    rows = {row["stem"]: row for row in result.per_image}
    for stem, counts in expected.items():
        assert {k: rows[stem][k] for k in counts} == counts
    assert rows["b"]["f1"] == 0.0 and rows["b"]["recall"] == 0.0  # no change: documented 0
    assert result.protocol["images"] == "whole" and result.protocol["threshold"] == 0.5


def test_tiles_give_the_same_counts_and_say_so(tmp_path):
    crafted_split(tmp_path / "test")
    whole = evaluate(RedChannelOracle(), PairedImageDataset(tmp_path / "test"), progress=False)
    tiled = evaluate(
        RedChannelOracle(),
        PairedImageDataset(tmp_path / "test", batch_size=3, tile_size=16),
        progress=False,
    )
    assert tiled.counts == whole.counts
    assert tiled.per_image == whole.per_image
    assert tiled.protocol["images"] == "tiles" and tiled.protocol["samples"] == 8
    assert "tiles of [16, 16] every [16, 16] (8 tiles)" in tiled.format()


def test_the_model_gets_raw_pixels(tmp_path):
    crafted_split(tmp_path / "test")
    oracle = RedChannelOracle()
    evaluate(oracle, PairedImageDataset(tmp_path / "test"), progress=False)
    assert oracle.dtypes == {"uint8"}  # as stored; the model scales them


# Tiles per side of 32: starts 0, 8, 16 (3); 0, 8 (2); 0, 4, ..., 16 (5); two scenes.
@pytest.mark.parametrize(("tile", "stride", "samples"), [(16, 8, 18), (24, 8, 8), (16, 4, 50)])
def test_overlapping_tiles_count_every_pixel_once(tmp_path, tile, stride, samples):
    expected = crafted_split(tmp_path / "test")
    tiled = evaluate(
        RedChannelOracle(),
        PairedImageDataset(tmp_path / "test", batch_size=5, tile_size=tile, tile_stride=stride),
        progress=False,
    )
    assert tiled.protocol["samples"] == samples  # tiles overlap: pixels are covered repeatedly
    tp, fp, fn = 128, 160, 128
    assert tiled.counts == {"tp": tp, "fp": fp, "fn": fn, "tn": 2 * 32 * 32 - tp - fp - fn}
    rows = {row["stem"]: row for row in tiled.per_image}
    for stem, counts in expected.items():
        assert {k: rows[stem][k] for k in counts} == counts


def test_threshold_moves_the_counts(tmp_path):
    crafted_split(tmp_path / "test")
    data = PairedImageDataset(tmp_path / "test")
    # t2 red is 200/255 = 0.78 in scene a and 1.0 in scene b.
    assert evaluate(RedChannelOracle(), data, threshold=0.9, progress=False).counts["tp"] == 0


def test_refuses_datasets_that_would_skew_the_score(tmp_path):
    crafted_split(tmp_path / "test")
    for kwargs, match in (({"shuffle": True}, "shuffle"), ({"augment": True}, "augment")):
        with pytest.raises(DatasetError, match=match):
            evaluate(RedChannelOracle(), PairedImageDataset(tmp_path / "test", **kwargs))
    unlabelled = PairedImageDataset(
        t1_dir=tmp_path / "test" / "time1", t2_dir=tmp_path / "test" / "time2"
    )
    with pytest.raises(DatasetError, match="needs labels"):
        evaluate(RedChannelOracle(), unlabelled)


def test_evaluate_command(tmp_path, capsys):
    crafted_split(tmp_path / "data" / "test")
    model_path = tmp_path / "model.keras"
    SiameseChangeModel(depth=2, filters=2, preprocessing="unit").save(model_path)
    out_json, out_csv = tmp_path / "scores.json", tmp_path / "per_image.csv"
    code = main(["evaluate", str(model_path), str(tmp_path / "data"), "--tile-size", "16",
                 "--json", str(out_json), "--per-image", str(out_csv)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Protocol:" in printed and "tiles of [16, 16]" in printed and "threshold 0.5" in printed
    assert "true change" in printed and "predicted no change" in printed
    saved = json.loads(out_json.read_text())
    assert sum(saved["counts"].values()) == 2 * 32 * 32
    assert f"f1 {saved['scores']['f1']:.4f}" in printed
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["stem"] for r in rows] == ["a", "b"]
    assert sum(int(r["tp"]) for r in rows) == saved["counts"]["tp"]

    assert main(["evaluate", str(model_path), str(tmp_path / "data"), "--split", "val"]) == 2
    assert "no val/ folder" in capsys.readouterr().err
