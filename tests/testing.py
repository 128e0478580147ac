"""The shared `TestCase` of layer, loss, metric and model tests (after keras-hub's).

Each ``run_*_test`` helper checks one round trip that every serializable piece must survive:
its config, a `.keras` file, and the SavedModel export. Test classes inherit them:

    class TestMyLayer(TestCase):
        def test_config(self):
            self.run_serialization_test(MyLayer())
"""

from __future__ import annotations

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
        """The SavedModel's ``serve`` and ``serving_default`` give the model's predictions."""
        import tensorflow as tf

        path = str(Path(directory) / "served")
        model.export(path, verbose=False)
        served = tf.saved_model.load(path)
        expected = model.predict(inputs, verbose=0)
        t1, t2 = inputs
        np.testing.assert_allclose(served.serve(t1, t2)["probability"].numpy(), expected, atol=atol)
        outputs = served.signatures["serving_default"](t1=tf.constant(t1), t2=tf.constant(t2))
        np.testing.assert_allclose(outputs["probability"].numpy(), expected, atol=atol)
        return served
