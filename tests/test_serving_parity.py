"""What is trained is what is served: one standardised 16-bit model, four ways to score it.

A model trained by `siamese-cd train` on 4-band uint16 GeoTIFF pairs (reflectance-like values
around 1,500, scaled by per-band standardisation, `--preprocessing standardize`) must give the same
change counts through `model.evaluate`, `siamese-cd evaluate`, `siamese-cd predict` on the
saved `.keras` file and the exported SavedModel, all fed the files' raw pixels.
"""

import json

import keras
import numpy as np
import pytest

from siamese_cd import PairedImageDataset
from siamese_cd.cli import main
from siamese_cd.data.readers.decoding import read_image, read_label
from siamese_cd.data.synthetic.generate import make_synthetic_dataset
from siamese_cd.models.metrics import scores_from_counts

# Every path computes in float32: "auto" picks bfloat16 on CPUs that have it, whose rounding
# would move F1 by more than the agreement asked here.
FLOAT32 = ["--precision", "float32"]


def counts(truth: np.ndarray, changed: np.ndarray) -> np.ndarray:
    truth, changed = truth.astype(bool), changed.astype(bool)
    return np.array(
        [(truth & changed).sum(), (~truth & changed).sum(), (truth & ~changed).sum()], np.int64
    )


def f1(tp_fp_fn: np.ndarray) -> float:
    tp, fp, fn = (float(v) for v in tp_fp_fn)
    return float(scores_from_counts(tp, fp, fn, 0.0)["f1"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("rasterio")
    root = tmp_path_factory.mktemp("parity")
    data = make_synthetic_dataset(
        root / "data", train=48, val=8, test=8, size=32, bands=4, dtype="uint16", progress=False
    )
    model_path = root / "model.keras"
    argv = ["train", str(data), "--epochs", "4", "--depth", "2", "--filters", "8"]
    argv += ["--preprocessing", "standardize"]
    argv += ["--batch-size", "8", "--logdir", str(root / "logs"), "--out", str(model_path)]
    argv += FLOAT32
    assert main(argv) == 0
    return data, model_path, root


@pytest.mark.slow
def test_standardised_uint16_model_scores_alike_on_every_path(trained):
    data, model_path, root = trained
    model = keras.saving.load_model(model_path)
    assert model.preprocessor.scaling == "standardize"
    assert model.preprocessor.pixel_dtype == "uint16"
    test = PairedImageDataset(data / "test", batch_size=4)
    assert test.pixel_dtype == np.uint16
    f1_keras = model.evaluate(test, return_dict=True, verbose=0)["f1"]

    argv = ["evaluate", str(model_path), str(data), "--json", str(root / "s.json"), *FLOAT32]
    assert main(argv) == 0
    f1_cli = json.loads((root / "s.json").read_text())["scores"]["f1"]

    out = root / "maps"
    argv = ["predict", str(model_path), str(data / "test/time1"), str(data / "test/time2")]
    assert main([*argv, "-o", str(out), "--tile-size", "32", "--overlap", "0", *FLOAT32]) == 0
    predicted = np.zeros(3, np.int64)
    for pair in test.pairs:
        mask = read_label(next(out.glob(f"{pair.stem}.*")), 128)
        predicted += counts(read_label(pair.label, 128), mask)

    model.export(str(root / "served"), verbose=False)
    import tensorflow as tf

    served = tf.saved_model.load(str(root / "served"))
    exported = np.zeros(3, np.int64)
    for pair in test.pairs:
        t1, t2 = (read_image(path)[None] for path in (pair.t1, pair.t2))
        probability = served.serve(t1, t2)["probability"].numpy()[0, ..., 0]
        exported += counts(read_label(pair.label, 128), probability >= model.threshold)

    assert f1_keras > 0.3  # a model that learned something, so agreement means something
    for value in (f1_cli, f1(predicted), f1(exported)):
        assert value == pytest.approx(f1_keras, abs=1e-4)
