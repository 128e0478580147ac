"""Every band of a GeoTIFF is data: a 4th band GDAL tags as alpha is kept on every path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.data.check import check_dataset
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.data.readers.decoding import read_image
from siamese_cd.errors import ConfigError, ImageReadError, NonFiniteError
from siamese_cd.evaluation.inference import FileScene, load_change_model, predict_files
from siamese_cd.evaluation.scores import evaluate
from siamese_cd.models.siamese import SiameseChangeModel
from tests.test_cli import run_cli

rasterio = pytest.importorskip("rasterio")
ALPHA = rasterio.enums.ColorInterp.alpha


def tagged_alpha(path, array):
    """Write (H, W, 4) pixels as GDAL does by default: 8-bit RGB with band 4 tagged alpha
    (other pixel types get the tag set explicitly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=array.shape[0], width=array.shape[1], count=4)
    profile |= dict(dtype=array.dtype.name, crs="EPSG:32631")
    profile["transform"] = rasterio.Affine(10, 0, 500000, 0, -10, 4650000)
    with rasterio.open(path, "w", **profile) as sink:
        sink.write(np.moveaxis(array, -1, 0))
        if array.dtype != np.uint8:
            sink.colorinterp = [rasterio.enums.ColorInterp.red] * 3 + [ALPHA]
    with rasterio.open(path) as source:
        assert source.colorinterp[3] == ALPHA  # the case under test is set up
    return path


def alpha_split(root, count=2, dtype=np.uint8):
    """A split whose dates are 4-band 32 px GeoTIFFs tagged RGB + alpha; PNG labels."""
    rng = np.random.default_rng(0)
    images = {}
    for i in range(count):
        stem = f"{i:05d}"
        for folder in ("time1", "time2"):
            array = rng.integers(0, 255, (32, 32, 4)).astype(dtype)
            images[folder, stem] = array
            tagged_alpha(root / folder / f"{stem}.tif", array)
        label = np.zeros((32, 32), np.uint8)
        label[:8] = 255
        (root / "label").mkdir(parents=True, exist_ok=True)
        Image.fromarray(label).save(root / "label" / f"{stem}.png")
    return root, images


def tiny_model(channels):
    return SiameseChangeModel(depth=2, filters=2, in_channels=channels, preprocessing="unit")


def test_a_band_tagged_alpha_is_kept_by_every_reader(tmp_path):
    split, images = alpha_split(tmp_path / "train")
    t1 = split / "time1" / "00000.tif"
    np.testing.assert_array_equal(read_image(t1), images["time1", "00000"])
    first = np.stack([images["time1", "00000"], images["time1", "00001"]])

    data = PairedImageDataset(split, batch_size=2)  # fit path
    assert data.channels == 4
    np.testing.assert_array_equal(data[0][0][0], first)
    (tf_t1, _), _ = next(iter(data.as_tf_dataset()))  # tf.data path
    np.testing.assert_array_equal(tf_t1.numpy(), first)
    cached = PairedImageDataset(split, batch_size=2, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(cached[0][0][0], first)
    crops = PairedImageDataset(split, batch_size=2, crop_size=16, seed=0)  # windows
    assert crops[0][0][0].shape == (2, 16, 16, 4)
    tiles = PairedImageDataset(split, tile_size=16)
    np.testing.assert_array_equal(tiles.sample(0)[0], images["time1", "00000"][:16, :16])

    assert check_dataset(split, progress=False).ok
    # evaluate and predict take the 4 bands to a 4-band model, and refuse a 3-band one.
    assert evaluate(tiny_model(4), PairedImageDataset(split), progress=False).scores
    with pytest.raises(ConfigError, match=r"00000\.tif: 4 band\(s\), but the model takes 3"):
        evaluate(tiny_model(3), PairedImageDataset(split), progress=False)
    assert FileScene(t1).shape == (32, 32, 4)
    t2 = split / "time2" / "00000.tif"
    assert predict_files(tiny_model(4), t1, t2, tmp_path / "map.tif").is_file()
    with pytest.raises(ImageReadError, match=r"00000\.tif: 4 band\(s\), but the model takes 3"):
        predict_files(tiny_model(3), t1, t2, tmp_path / "map.tif")


def test_check_and_training_read_the_band_tagged_alpha(tmp_path):
    """A NaN only in the band tagged alpha is found: check and the fit path read that band."""
    split, images = alpha_split(tmp_path / "train", dtype=np.float32)
    bad = split / "time2" / "00001.tif"
    array = images["time2", "00001"]
    array[5, 6, 3] = np.nan
    tagged_alpha(bad, array)
    report = check_dataset(split, progress=False)
    assert [(p.kind, p.path) for p in report.problems] == [("non_finite", str(bad))]
    with pytest.raises(NonFiniteError, match=f"{bad}: 1 NaN"):
        PairedImageDataset(split, batch_size=2)[0]
    with pytest.raises(NonFiniteError, match=f"{bad}: 1 NaN"):
        FileScene(bad).read(0, 0, 32, 32)


def test_synthetic_4_band_data_tags_no_band_alpha_and_reads_as_4_bands(tmp_path):
    out = tmp_path / "synth"
    assert main(["synth", str(out), "--bands", "4", "--train", "2", "--val", "1",
                 "--test", "1", "--size", "32"]) == 0  # fmt: skip
    image = out / "train" / "time1" / "00000.tif"
    with rasterio.open(image) as source:
        assert ALPHA not in source.colorinterp and source.count == 4
    assert PairedImageDataset(out / "train").channels == 4
    assert main(["check", str(out)]) == 0


@pytest.mark.slow
def test_synthetic_4_band_data_trains_a_4_band_model(tmp_path):
    out, model = tmp_path / "synth", tmp_path / "model.keras"
    synth = run_cli("synth", str(out), "--bands", "4", "--train", "4", "--val", "2",
                    "--test", "0", "--size", "32")  # fmt: skip
    assert synth.returncode == 0, synth.stderr
    train = run_cli("train", str(out), "--epochs", "1", "--batch-size", "4", "--depth", "2",
                    "--filters", "2", "--no-augment", "--no-choose-threshold",
                    "--logdir", str(tmp_path / "logs"), "--out", str(model))  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert load_change_model(model).in_channels == 4
    assert json.loads((out / "synthetic.json").read_text())["bands"] == 4
