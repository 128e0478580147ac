"""Exports (SavedModel, ONNX, LiteRT) predict as the Keras model does, in their own runtimes.

Each format is written (by ``siamese-cd export`` for a uint8 RGB model, by ``model.export``
for a standardised uint16 4-band model with a 2-class head) and run by its own runtime
(TensorFlow, onnxruntime, the LiteRT interpreter) on inputs of odd size: the change
probability must be within 1e-4 of ``model.predict``'s and the mask identical. The models'
thresholds are put in the widest gap of their probabilities, so "identical" is a real
test (about half the pixels change) and not a coin toss at pixels sitting on the threshold.
"""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest

from siamese_cd import SiameseChangeModel
from siamese_cd.cli import main
from siamese_cd.data.readers.decoding import read_image
from siamese_cd.errors import ConfigError, ExportError, ImageReadError, ModelFileError
from siamese_cd.evaluation.export import (
    TOLERANCE,
    export_format,
    float32_model,
)
from siamese_cd.evaluation.inference import predict_scene
from siamese_cd.evaluation.runtimes import load_exported_model
from siamese_cd.models.losses import change_probability
from siamese_cd.models.preprocessing import preprocessing_config
from tests.fakes import make_split

FILE_NAMES = {"saved_model": "served", "onnx": "model.onnx", "litert": "model.tflite"}
TILING = ["--tile-size", "32", "--overlap", "8"]


def pair(dtype: str, bands: int, size=(37, 45), seed: int = 0):
    rng = np.random.default_rng(seed)
    top = 256 if dtype == "uint8" else 5000
    shape = (2, *size, bands)
    return tuple(rng.integers(0, top, shape).astype(dtype) for _ in range(2))


def threshold_in_gap(*probabilities: np.ndarray) -> float:
    """The middle of the widest gap between the probabilities around their median."""
    values = np.unique(np.concatenate([np.ravel(p) for p in probabilities]))
    low, high = np.quantile(values, [0.2, 0.8])
    middle = values[(values >= low) & (values <= high)]
    gaps = np.diff(middle)
    widest = int(np.argmax(gaps))
    # Every probability then lies more than 2 x TOLERANCE from the threshold.
    assert gaps[widest] > 4 * TOLERANCE, "the probabilities leave no clear threshold"
    return float((middle[widest] + middle[widest + 1]) / 2)


def spread_probabilities(model, inputs, seed: int = 0) -> None:
    """Random He-scaled weights, then the head scaled and centred so the change probabilities
    spread over about 0.2-0.8: an initialised tiny network gives nearly one value everywhere,
    every pixel then on the threshold's edge."""
    rng = np.random.default_rng(seed)
    for layer in model.backbone._flatten_layers():
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            shape = tuple(layer.kernel.shape)
            std = np.sqrt(2 / np.prod(shape[:-1]))
            layer.kernel.assign(rng.normal(0, std, shape).astype(np.float32))
            layer.bias.assign(rng.normal(0, 0.1, tuple(layer.bias.shape)).astype(np.float32))
    probability = change_probability(model.predict(inputs, verbose=0)).astype(np.float64)
    logits = np.log(probability / (1 - probability))
    scale = 1.5 / logits.std()  # of the change logit (channel 1 minus channel 0 for 2 classes)
    head = model.backbone.get_layer("head")
    bias = head.bias.numpy() * scale
    bias[-1] -= scale * np.median(logits)
    head.kernel.assign(head.kernel.numpy() * scale)
    head.bias.assign(bias)


def run_in_runtime(format: str, path, t1: np.ndarray, t2: np.ndarray) -> dict:
    """The exported file's outputs, computed by the format's own runtime."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shapes = {spec.name: spec.shape for spec in session.get_inputs()}
        assert all(isinstance(side, str) for side in shapes["t1"][:3])  # free dimensions
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, {"t1": t1, "t2": t2})))
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(path)).get_signature_runner()
        assert list(runner.get_input_details()["t1"]["shape_signature"][:3]) == [-1, -1, -1]
        return runner(t1=t1, t2=t2)
    import tensorflow as tf

    served = tf.saved_model.load(str(path))
    return {name: value.numpy() for name, value in served.serve(t1, t2).items()}


def assert_parity(model, outputs: dict, t1, t2) -> None:
    expected = change_probability(model.predict((t1, t2), verbose=0))
    probability, mask = outputs["probability"], outputs["mask"]
    assert probability.dtype == np.float32 and probability.shape == expected.shape
    assert mask.dtype == np.uint8 and mask.shape == expected.shape
    np.testing.assert_allclose(probability, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(mask, (expected >= model.threshold).astype(np.uint8))
    assert 0.2 < mask.mean() < 0.8  # a mask with both classes, so equality means something


def write_scene(folder, array: np.ndarray, name: str):
    """A georeferenced GeoTIFF if rasterio is there, else a PNG."""
    try:
        import rasterio
        from rasterio.transform import Affine
    except ImportError:
        from PIL import Image

        path = folder / f"{name}.png"
        Image.fromarray(array).save(path)
        return path
    path = folder / f"{name}.tif"
    profile = dict(driver="GTiff", height=array.shape[0], width=array.shape[1],
                   count=array.shape[2], dtype=array.dtype.name, crs="EPSG:32631",
                   transform=Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4650000.0))  # fmt: skip
    with rasterio.open(path, "w", **profile) as sink:
        sink.write(np.moveaxis(array, -1, 0))
    return path


def read_map(path) -> np.ndarray:
    if path.suffix == ".png":
        from PIL import Image

        return np.asarray(Image.open(path))
    import rasterio

    with rasterio.open(path) as source:
        assert source.crs is not None and str(source.crs) == "EPSG:32631"  # T1's, kept
        return source.read(1)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """A uint8 RGB model saved as .keras, a scene of 70 x 90 (12 windows of 32) and its map
    predicted from the .keras file; the threshold lies in a gap of both inputs' probabilities."""
    root = tmp_path_factory.mktemp("rgb")
    t1, t2 = pair("uint8", 3)
    config = preprocessing_config((t1, t2), progress=False)
    # dtype: float32 whatever policy an earlier command left global (predict's "auto").
    model = SiameseChangeModel(depth=2, filters=2, preprocessing=config, dtype="float32")
    rng = np.random.default_rng(3)
    scene = [rng.integers(0, 256, (70, 90, 3)).astype(np.uint8) for _ in range(2)]
    options = dict(tile_size=32, overlap=8)
    spread_probabilities(model, (t1, t2))
    keras_map = predict_scene(model, *scene, **options)
    probabilities = change_probability(model.predict((t1, t2), verbose=0))
    model.set_threshold(threshold_in_gap(probabilities, keras_map))
    model.save(root / "model.keras")
    paths = [write_scene(root, image, name) for image, name in zip(scene, ("t1", "t2"))]
    out = root / f"keras{paths[0].suffix}"
    argv = ["predict", str(root / "model.keras"), *map(str, paths), "-o", str(out), *TILING]
    assert main([*argv, "--precision", "float32"]) == 0  # "auto" may compute in bfloat16
    return {"model": model, "inputs": (t1, t2), "scene": paths, "map": read_map(out),
            "keras_map": keras_map, "root": root}  # fmt: skip


@pytest.mark.parametrize("format", ["saved_model", "onnx", "litert"])
def test_cli_export_runs_in_its_runtime_and_predicts_scenes_as_keras(format, rgb, tmp_path, capsys):
    out = tmp_path / FILE_NAMES[format]
    argv = ["export", str(rgb["root"] / "model.keras"), "--format", format, "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"Wrote {out}") and "inputs t1, t2 of uint8 pixels" in printed
    model, (t1, t2) = rgb["model"], rgb["inputs"]
    assert_parity(model, run_in_runtime(format, out, t1, t2), t1, t2)

    # siamese-cd predict runs the exported file over the windows of a larger scene.
    exported = load_exported_model(out)
    assert (exported.threshold, exported.input_dtype) == (model.threshold, "uint8")
    scene = [read_image(path) for path in rgb["scene"]]
    probability = predict_scene(exported, *scene, tile_size=32, overlap=8)
    np.testing.assert_allclose(probability, rgb["keras_map"], atol=TOLERANCE, rtol=0)
    written = tmp_path / f"map{rgb['scene'][0].suffix}"
    assert main(["predict", str(out), *map(str, rgb["scene"]), "-o", str(written), *TILING]) == 0
    np.testing.assert_array_equal(read_map(written), rgb["map"])
    assert 0.1 < (rgb["map"] == 255).mean() < 0.9  # both classes in the map


@pytest.fixture(scope="module")
def multiband():
    """A standardised uint16 4-band model with a 2-class head."""
    t1, t2 = pair("uint16", 4, seed=1)
    config = preprocessing_config((t1, t2), progress=False)
    assert config["scaling"] == "standardize" and config["pixel_dtype"] == "uint16"
    model = SiameseChangeModel(depth=2, filters=3, num_classes=2, preprocessing=config,
                               in_channels=4, variant="conc", dtype="float32")  # fmt: skip
    spread_probabilities(model, (t1, t2), seed=1)
    model.set_threshold(threshold_in_gap(change_probability(model.predict((t1, t2), verbose=0))))
    return model, (t1, t2)


@pytest.mark.parametrize("format", ["tf_saved_model", "onnx", "litert"])
def test_model_export_of_a_uint16_multiband_model(format, multiband, tmp_path):
    model, (t1, t2) = multiband
    out = tmp_path / FILE_NAMES[export_format(format)]
    summary = model.export(out, format=format, verbose=False)
    assert (summary.path, summary.pixel_dtype, summary.copied_to_float32) == (out, "uint16", False)
    assert summary.largest_difference < TOLERANCE
    outputs = run_in_runtime(export_format(format), out, t1, t2)
    assert_parity(model, outputs, t1, t2)
    exported = load_exported_model(out)
    assert (exported.in_channels, exported.input_dtype) == (4, "uint16")
    # Another batch and size through the same file: the sides are not fixed.
    small = exported.predict((t1[:1, :21, :33], t2[:1, :21, :33]))["probability"]
    expected = change_probability(model.predict((t1[:1, :21, :33], t2[:1, :21, :33]), verbose=0))
    np.testing.assert_allclose(small, expected, atol=TOLERANCE, rtol=0)


def test_a_bfloat16_model_exports_in_float32(tmp_path):
    pytest.importorskip("onnx")
    import onnx

    t1, t2 = pair("uint8", 3, seed=2)
    # Also the other graph: PyTorch's pixel grid (gathers, no padding) and per-image scaling.
    config = preprocessing_config((t1, t2), "per_image", progress=False)
    model = SiameseChangeModel(depth=2, filters=2, preprocessing=config, alignment="torch",
                               dtype="mixed_bfloat16")  # fmt: skip
    assert model.backbone.compute_dtype == "bfloat16"
    summary = model.export(tmp_path / "m.onnx", format="onnx", verbose=False)
    assert summary.copied_to_float32 and summary.largest_difference < TOLERANCE
    assert model.backbone.compute_dtype == "bfloat16"  # the model itself is left as it was
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT16}
    kinds = {tensor.data_type for tensor in graph.initializer} & float_types
    assert kinds == {onnx.TensorProto.FLOAT}
    copy = float32_model(model)
    assert copy is not model and copy.backbone.compute_dtype == "float32"
    outputs = load_exported_model(tmp_path / "m.onnx").predict((t1, t2))
    expected = change_probability(copy.predict((t1, t2), verbose=0))
    np.testing.assert_allclose(outputs["probability"], expected, atol=TOLERANCE, rtol=0)


def test_bad_requests_exit_2_before_the_model_is_loaded(tmp_path, capsys):
    missing = tmp_path / "absent.keras"  # never read: the request is refused first
    cases = [
        ("onnx", tmp_path / "m.tflite", "m.tflite: ONNX files end in .onnx (.tflite is the "
         "LiteRT format's suffix: --format litert)"),
        ("litert", tmp_path / "m.lite", "m.lite: LiteRT files end in .tflite"),
        ("saved_model", tmp_path / "m.onnx", "a SavedModel is a folder; name it without"),
    ]  # fmt: skip
    for format, out, message in cases:
        assert main(["export", str(missing), "--format", format, "-o", str(out)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("siamese-cd export: error: ") and message in error
        assert "absent.keras" not in error and not out.exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep")
    argv = ["export", str(missing), "--format", "saved_model", "-o", str(tmp_path / "other")]
    assert main(argv) == 2
    assert "a folder holding other files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["export", str(missing), "--format", "openvino", "-o", str(tmp_path / "x")])
    assert caught.value.code == 2 and "invalid choice: 'openvino'" in capsys.readouterr().err
    with pytest.raises(ExportError, match="unknown export format 'openvino': choose saved_model"):
        SiameseChangeModel(depth=2, filters=2, preprocessing="unit").export(
            tmp_path / "x", format="openvino"
        )
    assert main(["export", str(missing), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 2
    assert f"{missing}: no such model file" in capsys.readouterr().err


def test_a_missing_extra_is_named_with_its_install_command(tmp_path, monkeypatch, capsys):
    import siamese_cd.evaluation.runtimes as runtimes

    monkeypatch.setattr(runtimes, "installed", lambda name: name not in ("tf2onnx", "onnxruntime"))
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "absent.keras"), "--format", "onnx", "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "exporting to ONNX needs tf2onnx, onnxruntime, which are not installed: " in error
    assert "pip install 'siamese_cd[export]'" in error and not out.exists()
    out.write_bytes(b"not onnx")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    argv = ["predict", str(out), str(image), str(image), "-o", str(tmp_path / "map.png")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "running an ONNX model needs onnxruntime, which is not installed: pip install" in error
    assert not (tmp_path / "map.png").exists()


def test_exported_files_that_are_not_change_models_are_named(tmp_path, capsys):
    from PIL import Image

    image = str(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    (tmp_path / "m.onnx").write_bytes(b"not onnx at all")
    (tmp_path / "m.tflite").write_bytes(b"\x1c\x00\x00\x00ABCD" + bytes(40))
    expected = {"m.onnx": "not a readable ONNX model", "m.tflite": "not a LiteRT (.tflite) model"}
    out = str(tmp_path / "o.png")
    for name, message in expected.items():
        assert main(["predict", str(tmp_path / name), image, image, "-o", out]) == 2
        assert f"siamese-cd predict: error: {tmp_path / name}: {message}" in capsys.readouterr().err
    make_split(tmp_path / "data" / "test", count=2, size=32)
    assert main(["evaluate", str(tmp_path / "m.onnx"), str(tmp_path / "data")]) == 2
    error = capsys.readouterr().err
    assert "an ONNX model, not a .keras model file: siamese-cd predict runs" in error
    argv = ["predict", str(tmp_path / "m.onnx"), image, image, "-o", out, "--precision", "bfloat16"]
    assert main(argv) == 2
    assert "an exported model computes in float32" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_an_onnx_export_refuses_pixels_of_another_type(multiband, tmp_path):
    onnx = pytest.importorskip("onnx")
    model, _ = multiband
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training type: no pixel-type warning
        model.export(tmp_path / "m.onnx", format="onnx", verbose=False, check=False)
    properties = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    metadata = json.loads(properties["siamese_cd"])
    assert metadata["threshold"] == model.threshold and metadata["scaling"] == "standardize"
    exported = load_exported_model(tmp_path / "m.onnx")
    t1, t2 = pair("uint8", 4)
    message = "uint8 pixels, but the exported model m.onnx takes uint16 pixels"
    with pytest.raises(ConfigError, match=f"given {message}"):
        exported.predict((t1, t2))
    with pytest.raises(ImageReadError, match=f"^t1: {message}"):
        predict_scene(exported, t1[0], t2[0])
    # The same graph without the exporter's metadata: an ONNX file from elsewhere.
    proto = onnx.load(str(tmp_path / "m.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ModelFileError, match="foreign.onnx: an ONNX model not written by siamese"):
        load_exported_model(tmp_path / "foreign.onnx")


def test_a_model_without_its_preprocessing_is_not_exported(tmp_path):
    model = SiameseChangeModel(depth=2, filters=2, preprocessing="auto")  # waits for data
    with pytest.raises(ConfigError, match="has not seen training data yet"):
        model.export(tmp_path / "served", verbose=False)
    assert not (tmp_path / "served").exists()


def test_a_file_failing_the_check_is_not_kept(multiband, tmp_path, monkeypatch):
    import siamese_cd.evaluation.export as export

    model, _ = multiband
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference passes: the check fails
    with pytest.raises(ExportError, match=r"m\.onnx: the exported model's change probability "
                       r"differs from the Keras model's by up to .* \(allowed -1\)"):  # fmt: skip
        model.export(tmp_path / "m.onnx", format="onnx", verbose=False)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its hidden draft
