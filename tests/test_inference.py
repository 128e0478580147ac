import numpy as np
import pytest

from siamese_cd import SiameseChangeModel
from siamese_cd.errors import ConfigError, ImageReadError, PairingError
from siamese_cd.evaluation.inference import (
    predict_files,
    predict_folders,
    predict_scene,
    ramp,
    write_change_map,
)


def random_model(depth=2, seed=0):
    # The sigmoid model on Keras's grid (zero padding), scaling independent of the window:
    # what the tiling itself must get right shows alone.
    model = SiameseChangeModel(
        depth=depth, filters=4, preprocessing="unit", alignment="keras", num_classes=1
    )
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(
            rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else rng.normal(0, 0.3, v.shape)
        )
    return model


def whole_image(model, t1, t2):
    return model.predict_on_batch((t1[None], t2[None]))[0, ..., -1]  # the change channel


def test_ramp_is_zero_near_shared_edges_and_one_at_scene_edges():
    weights = ramp(16, 8, fade_start=True, fade_end=False)
    assert (weights[:2] == 0).all() and (weights[6:] == 1).all()
    assert np.all(np.diff(weights) >= 0)
    assert (ramp(16, 8, fade_start=False, fade_end=False) == 1).all()
    np.testing.assert_array_equal(ramp(16, 8, True, True), ramp(16, 8, True, True)[::-1])


def test_tiled_prediction_equals_whole_image_prediction():
    model = random_model(depth=2)
    rng = np.random.default_rng(1)
    t1 = rng.random((192, 160, 3), np.float32)
    t2 = rng.random((192, 160, 3), np.float32)
    # Stride 32 keeps the pooling grid; a quarter of the overlap outruns border effects.
    tiled = predict_scene(model, t1, t2, tile_size=96, overlap=64, batch_size=3)
    np.testing.assert_allclose(tiled, whole_image(model, t1, t2), atol=1e-5)


def test_no_seam_along_tile_borders_on_a_smooth_input():
    model = random_model(depth=2)
    t1 = np.full((256, 256, 3), 0.3, np.float32)
    t2 = np.full((256, 256, 3), 0.6, np.float32)
    inner = (slice(48, 208), slice(48, 208))  # away from the scene's own borders

    def largest_step(probability):
        p = probability[inner]
        return max(np.abs(np.diff(p, axis=0)).max(), np.abs(np.diff(p, axis=1)).max())

    own_texture = largest_step(whole_image(model, t1, t2))
    blended = predict_scene(model, t1, t2, tile_size=64, overlap=32)
    assert largest_step(blended) <= own_texture + 1e-3
    # Butted tiles (no overlap) do show seams, so the check above can fail.
    butted = predict_scene(model, t1, t2, tile_size=64, overlap=0)
    assert largest_step(butted) > 5 * own_texture


def test_odd_scene_size():
    model = random_model(depth=2)
    rng = np.random.default_rng(2)
    t1 = rng.integers(0, 256, (1000, 777, 3), dtype=np.uint8)  # the model scales them
    t2 = rng.integers(0, 256, (1000, 777, 3), dtype=np.uint8)
    probability = predict_scene(model, t1, t2, tile_size=256, overlap=64, batch_size=4)
    assert probability.shape == (1000, 777) and probability.dtype == np.float32
    assert np.isfinite(probability).all() and (probability >= 0).all() and (probability <= 1).all()
    corner = model.predict_on_batch((t1[None, :256, :256] / 255, t2[None, :256, :256] / 255))
    np.testing.assert_allclose(probability[:40, :40], corner[0, :40, :40, -1], atol=1e-5)


def test_scene_smaller_than_a_tile():
    model = random_model(depth=2)
    t = np.random.default_rng(3).random((30, 50, 3), np.float32)
    np.testing.assert_allclose(
        predict_scene(model, t, t, tile_size=64, overlap=16), whole_image(model, t, t), atol=1e-6
    )


def test_errors():
    model = random_model(depth=2)
    t = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ImageReadError, match=r"\(32, 32\) and t2 t2 \(32, 40\) differ in size"):
        predict_scene(model, t, np.zeros((32, 40, 3), np.float32))
    with pytest.raises(ConfigError, match="overlap < tile_size"):
        predict_scene(model, t, t, tile_size=32, overlap=32)
    with pytest.raises(ImageReadError, match="has 3 band.*t2 has 4"):
        predict_scene(model, t, np.zeros((32, 32, 4), np.float32))
    with pytest.raises(ImageReadError, match="4 band.*the model takes 3"):
        predict_scene(model, np.zeros((32, 32, 4)), np.zeros((32, 32, 4)))


def write_geotiff(path, array, crs="EPSG:32631", origin=(500000.0, 4650000.0), res=0.5):
    import rasterio
    from rasterio.transform import from_origin

    bands = np.moveaxis(array, -1, 0)
    with rasterio.open(
        path, "w", driver="GTiff", height=array.shape[0], width=array.shape[1],
        count=bands.shape[0], dtype=array.dtype.name, crs=crs,
        transform=from_origin(*origin, res, res), nodata=0, photometric="MINISBLACK",
    ) as sink:  # fmt: skip
        sink.write(bands)
    return path


def test_geotiff_round_trip_keeps_crs_and_transform(tmp_path):
    import rasterio

    rng = np.random.default_rng(4)
    t1 = write_geotiff(tmp_path / "t1.tif", rng.integers(1, 65535, (70, 90, 3), dtype=np.uint16))
    t2 = write_geotiff(tmp_path / "t2.tif", rng.integers(1, 65535, (70, 90, 3), dtype=np.uint16))
    model = random_model(depth=2)
    out = predict_files(model, t1, t2, tmp_path / "change.tif", tile_size=32, overlap=8)
    probs = predict_files(
        model, t1, t2, tmp_path / "p.tif", tile_size=32, overlap=8, probabilities=True
    )
    with rasterio.open(t1) as source, rasterio.open(out) as mask, rasterio.open(probs) as p:
        assert mask.crs == source.crs == p.crs
        assert mask.transform == source.transform == p.transform
        assert mask.dtypes == ("uint8",) and p.dtypes == ("float32",)
        assert set(np.unique(mask.read(1))) <= {0, 255}
        np.testing.assert_array_equal(mask.read(1), np.where(p.read(1) >= 0.5, 255, 0))
        # T1's nodata is 0, which is a mask value and a probability: neither map declares it.
        assert source.nodata == 0 and mask.nodata is None and p.nodata is None
    # Windowed reads of 16-bit data equal a prediction of the raw arrays in memory.
    with rasterio.open(t1) as a, rasterio.open(t2) as b:
        x1 = np.moveaxis(a.read(), 0, -1)
        x2 = np.moveaxis(b.read(), 0, -1)
    assert x1.dtype == np.uint16
    with rasterio.open(probs) as p:
        expected = predict_scene(model, x1, x2, 32, 8)
        np.testing.assert_allclose(p.read(1), expected, atol=1e-5)
        # The same as the model on the scaled pixels: unit preprocessing divides by 65535.
        scaled = predict_scene(model, x1 / 65535, x2 / 65535, 32, 8)
        np.testing.assert_allclose(p.read(1), scaled, atol=1e-5)


def test_mask_geotiff_keeps_georeference_and_no_nodata_collides(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from siamese_cd.evaluation.inference import geo_profile

    t1 = write_geotiff(tmp_path / "t1.tif", np.ones((20, 30, 3), np.uint8), crs="EPSG:2154",
                       origin=(650000.0, 6860000.0), res=0.2)  # fmt: skip
    probability = np.zeros((20, 30), np.float32)
    probability[:5] = 0.9
    profile = geo_profile(t1)
    out = write_change_map(tmp_path / "mask.tif", probability, profile=profile)
    with rasterio.open(out) as mask:
        assert mask.crs == rasterio.crs.CRS.from_string("EPSG:2154")
        assert mask.transform == from_origin(650000.0, 6860000.0, 0.2, 0.2)
        assert mask.nodata is None  # 0 (no change) and 255 (change) are both data
        values = mask.read(1)
        assert (values[:5] == 255).all() and (values[5:] == 0).all()
        assert (mask.read_masks(1) == 255).all()  # no pixel is masked as nodata
    far = {**profile, "nodata": 65535.0}
    probs = write_change_map(tmp_path / "p.tif", probability, probabilities=True, profile=far)
    with rasterio.open(probs) as p:
        assert p.nodata == 65535.0  # cannot be a probability, so it is kept


def test_dates_of_different_pixel_types_are_refused():
    model = random_model(depth=2)
    with pytest.raises(ImageReadError, match="uint8 pixels and t2 t2 uint16"):
        predict_scene(model, np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint16))


def test_windows_reach_the_model_in_the_stored_type():
    model = random_model(depth=2)
    seen = []

    class Recorder:
        in_channels = 3

        def predict_on_batch(self, x):
            seen.append((x[0].dtype, x[1].dtype, x[0].shape))
            return model.predict_on_batch(x)

    t = np.random.default_rng(7).integers(0, 65535, (70, 50, 3), dtype=np.uint16)
    predict_scene(Recorder(), t, t, tile_size=32, overlap=8, batch_size=4)
    assert seen and all(a == b == np.uint16 for a, b, _ in seen)
    assert all(shape == (4, 32, 32, 3) for _, _, shape in seen)


def test_geotiff_errors_name_both_files(tmp_path):
    model = random_model(depth=2)
    image = np.ones((40, 40, 3), np.uint8)
    t1 = write_geotiff(tmp_path / "t1.tif", image)
    other_crs = write_geotiff(tmp_path / "crs.tif", image, crs="EPSG:32632")
    shifted = write_geotiff(tmp_path / "shift.tif", image, origin=(500100.0, 4650000.0))
    four = write_geotiff(tmp_path / "four.tif", np.ones((40, 40, 4), np.uint8))
    with pytest.raises(ImageReadError, match=r"t1\.tif and t2 .*crs\.tif have different CRS"):
        predict_files(model, t1, other_crs, tmp_path / "o.tif")
    with pytest.raises(ImageReadError, match=r"shift\.tif have different transforms"):
        predict_files(model, t1, shifted, tmp_path / "o.tif")
    with pytest.raises(ImageReadError, match=r"four\.tif: 4 band\(s\), but the model takes 3"):
        predict_files(model, four, four, tmp_path / "o.tif")
    with pytest.raises(ImageReadError, match="band 5 requested"):
        predict_files(model, four, four, tmp_path / "o.tif", bands=(1, 2, 5))
    assert predict_files(model, four, four, tmp_path / "o.tif", bands=(3, 2, 1)).is_file()


def test_png_output_and_folder_mode(tmp_path):
    from PIL import Image

    model = random_model(depth=2)
    rng = np.random.default_rng(5)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for stem in ("x", "y"):
            image = rng.integers(0, 256, (36, 52, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / folder / f"{stem}.png")
    written = predict_folders(model, tmp_path / "a", tmp_path / "b", tmp_path / "out",
                              tile_size=32, overlap=8, progress=False)  # fmt: skip
    assert [p.name for p in written] == ["x.png", "y.png"]
    with Image.open(written[0]) as mask:
        values = np.asarray(mask)
    assert values.shape == (36, 52) and set(np.unique(values)) <= {0, 255}
    with pytest.raises(ConfigError, match="probabilities are floats"):
        predict_files(model, tmp_path / "a" / "x.png", tmp_path / "b" / "x.png",
                      tmp_path / "p.png", probabilities=True)  # fmt: skip
    (tmp_path / "b" / "y.png").unlink()
    with pytest.raises(PairingError, match="y.png"):
        predict_folders(model, tmp_path / "a", tmp_path / "b", tmp_path / "out", progress=False)


def test_predict_command(tmp_path, capsys):
    import rasterio

    from siamese_cd.cli import main

    model_path = tmp_path / "model.keras"
    random_model(depth=2).save(model_path)
    rng = np.random.default_rng(6)
    t1 = write_geotiff(tmp_path / "t1.tif", rng.integers(1, 255, (50, 60, 3), dtype=np.uint8))
    t2 = write_geotiff(tmp_path / "t2.tif", rng.integers(1, 255, (50, 60, 3), dtype=np.uint8))
    out = tmp_path / "maps" / "change.tif"
    args = ["predict", str(model_path), str(t1), str(t2), "-o", str(out), "--tile-size", "32",
            "--overlap", "8"]  # fmt: skip
    assert main(args) == 0
    with rasterio.open(out) as mask, rasterio.open(t1) as source:
        assert mask.shape == (50, 60) and mask.crs == source.crs

    small = write_geotiff(tmp_path / "small.tif", np.ones((40, 60, 3), np.uint8))
    assert main(["predict", str(model_path), str(t1), str(small), "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "t1.tif (50, 60)" in error and "small.tif (40, 60) differ in size" in error

    assert main(["predict", str(tmp_path / "nope.keras"), str(t1), str(t2), "-o", str(out)]) == 2
    assert "nope.keras: no such model file" in capsys.readouterr().err
