"""A model records the pixel type it was trained on and warns, once, when served another."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from siamese_cd import SiameseChangeModel
from siamese_cd.errors import PixelTypeWarning
from siamese_cd.evaluation.inference import predict_scene
from siamese_cd.models.loading import load_change_model
from siamese_cd.models.preprocessing import preprocessing_config


def training_pairs(dtype=np.uint8, count: int = 4, size: int = 32):
    rng = np.random.default_rng(0)
    t1 = rng.integers(0, 200, (count, size, size, 3)).astype(dtype)
    t2 = t1.copy()
    t2[:, 8:16, 8:16] = 250
    mask = np.zeros((count, size, size, 1), np.float32)
    mask[:, 8:16, 8:16] = 1
    return t1, t2, mask


@pytest.fixture(scope="module")
def uint8_model():
    """A tiny model trained one epoch on uint8 pixels, with 'unit' chosen by hand (so `fit`,
    not `adapt`, records the type)."""
    model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    model.compile()
    t1, t2, mask = training_pairs()
    model.fit((t1, t2), mask, epochs=1, batch_size=2, verbose=0)
    return model


def served(model, dtype):
    """Predict one 32 px scene in `dtype`; returns the warnings raised."""
    t1, t2, _ = training_pairs(np.uint8, count=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_scene(model, t1[0].astype(dtype), t2[0].astype(dtype), tile_size=32, overlap=0)
    return [w for w in caught if issubclass(w.category, PixelTypeWarning)]


def test_fit_records_the_training_pixel_type(uint8_model):
    assert uint8_model.preprocessor.pixel_dtype == "uint8"
    assert uint8_model.get_config()["preprocessor"]["config"]["pixel_dtype"] == "uint8"
    t1, _, _ = training_pairs(np.uint16)
    assert preprocessing_config(t1, progress=False)["pixel_dtype"] == "uint16"


def test_uint16_given_to_a_uint8_model_warns_once_naming_both_types_and_the_scaling(uint8_model):
    uint8_model.preprocessor._warned_types = ()  # other tests may have served uint16 already
    first = served(uint8_model, np.uint16)
    assert len(first) == 1
    message = str(first[0].message)
    assert "trained on uint8 pixels and is given uint16 pixels" in message
    assert "divides uint16 pixels by 65535" in message
    assert "divided uint8 pixels by 255" in message
    assert served(uint8_model, np.uint16) == []  # once per model and type


def test_the_training_pixel_type_gives_no_warning(uint8_model):
    assert served(uint8_model, np.uint8) == []


def test_model_predict_and_evaluate_on_arrays_warn_too():
    model = SiameseChangeModel(depth=2, filters=2, preprocessing=preprocessing_config(
        np.zeros((1, 8, 8, 3), np.uint8), progress=False))  # fmt: skip
    model.compile(loss="dice")
    t1, t2, mask = training_pairs(np.uint16, count=2)
    with pytest.warns(PixelTypeWarning, match="given uint16 pixels"):
        model.predict((t1, t2), verbose=0)
    model.preprocessor._warned_types = ()
    with pytest.warns(PixelTypeWarning, match="given uint16 pixels"):
        model.evaluate((t1, t2), mask, verbose=0)


def test_float_pixels_to_a_uint8_model_warn_that_they_pass_unscaled(uint8_model):
    (warning,) = served(uint8_model, np.float32)
    assert "passes float32 pixels unscaled" in str(warning.message)


def test_a_standardising_model_names_its_statistics(tmp_path):
    t1, t2, _ = training_pairs(np.uint16, count=2)
    config = preprocessing_config((t1, t2), "standardize", progress=False)
    model = SiameseChangeModel(depth=2, filters=2, preprocessing=config)
    (warning,) = served(model, np.uint8)
    assert "standard deviations measured on uint16 pixels" in str(warning.message)


def test_saving_and_loading_keeps_the_pixel_type_and_the_warning(uint8_model, tmp_path):
    path = tmp_path / "m.keras"
    uint8_model.save(path)
    loaded = load_change_model(path)
    assert loaded.preprocessor.pixel_dtype == "uint8"
    assert len(served(loaded, np.uint16)) == 1
    assert served(loaded, np.uint8) == []


def test_an_old_model_without_the_pixel_type_loads_and_never_warns(uint8_model, tmp_path):
    path = tmp_path / "m.keras"
    uint8_model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                config = json.loads(data)
                # As models saved before the pixel type was recorded.
                del config["config"]["preprocessor"]["config"]["pixel_dtype"]
                data = json.dumps(config).encode()
            target.writestr(name, data)
    loaded = load_change_model(old)
    assert loaded.preprocessor.pixel_dtype is None
    assert served(loaded, np.uint16) == [] and served(loaded, np.float32) == []


def test_evaluate_command_warns_when_the_split_holds_another_pixel_type(tmp_path, capsys):
    from siamese_cd.cli import main
    from tests.fakes import make_split

    t1, t2, _ = training_pairs(np.uint16, count=2)
    config = preprocessing_config((t1, t2), "standardize", progress=False)
    model = SiameseChangeModel(depth=2, filters=2, preprocessing=config)
    model.compile(loss="dice")
    model.save(tmp_path / "m.keras")
    make_split(tmp_path / "data" / "test", count=2, size=32)  # 8-bit PNGs
    with pytest.warns(PixelTypeWarning, match="trained on uint16 pixels and is given uint8"):
        assert main(["evaluate", str(tmp_path / "m.keras"), str(tmp_path / "data")]) == 0
    assert "f1" in capsys.readouterr().out


@pytest.mark.slow
def test_the_command_line_prints_the_warning_as_one_line_before_predicting(uint8_model, tmp_path):
    import os
    import subprocess
    import sys

    from tests.fakes import write_geotiff

    uint8_model.save(tmp_path / "m.keras")
    t1, t2, _ = training_pairs(np.uint8, count=1)
    a = write_geotiff(tmp_path / "a.tif", t1[0].astype(np.uint16) * 16)  # 12-bit data
    b = write_geotiff(tmp_path / "b.tif", t2[0].astype(np.uint16) * 16)
    command = [sys.executable, "-m", "siamese_cd.cli", "predict", str(tmp_path / "m.keras"),
               str(a), str(b), "-o", str(tmp_path / "out") + "/", "--tile-size", "32",
               "--overlap", "8"]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    (warning,) = [line for line in lines if "PixelTypeWarning" in line or "warning:" in line]
    assert warning.startswith("siamese-cd predict: warning: the model was trained on uint8 pixels")
    assert "given uint16 pixels" in warning and "divides uint16 pixels by 65535" in warning
    assert (tmp_path / "out" / "a.tif").is_file()


def test_exporting_does_not_warn_nor_use_up_the_warning(tmp_path):
    model = SiameseChangeModel(depth=2, filters=2, preprocessing=preprocessing_config(
        np.zeros((1, 8, 8, 3), np.uint8), progress=False))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelTypeWarning)
        model.export(tmp_path / "served", verbose=False)  # traces with float32 placeholders
    assert len(served(model, np.float32)) == 1
