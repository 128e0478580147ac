"""Test helpers shared by the layer, loss, metric and model tests (keras-hub style)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np


def run_serialization_test(instance):
    """get_config -> from_config gives an equal config, through the Keras registry too."""
    config = instance.get_config()
    revived = instance.__class__.from_config(config)
    assert revived.get_config() == config
    serialized = keras.saving.serialize_keras_object(instance)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(instance)
    assert revived.get_config() == config
    return revived


def run_model_saving_test(model: keras.Model, inputs, directory: Path) -> keras.Model:
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
