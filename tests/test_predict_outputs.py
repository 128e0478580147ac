"""Where `siamese-cd predict` and `predict_files` write, checked before the model runs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.errors import ConfigError
from siamese_cd.evaluation.inference import map_path, predict_files
from tests.fakes import write_geotiff


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from siamese_cd import SiameseChangeModel

    path = tmp_path_factory.mktemp("model") / "m.keras"
    SiameseChangeModel(depth=2, filters=2, preprocessing="unit").save(path)
    return path


def write_pair(folder, stem="scene", size=32):
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for date in ("t1", "t2"):
        path = folder / f"{stem}_{date}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_an_existing_folder_as_output_receives_the_map_named_after_t1(tmp_path, model_path, capsys):
    t1, t2 = write_pair(tmp_path / "in")
    out = tmp_path / "maps"
    out.mkdir()
    args = [
        "predict",
        str(model_path),
        str(t1),
        str(t2),
        "-o",
        str(out),
        "--tile-size",
        "32",
        "--overlap",
        "8",
    ]
    assert main(args) == 0
    written = out / "scene_t1.png"
    assert f"Wrote {written}" in capsys.readouterr().out
    with Image.open(written) as mask:
        assert mask.size == (32, 32) and set(np.unique(np.asarray(mask))) <= {0, 255}
    assert sorted(p.name for p in out.iterdir()) == ["scene_t1.png"]


def test_a_name_ending_in_a_separator_is_a_folder_made_for_the_map(tmp_path, model_path):
    t1, t2 = write_pair(tmp_path / "in")
    out = tmp_path / "new" / "maps"
    args = ["predict", str(model_path), str(t1), str(t2), "-o", f"{out}/", "--probabilities"]
    assert main([*args, "--tile-size", "32", "--overlap", "8"]) == 0
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(out / "scene_t1.tif") as written:  # probabilities: floats, in a .tif
        assert written.dtypes == ("float32",) and written.shape == (32, 32)


def test_predict_files_into_a_folder_and_geotiff_inputs_give_tif(tmp_path):
    from siamese_cd import SiameseChangeModel

    model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    t1 = write_geotiff(tmp_path / "in" / "a.tif", image)
    t2 = write_geotiff(tmp_path / "in" / "b.tif", image)
    out = tmp_path / "maps"
    out.mkdir()
    assert predict_files(model, t1, t2, out, tile_size=32, overlap=0) == out / "a.tif"
    assert (out / "a.tif").is_file()


def test_outputs_that_would_overwrite_an_input_are_refused_before_the_model_loads(tmp_path, capsys):
    t1, t2 = write_pair(tmp_path / "in")
    missing_model = str(tmp_path / "none.keras")  # never loaded: the output is checked first
    before = t1.read_bytes()
    for out in (str(t1), f"{t1.parent}/"):  # the file itself; its folder gives the same name
        assert main(["predict", missing_model, str(t1), str(t2), "-o", out]) == 2
        error = capsys.readouterr().err
        assert f"{t1}: that is the input T1, which the change map would overwrite" in error
    assert t1.read_bytes() == before
    with pytest.raises(ConfigError, match="that is the input T2"):
        map_path(t2, t1, t2=t2)

    folders = tmp_path / "a", tmp_path / "b"
    for folder in folders:
        folder.mkdir()
    assert main(["predict", missing_model, *map(str, folders), "-o", str(folders[0])]) == 2
    assert "that is the T1 folder, whose images the maps would replace" in capsys.readouterr().err


def test_inputs_are_checked_before_the_model_loads(tmp_path, capsys):
    t1, _ = write_pair(tmp_path / "in")
    missing_model = str(tmp_path / "none.keras")
    out = str(tmp_path / "o.png")
    assert main(["predict", missing_model, str(t1), str(tmp_path / "nope.png"), "-o", out]) == 2
    assert f"{tmp_path / 'nope.png'}: no such file" in capsys.readouterr().err
    assert main(["predict", missing_model, str(t1), str(t1), "-o", out, "--tile-size", "32"]) == 2
    assert "--overlap 64 must be less than --tile-size 32" in capsys.readouterr().err
    assert main(["predict", missing_model, str(t1), str(tmp_path), "-o", out]) == 2
    assert "is a folder and" in capsys.readouterr().err
    (tmp_path / "f1").mkdir()
    (tmp_path / "f2").mkdir()
    args = ["predict", missing_model, str(tmp_path / "f1"), str(tmp_path / "f2"), "-o", out]
    (tmp_path / "o.png").write_bytes(b"")
    assert main(args) == 2
    assert "a file; the maps of two folders go into an output folder" in capsys.readouterr().err
