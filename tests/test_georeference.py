"""Dates on different grids (CRS or transform) are refused by one rule on every path."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.data.check import check_dataset
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.data.readers import georeference
from siamese_cd.data.readers.georeference import grid_mismatch
from siamese_cd.errors import GeoreferenceError
from siamese_cd.evaluation.inference import predict_files
from siamese_cd.evaluation.scores import evaluate
from siamese_cd.models.siamese import SiameseChangeModel
from tests.fakes import make_split

rasterio = pytest.importorskip("rasterio")
WEST, NORTH = 500000.0, 4650000.0


def geotiff(path, value, crs="EPSG:32631", west=WEST, georeferenced=True):
    """A 32 px 3-band uint8 GeoTIFF of 10 m pixels (a plain TIFF without georeferencing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=32, width=32, count=3, dtype="uint8")
    if georeferenced:
        profile |= dict(crs=crs, transform=rasterio.Affine(10, 0, west, 0, -10, NORTH))
    with warnings.catch_warnings():  # a plain TIFF is what is asked for
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as sink:
            sink.write(np.full((3, 32, 32), value, np.uint8))
    return path


def geo_split(root, **second):
    """Two pairs on one grid, except t2 of pair 00001, written with `second`'s options."""
    for i in range(2):
        stem = f"{i:05d}"
        geotiff(root / "time1" / f"{stem}.tif", 10 + i)
        geotiff(root / "time2" / f"{stem}.tif", 200, **(second if i == 1 else {}))
        label = np.zeros((32, 32), np.uint8)
        label[:8] = 255
        (root / "label").mkdir(parents=True, exist_ok=True)
        Image.fromarray(label).save(root / "label" / f"{stem}.png")
    return root, root / "time1" / "00001.tif", root / "time2" / "00001.tif"


# How t2 of pair 00001 differs, and what the error says, given t1 and t2.
CASES = {
    "crs": (
        {"crs": "EPSG:32632"},
        lambda t1, t2: f"t1 {t1} and t2 {t2} have different CRS (EPSG:32631 vs EPSG:32632)",
    ),
    "transform": (
        {"west": WEST + 20},
        lambda t1, t2: (
            f"t1 {t1} and t2 {t2} have different transforms, "
            "(10, 0, 500000, 0, -10, 4650000) vs (10, 0, 500020, 0, -10, 4650000)"
        ),
    ),
    "one georeferenced": (
        {"georeferenced": False},
        lambda t1, t2: f"of t1 {t1} and t2 {t2}, only {t1} is georeferenced",
    ),
}


def model(tmp_path=None):
    net = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    if tmp_path is not None:
        net.save(tmp_path / "model.keras")
    return net


@pytest.mark.parametrize("case", list(CASES))
def test_dates_on_different_grids_are_refused_on_every_path(tmp_path, case):
    options, says = CASES[case]
    split, t1, t2 = geo_split(tmp_path / "train", **options)
    message = re.escape(says(t1, t2))
    with pytest.raises(GeoreferenceError, match=message):  # fit path
        PairedImageDataset(split, batch_size=2)[0]
    with pytest.raises(GeoreferenceError, match=message):  # crops: windows read by GDAL
        PairedImageDataset(split, batch_size=2, crop_size=16, seed=0)[0]
    with pytest.raises(GeoreferenceError, match=message):  # tf.data: when it is built
        PairedImageDataset(split, batch_size=2).as_tf_dataset()
    with pytest.raises(GeoreferenceError, match=message):  # building the decoded cache
        PairedImageDataset(split, batch_size=2, cache_dir=tmp_path / "cache")
    with pytest.raises(GeoreferenceError, match=message):  # evaluate
        evaluate(model(), PairedImageDataset(split, batch_size=2), progress=False)
    with pytest.raises(GeoreferenceError, match=message):  # predict
        predict_files(model(), t1, t2, tmp_path / "map.tif")

    report = check_dataset(split, progress=False)
    assert [(p.kind, p.path) for p in report.problems] == [("georef_mismatch", str(t2))]
    assert says(t1, t2) in report.problems[0].message


def test_the_command_line_names_both_files(tmp_path, capsys):
    split, t1, t2 = geo_split(tmp_path / "train", crs="EPSG:32632")
    assert main(["check", str(split), "--json"]) == 1
    (problem,) = json.loads(capsys.readouterr().out)["problems"]
    assert problem["kind"] == "georef_mismatch" and str(t1) in problem["message"]
    model(tmp_path)
    out = tmp_path / "map.tif"
    argv = ["predict", str(tmp_path / "model.keras"), str(t1), str(t2), "-o", str(out)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"t1 {t1} and t2 {t2} have different CRS (EPSG:32631 vs EPSG:32632)" in error
    assert not out.exists()


def test_one_grid_and_plain_images_pass(tmp_path):
    split, t1, t2 = geo_split(tmp_path / "train")
    assert check_dataset(split, progress=False).ok
    assert PairedImageDataset(split, batch_size=2)[0][0][0].shape == (2, 32, 32, 3)
    plain = geotiff(tmp_path / "plain.tif", 1, georeferenced=False)
    assert grid_mismatch(plain, geotiff(tmp_path / "plain2.tif", 2, georeferenced=False)) is None
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    assert grid_mismatch(tmp_path / "a.png", plain) is None  # neither is georeferenced
    assert "only" in grid_mismatch(tmp_path / "a.png", t1)  # a PNG has no georeferencing


def test_pngs_are_never_opened_and_tiff_headers_once_per_scene(tmp_path, monkeypatch):
    read = []
    original = georeference.read_grid
    monkeypatch.setattr(georeference, "read_grid", lambda path: read.append(path) or original(path))
    png = make_split(tmp_path / "png", count=4)
    data = PairedImageDataset(png, batch_size=2)
    for _ in range(2):
        list(data)
        list(data.as_tf_dataset())
    check_dataset(png, progress=False)
    assert read == []
    split, _, _ = geo_split(tmp_path / "geo")
    data = PairedImageDataset(split, batch_size=1, crop_size=16, seed=0)
    for _ in range(3):  # three epochs, reading windows of each scene
        list(data)
    list(data.as_tf_dataset())
    assert sorted(map(str, read)) == sorted(str(p) for p in split.glob("time*/*.tif"))
