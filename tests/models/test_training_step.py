"""The model's own train/test/predict steps under mixed precision, tf.distribute and XLA."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from siamese_cd import SiameseChangeModel, WeightedBinaryCrossentropy
from tests.testing import TestCase


def squares(n=32, size=16, seed=0):
    """t2 is t1 plus noise and one bright square, which is the change."""
    rng = np.random.default_rng(seed)
    t1 = rng.uniform(0.2, 0.5, (n, size, size, 3)).astype(np.float32)
    t2 = np.clip(t1 + rng.normal(0, 0.03, t1.shape), 0, 1).astype(np.float32)
    y = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        r, c = rng.integers(0, size - 6, 2)
        t2[i, r : r + 6, c : c + 6] = rng.uniform(0.7, 1.0, 3)
        y[i, r : r + 6, c : c + 6] = 1
    return (t1, t2), y


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def one_sgd_step(x, y, weights=None):
    model = SiameseChangeModel(depth=2, filters=4, dropout=0.0, preprocessing="unit")
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=WeightedBinaryCrossentropy(2.0))
    before = model.get_weights()
    model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    deltas = [after - b for after, b in zip(model.get_weights(), before)]
    return model, before, deltas


def test_mixed_precision_step_matches_float32_step():
    x, y = squares(n=4)
    model32, weights, deltas32 = one_sgd_step(x, y)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model16, _, deltas16 = one_sgd_step(x, y, weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(model16.optimizer).__name__ == "LossScaleOptimizer"
    # Without scale_loss() the loss-scale optimizer would shrink every update by 2**15.
    for variable, d32, d16 in zip(model32.weights, deltas32, deltas16):
        if variable.path.endswith("kernel"):
            ratio = np.abs(d16).mean() / np.abs(d32).mean()
            assert 0.9 < ratio < 1.1, (variable.path, ratio)


def test_mixed_precision_model_learns(mixed_precision):
    keras.utils.set_random_seed(0)
    model = SiameseChangeModel(depth=2, filters=8, preprocessing="unit")
    encoder = model.backbone.get_layer("encoder")
    assert encoder.get_layer("enc1_1_conv").compute_dtype == "float16"
    assert model.backbone.get_layer("head").compute_dtype == "float32"
    assert model.preprocessor.compute_dtype == "float32"
    assert model.output.dtype == "float32"
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=WeightedBinaryCrossentropy(4.0))
    x, y = squares()
    before = model.evaluate(x, y, return_dict=True, verbose=0)["f1"]
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    after = model.evaluate(x, y, return_dict=True, verbose=0)["f1"]
    assert np.isfinite(history.history["loss"]).all()
    assert after > max(0.6, before + 0.4), (before, after)


MIRRORED = textwrap.dedent(
    """
    import json
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np
    from siamese_cd import SiameseChangeModel, WeightedBinaryCrossentropy

    rng = np.random.default_rng(0)
    x = (rng.random((8, 16, 16, 3), np.float32), rng.random((8, 16, 16, 3), np.float32))
    y = (rng.random((8, 16, 16, 1)) > 0.7).astype(np.float32)
    config = dict(depth=2, filters=4, dropout=0.0, batch_norm=False, preprocessing="unit")
    weights = SiameseChangeModel(**config).get_weights()

    def run(strategy):
        with strategy.scope():
            model = SiameseChangeModel(**config)
            model.set_weights(weights)
            model.compile(optimizer=keras.optimizers.SGD(0.0),
                          loss=WeightedBinaryCrossentropy(3.0))
        fit = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        ev = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
        direct = float(WeightedBinaryCrossentropy(3.0)(y, model.predict(x, verbose=0)))
        return dict(replicas=strategy.num_replicas_in_sync, train_loss=fit["loss"][0],
                    train_f1=fit["f1"][0], eval_loss=ev["loss"], eval_f1=ev["f1"], direct=direct)

    single = run(tf.distribute.get_strategy())
    mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print("RESULT" + json.dumps(dict(single=single, mirrored=mirrored)))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_reports_the_single_device_loss():
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))
    result = json.loads(line[len("RESULT") :])
    single, mirrored = result["single"], result["mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    for key in ("train_loss", "eval_loss", "train_f1", "eval_f1"):
        assert mirrored[key] == pytest.approx(single[key], rel=1e-4), key
    # And both equal the loss computed directly from the predictions.
    assert single["eval_loss"] == pytest.approx(single["direct"], rel=1e-4)
    assert single["train_loss"] == pytest.approx(single["direct"], rel=1e-4)


def test_jit_compile_is_honoured():
    model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit")
    model.compile(optimizer="adam", loss=WeightedBinaryCrossentropy(2.0), jit_compile=True)
    assert model.jit_compile is True
    x, y = squares(n=4)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    auto = SiameseChangeModel(depth=2, filters=4)
    auto.compile(optimizer="adam", loss=WeightedBinaryCrossentropy(2.0))
    assert auto.jit_compile is False  # "auto" resolves to off on CPU


def test_predict_ignores_labels_in_the_batch():
    import tensorflow as tf

    x, y = squares(n=4)
    model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit", num_classes=1)
    labelled = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    probabilities = model.predict(labelled, verbose=0)
    assert probabilities.shape == y.shape
    np.testing.assert_allclose(probabilities, model.predict(x, verbose=0), atol=1e-6)


class TestServing(TestCase):
    def test_export_serves_raw_pixels_as_the_model_does(self, tmp_path):
        x, y = squares(n=4, size=24)
        raw = tuple((part * 60000).astype(np.uint16) for part in x)
        model = SiameseChangeModel(depth=2, filters=4, preprocessing="auto")
        model.compile(optimizer="adam", loss=WeightedBinaryCrossentropy(2.0))
        model.fit(raw, y, epochs=1, verbose=0)
        assert model.preprocessor.scaling == "standardize"
        served = self.run_export_test(model, raw, tmp_path)
        assert (
            served.signatures["serving_default"].structured_input_signature[1]["t1"].dtype.name
            == "uint16"
        )
