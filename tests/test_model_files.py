"""Files given as a model that are not one are named by what they are, on every path:
`load_change_model` in Python, `siamese-cd predict` and `siamese-cd evaluate` (exit 2)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.errors import ModelFileError
from siamese_cd.models.loading import describe_model_file, load_change_model
from tests.fakes import make_split, write_geotiff


def tiny_model():
    from siamese_cd import SiameseChangeModel

    return SiameseChangeModel(depth=2, filters=2, preprocessing="unit")


def rewrite_archive(source: Path, target: Path, edit_config=None, drop=()) -> Path:
    """Copy a `.keras` archive, editing its config.json and leaving out members `drop`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            if name in drop:
                continue
            data = old.read(name)
            if name == "config.json" and edit_config is not None:
                config = json.loads(data)
                edit_config(config)
                data = json.dumps(config).encode()
            new.writestr(name, data)
    return target


def _dense(path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save(path)


def _functional(path: Path) -> None:
    import keras

    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 3)(inputs)).save(path)


def _zip_without_config(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")


def _truncated(path: Path) -> None:
    whole = path.with_name("whole.keras")
    tiny_model().save(whole)
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])


def _checksum_fails(path: Path) -> None:
    tiny_model().save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("model.weights.h5")
    # Flip a byte in the middle of the stored weights (after the local header).
    middle = member.header_offset + 30 + len(member.filename) + member.compress_size // 2
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))


def _tiff(path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="TIFF")


def _png(path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="PNG")


def _hdf5(path: Path) -> None:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(300))


def _folder(path: Path) -> None:
    path.mkdir()


def _saved_model_folder(path: Path) -> None:
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"\x08\x01")


def _missing(path: Path) -> None:
    pass


def _not_json_config(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{not json")


def _no_weights(path: Path) -> None:
    whole = path.with_name("whole.keras")
    tiny_model().save(whole)
    rewrite_archive(whole, path, drop=("model.weights.h5",))


def _weights_of_another_shape(path: Path) -> None:
    whole = path.with_name("whole.keras")
    tiny_model().save(whole)

    def wider(config):
        config["config"]["backbone"]["config"]["filters"] = 4  # the stored weights are 2 wide

    rewrite_archive(whole, path, edit_config=wider)


def _layer_without_weights(path: Path) -> None:
    import io

    import h5py

    whole = path.with_name("whole.keras")
    tiny_model().save(whole)
    with zipfile.ZipFile(whole) as archive:
        weights = io.BytesIO(archive.read("model.weights.h5"))
        members = {name: archive.read(name) for name in archive.namelist()}
    with h5py.File(weights, "a") as store:
        del store["preprocessor/normalization"]
    members["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


# kind -> (how to write it at the path, what the message says the file is)
KINDS = {
    "keras_dense_model": (_dense, "a Keras model of class Sequential, not a SiameseChangeModel"),
    "keras_functional_model": (
        _functional,
        "a Keras model of class Functional, not a SiameseChangeModel",
    ),
    "zip_without_config": (_zip_without_config, "no config.json inside: not a .keras model"),
    "truncated": (_truncated, "truncated or damaged zip archive"),
    "damaged_member": (_checksum_fails, "model.weights.h5 fails its checksum"),
    "tiff_renamed": (_tiff, "not a Keras model file (a TIFF image)"),
    "png_renamed": (_png, "not a Keras model file (a PNG image)"),
    "hdf5": (_hdf5, "an HDF5 file"),
    "empty": (_empty, "the file is empty"),
    "random_bytes": (_random_bytes, "not a Keras model file (not a zip archive)"),
    "folder": (_folder, "a folder, not a .keras model file"),
    "saved_model_folder": (_saved_model_folder, "a TensorFlow SavedModel folder"),
    "missing": (_missing, "no such model file"),
    "config_not_json": (_not_json_config, "config.json inside is not JSON"),
    "no_weights": (_no_weights, "no weights (model.weights.h5) inside"),
    "weights_of_another_shape": (
        _weights_of_another_shape,
        "do not fit the network config.json describes: a weight of shape (3, 3, 3, 2) for a "
        "variable of shape (3, 3, 3, 4)",
    ),
    "layer_without_weights": (
        _layer_without_weights,
        "do not fit the network config.json describes: Layer 'standardize' expected 3 variables",
    ),
}


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> dict[str, Path]:
    """Every bad kind, written once, each in its own folder as ``m.keras``."""
    root = tmp_path_factory.mktemp("bad_models")
    paths = {}
    for kind, (write, _) in KINDS.items():
        (root / kind).mkdir()
        paths[kind] = root / kind / "m.keras"
        write(paths[kind])
    return paths


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_load_change_model_names_the_file_and_what_it_is(kind, bad_models):
    path = bad_models[kind]
    with pytest.raises(ModelFileError) as caught:
        load_change_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert KINDS[kind][1] in message
    assert "Traceback" not in message and "\n" not in message


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory) -> dict[str, Path]:
    """Two 32 px images for predict, and a labelled split for evaluate."""
    root = tmp_path_factory.mktemp("cli_inputs")
    rng = np.random.default_rng(1)
    for name in ("t1.png", "t2.png"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name)
    make_split(root / "data" / "test", count=2, size=32)
    return {"t1": root / "t1.png", "t2": root / "t2.png", "data": root / "data"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_predict_and_evaluate_exit_2_naming_the_model_file(kind, bad_models, cli_inputs, capsys):
    path = bad_models[kind]
    out = path.parent / "map.png"
    predict = ["predict", str(path), str(cli_inputs["t1"]), str(cli_inputs["t2"]), "-o", str(out)]
    assert main(predict) == 2
    error = capsys.readouterr().err
    assert f"siamese-cd predict: error: {path}: " in error and KINDS[kind][1] in error
    assert "Traceback" not in error
    assert not out.exists()

    assert main(["evaluate", str(path), str(cli_inputs["data"])]) == 2
    error = capsys.readouterr().err
    assert f"siamese-cd evaluate: error: {path}: " in error and KINDS[kind][1] in error
    assert "Traceback" not in error


def test_a_change_model_loads_and_a_renamed_one_is_told_to_be_renamed(tmp_path):
    path = tmp_path / "m.keras"
    tiny_model().save(path)
    assert describe_model_file(path) is None
    assert type(load_change_model(path)).__name__ == "SiameseChangeModel"
    renamed = path.rename(tmp_path / "m.zip")
    with pytest.raises(ModelFileError, match=r"m\.zip: a \.keras model archive named \.zip"):
        load_change_model(renamed)


def test_a_model_of_another_registered_class_is_named_with_its_registration(tmp_path):
    path = tmp_path / "m.keras"
    tiny_model().save(path)

    def other(config):
        config["class_name"], config["registered_name"] = "MyNet", "mine>MyNet"

    edited = rewrite_archive(path, tmp_path / "other.keras", edit_config=other)
    with pytest.raises(ModelFileError, match=r"class MyNet \(registered as mine>MyNet\), not a"):
        load_change_model(edited)


def test_evaluate_on_oscd_checks_the_model_file_first(tmp_path, capsys):
    # OSCD reads as many bands as the model takes, so evaluate loads the model before the data.
    from tests.fake_datasets import write_oscd

    data = write_oscd(tmp_path / "oscd")
    tiff = tmp_path / "m.keras"
    write_geotiff(tiff, np.zeros((8, 8, 3), np.uint8))
    assert main(["evaluate", str(tiff), str(data)]) == 2
    assert f"{tiff}: not a Keras model file (a TIFF image)" in capsys.readouterr().err


def test_layers_keras_would_leave_randomly_initialised_are_refused(tmp_path, monkeypatch):
    # Keras only warns when it finds no stored weights for a nested layer and keeps random
    # ones; such a model would predict noise, so loading it is an error.
    import warnings

    import keras

    path = tmp_path / "m.keras"
    tiny_model().save(path)
    original = keras.saving.load_model

    def warning_load(*args, **kwargs):
        message = (
            "Skipping nested container at 'backbone/x': no matching group found. Affected "
            "layers will retain their freshly-initialized weights."
        )
        warnings.warn(message, UserWarning, stacklevel=2)
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", warning_load)
    with pytest.raises(ModelFileError, match=r"m\.keras: .* layers whose weights are not stored"):
        load_change_model(path)
