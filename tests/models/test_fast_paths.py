"""The published network's fast paths compute what the plain layers compute.

BatchNorm as TensorFlow's fused op, BatchNorm folded into its conv in inference, spatial
dropout as one multiplication, PyTorch's grid as a slice and a pad, and the 2-class softmax
as two sigmoids
(`siamese_cd.models.blocks`; their speed is `benchmarks/step_profile.py`'s business).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from siamese_cd.models.blocks import (
    SpatialDropoutByScale,
    TorchBatchNormalization,
    TorchUpsampleAlign,
    TwoClassSoftmax,
)
from siamese_cd.models.siamese import SiameseChangeModel
from tests.testing import TestCase


def as_float(x) -> np.ndarray:
    return np.asarray(tf.cast(x, tf.float64))


def batch_norms(model) -> list[TorchBatchNormalization]:
    return [
        layer
        for layer in model.backbone._flatten_layers()
        if isinstance(layer, TorchBatchNormalization)
    ]


def with_batch_statistics(model, pixels) -> None:
    """Give every BatchNorm of `model` non-trivial parameters and the moving statistics of
    `pixels` (one training pass at momentum 0), as a trained model has."""
    rng = np.random.default_rng(3)
    norms = batch_norms(model)
    for layer in norms:
        channels = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
        layer.beta.assign(rng.normal(0, 0.1, channels).astype(np.float32))
        layer.momentum = 0.0
    model(pixels, training=True)
    for layer in norms:
        layer.momentum = 0.9


def pixel_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two uint8 images of 2 x 32 x 32 x 3, one per date."""
    rng = (np.random.default_rng(seed) for seed in (1, 2))
    return tuple(r.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for r in rng)


def unfolded(model) -> None:
    """Cut every conv-BatchNorm link: each layer computes on its own again."""
    for layer in batch_norms(model):
        layer._folded_into = None
    model.predict_function = None


class TestFusedBatchNorm(TestCase):
    @pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
    def test_training_and_inference_match_the_float64_path(self, policy, tolerance):
        x = np.random.default_rng(0).normal(1.0, 2.0, (4, 6, 6, 5))
        layers = {
            p: TorchBatchNormalization(momentum=0.9, epsilon=1e-5, dtype=p)
            for p in (policy, "float64")  # float64 takes the composed path, exactly
        }
        results = {}
        for p, layer in layers.items():
            layer.build(x.shape)
            layer.gamma.assign(np.linspace(0.5, 1.5, 5))
            layer.beta.assign(np.linspace(-0.2, 0.2, 5))
            inputs = tf.cast(x, layer.compute_dtype)
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = layer(inputs, training=True)
                loss = tf.reduce_sum(tf.cast(outputs, tf.float64) ** 3)
            gradients = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
            results[p] = [outputs, *gradients, layer.moving_mean, layer.moving_variance]
            results[p].append(layer(inputs, training=False))
        names = ("output", "d input", "d gamma", "d beta", "mean", "variance", "inference")
        for name, ours, exact in zip(names, results[policy], results["float64"]):
            scale = np.abs(as_float(exact)).max()
            error = np.abs(as_float(ours) - as_float(exact)).max() / scale
            assert error < tolerance, (name, error)

    @pytest.mark.parametrize(
        "policy, training, fused",
        [
            ("mixed_bfloat16", True, True),
            ("mixed_bfloat16", False, True),
            ("float32", False, True),
            # float32 training keeps the composed path, PyTorch's to 1e-5 in one step.
            ("float32", True, False),
            ("float64", True, False),
            ("float64", False, False),
        ],
    )
    def test_the_fused_op_runs_where_it_keeps_parity(self, policy, training, fused):
        layer = TorchBatchNormalization(dtype=policy)
        layer.build((1, 4, 4, 2))
        step = tf.function(lambda x: layer(x, training=training))
        spec = tf.TensorSpec((None, 4, 4, 2), layer.compute_dtype)
        types = {op.type for op in step.get_concrete_function(spec).graph.get_operations()}
        assert ("FusedBatchNormV3" in types) == fused


class TestFoldedBatchNorm(TestCase):
    def test_prediction_equals_the_unfolded_layers(self):
        pixels = pixel_pair()
        keras.utils.set_random_seed(0)
        model = SiameseChangeModel.paper("diff", filters=4)
        with_batch_statistics(model, pixels)
        encoder = model.backbone.get_layer("encoder")
        assert encoder.get_layer("enc1_1_conv")._folded_norm() is encoder.get_layer("enc1_1_bn")
        folded = model.predict_on_batch(pixels)
        unfolded(model)
        plain = model.predict_on_batch(pixels)
        np.testing.assert_allclose(folded, plain, atol=1e-5, rtol=0)
        assert np.abs(folded - plain).max() > 0  # rounded otherwise: the folded path ran

    def test_a_frozen_batch_norm_in_training_mode_folds_too(self):
        pixels = pixel_pair()
        keras.utils.set_random_seed(0)
        model = SiameseChangeModel.paper("diff", filters=4, dropout=0.0)
        with_batch_statistics(model, pixels)
        for layer in batch_norms(model):
            layer.trainable = False
        frozen = as_float(model(pixels, training=True))
        np.testing.assert_allclose(frozen, as_float(model(pixels, training=False)), atol=1e-6)
        unfolded(model)
        np.testing.assert_allclose(frozen, as_float(model(pixels, training=False)), atol=1e-5)

    def test_a_loaded_model_folds_again(self, tmp_path):
        pixels = pixel_pair()
        keras.utils.set_random_seed(0)
        model = SiameseChangeModel.paper("conc", filters=2)
        with_batch_statistics(model, pixels)
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        conv = loaded.backbone.get_layer("dec1_1_conv")
        assert conv._folded_norm() is loaded.backbone.get_layer("dec1_1_bn")
        expected = model.predict_on_batch(pixels)
        np.testing.assert_allclose(loaded.predict_on_batch(pixels), expected, atol=1e-6)


class TestSpatialDropoutByScale(TestCase):
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
    def test_drops_the_channels_keras_drops_for_the_same_seed(self, dtype):
        x = tf.cast(tf.random.stateless_normal((4, 5, 5, 8), (1, 2)), dtype)
        ours = SpatialDropoutByScale(0.3, seed=7, dtype=dtype)
        theirs = keras.layers.SpatialDropout2D(0.3, seed=7, dtype=dtype)
        for _ in range(3):  # both seed generators move on alike
            got, expected = as_float(ours(x, training=True)), as_float(theirs(x, training=True))
            np.testing.assert_array_equal(got, expected)
        dropped = (got == 0).all(axis=(1, 2))
        assert dropped.any() and not dropped.all()
        np.testing.assert_array_equal(as_float(ours(x, training=False)), as_float(x))

    def test_round_trips_its_config(self):
        layer = SpatialDropoutByScale(0.2, seed=3, name="drop")
        again = SpatialDropoutByScale.from_config(layer.get_config())
        assert (again.rate, again.seed, again.name) == (0.2, 3, "drop")


class TestTorchUpsampleAlign(TestCase):
    @pytest.mark.parametrize("skip_hw", [(6, 6), (7, 6), (6, 7), (7, 7)])
    def test_rows_one_to_2n_and_the_last_repeated_with_its_gradient(self, skip_hw):
        full = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype(np.float32)  # n = 3
        rows = np.minimum(np.arange(skip_hw[0]) + 1, 6)
        cols = np.minimum(np.arange(skip_hw[1]) + 1, 6)
        skip = np.zeros((2, *skip_hw, 1), np.float32)
        weights = np.random.default_rng(1).normal(size=(2, *skip_hw, 3)).astype(np.float32)
        inputs = tf.constant(full)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            aligned = TorchUpsampleAlign()([inputs, skip])
            loss = tf.reduce_sum(aligned * weights)
        np.testing.assert_array_equal(np.asarray(aligned), full[:, rows][:, :, cols])
        expected = np.zeros_like(full)
        np.add.at(expected, (slice(None), rows[:, None], cols[None, :]), weights)
        np.testing.assert_allclose(np.asarray(tape.gradient(loss, inputs)), expected, atol=1e-6)

    def test_keeps_the_channel_count_in_a_graph_of_unknown_sides(self):
        layer = TorchUpsampleAlign()
        traced = tf.function(lambda full, skip: layer([full, skip])).get_concrete_function(
            tf.TensorSpec((None, None, None, 4)), tf.TensorSpec((None, None, None, 1))
        )
        assert traced.outputs[0].shape.as_list() == [None, None, None, 4]


class TestTwoClassSoftmax(TestCase):
    def test_equals_softmax_and_keeps_small_probabilities(self):
        logits = np.random.default_rng(0).normal(0, 8, (2, 5, 7, 2)).astype(np.float32)
        logits[0, 0, 0] = (0.0, 60.0)  # a confident pixel: p(no change) = exp(-60)
        got = np.asarray(TwoClassSoftmax()(logits), np.float64)
        shifted = logits - logits.max(-1, keepdims=True)
        expected = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)
        assert got[0, 0, 0, 0] == pytest.approx(np.exp(-60.0), rel=1e-5)
