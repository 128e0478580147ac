"""The shared `TestCase` of layer, loss, metric and model tests (after keras-hub's).

Each ``run_*_test`` helper checks one round trip that every serializable piece must survive:
its config, a `.keras` file, the SavedModel export, and building in a mixed precision through
the ``dtype=`` policy argument. Test classes inherit them:

    class TestMyLayer(TestCase):
        def test_config(self):
            self.run_serialization_test(MyLayer())
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np


class TestCase:
    """Round-trip helpers for pytest test classes."""

    def run_serialization_test(self, instance):
        """get_config -> from_config gives an equal config, through the Keras registry too."""
        config = instance.get_config()
        revived = instance.__class__.from_config(config)
        assert revived.get_config() == config
        serialized = keras.saving.serialize_keras_object(instance)
        revived = keras.saving.deserialize_keras_object(serialized)
        assert type(revived) is type(instance)
        assert revived.get_config() == config
        return revived

    def run_layer_test(self, layer, inputs, expected=None, atol: float = 1e-6):
        """A layer gives `expected` (if given), and its config revives an equal layer."""
        output = np.asarray(layer(inputs))
        if expected is not None:
            np.testing.assert_allclose(output, expected, atol=atol)
        self.run_serialization_test(layer)
        return output

    def run_model_saving_test(self, model: keras.Model, inputs, directory: Path) -> keras.Model:
        """A `.keras` round trip loads with safe_mode=True and predicts exactly the same."""
        path = Path(directory) / "model.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        assert type(loaded) is type(model)
        assert loaded.get_config() == model.get_config()
        np.testing.assert_array_equal(
            loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)
        )
        return loaded

    def run_export_test(self, model: keras.Model, inputs, directory: Path, atol: float = 1e-6):
        """The SavedModel's ``serve`` and ``serving_default`` give the model's change
        probability and its mask at the model's threshold, computed in float32 (as exports
        are, whatever the model's precision: a global policy left by a command counts too)."""
        import tensorflow as tf

        from siamese_cd.evaluation.export import float32_model

        path = str(Path(directory) / "served")
        model.export(path, verbose=False)
        served = tf.saved_model.load(path)
        expected = float32_model(model).predict(inputs, verbose=0)[..., -1:]  # change channel
        t1, t2 = inputs
        for outputs in (
            served.serve(t1, t2),
            served.signatures["serving_default"](t1=tf.constant(t1), t2=tf.constant(t2)),
        ):
            np.testing.assert_allclose(outputs["probability"].numpy(), expected, atol=atol)
            clear = np.abs(expected - model.threshold) > atol  # pixels whose side is certain
            mask = outputs["mask"].numpy()
            assert mask.dtype == np.uint8
            np.testing.assert_array_equal(mask[clear], (expected >= model.threshold)[clear])
        return served

    def run_precision_test(
        self,
        cls,
        init_kwargs: dict,
        inputs,
        float32_layers: Sequence[str] = (),
        policies: Sequence[str] = ("mixed_bfloat16", "mixed_float16"),
    ):
        """Built with ``dtype=<policy>``, every layer computes in it, weights and outputs stay
        float32, and Keras's global policy is left alone.

        The layers named in `float32_layers` (and those inside them) must compute in float32
        whatever the policy: preprocessing, heads, anything numerically delicate. Input layers
        compute nothing and are skipped.
        """
        for name in policies:
            global_policy = keras.config.dtype_policy().name
            policy = keras.DTypePolicy(name)
            instance = cls(**init_kwargs, dtype=policy)
            assert keras.config.dtype_policy().name == global_policy
            assert instance.dtype_policy.name == name
            for output in keras.tree.flatten(instance(inputs)):
                assert keras.backend.standardize_dtype(output.dtype) == "float32"
            for weight in instance.weights:
                if "float" in weight.dtype:
                    assert weight.dtype == policy.variable_dtype, weight.path
            kept = {
                id(inner)
                for layer in instance._flatten_layers(include_self=False, recursive=True)
                if layer.name in float32_layers
                for inner in layer._flatten_layers(include_self=True, recursive=True)
            }
            for layer in instance._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                expected = "float32" if id(layer) in kept else policy.compute_dtype
                assert layer.compute_dtype == expected, (name, layer.path, layer.compute_dtype)
            assert {layer.name for layer in instance._flatten_layers()} >= set(float32_layers)
