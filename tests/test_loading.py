"""Every saved kind loads in a fresh process after ``import siamese_cd`` alone.

The package imports its modules lazily, so nothing would be registered with Keras until a user
touched a name; these tests load files written here in a new interpreter that never names a
class of the package, in each order a script may import Keras, TensorFlow and the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from siamese_cd.models.losses import DiceLoss, FocalLoss, SumOfLosses, WeightedBinaryCrossentropy
from siamese_cd.models.metrics import ChangeMetrics
from siamese_cd.models.preprocessing import ChangePreprocessor
from siamese_cd.models.recipe import recipe_optimizer
from siamese_cd.models.siamese import SiameseChangeModel

SAVING = "load = keras.saving.load_model\ndeserialize = keras.saving.deserialize_keras_object"
IMPORTS = {
    "package, then keras": "import siamese_cd\nimport keras\n" + SAVING,
    "keras, then package": "import keras\nimport siamese_cd\n" + SAVING,
    "package, then tf.keras": (
        "import siamese_cd\nimport tensorflow as tf\nload = tf.keras.models.load_model\n"
        "deserialize = tf.keras.utils.deserialize_keras_object"
    ),
}

LOADER = """
import json, sys
import numpy as np
folder = sys.argv[1]
inputs = np.load(f"{folder}/inputs.npz")
x = (inputs["t1"], inputs["t2"])
out = {}
model = load(f"{folder}/model.keras", safe_mode=True)
weights = np.load(f"{folder}/weights.npz")
out["model"] = [type(model).__name__, type(model.optimizer).__name__,
                type(model.loss).__name__, float(np.abs(model.predict(x, verbose=0)
                - inputs["model"]).max()),
                max(float(np.abs(w - weights[f"w{i}"]).max())
                    for i, w in enumerate(model.get_weights()))]
backbone = load(f"{folder}/backbone.keras", safe_mode=True)
out["backbone"] = [type(backbone).__name__, float(np.abs(np.asarray(backbone(
    (x[0].astype("float32") / 255, x[1].astype("float32") / 255))) - inputs["backbone"]).max())]
scaler = load(f"{folder}/preprocessing.keras", safe_mode=True)
out["preprocessing"] = [type(scaler.layers[-1]).__name__,
                        float(np.abs(np.asarray(scaler(x[0])) - inputs["preprocessing"]).max())]
with open(f"{folder}/objects.json") as f:
    objects = json.load(f)
out["objects"] = {name: type(deserialize(config)).__name__
                  for name, config in objects.items()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained model, its backbone, a preprocessing layer and every other saved object."""
    folder = tmp_path_factory.mktemp("saved")
    rng = np.random.default_rng(0)
    t1, t2 = (rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8) for _ in range(2))
    labels = (rng.random((4, 32, 32, 1)) > 0.8).astype(np.float32)
    model = SiameseChangeModel(depth=2, filters=4)
    model.compile(loss=SumOfLosses([WeightedBinaryCrossentropy(4.0), DiceLoss()]))
    model.fit((t1, t2), labels, batch_size=2, epochs=1, verbose=0)
    model.save(folder / "model.keras")
    model.backbone.save(folder / "backbone.keras")
    scaler_input = keras.Input((None, None, 3), dtype="uint8")
    scaler = keras.Model(
        scaler_input, ChangePreprocessor("unit", pixel_dtype="uint8")(scaler_input)
    )
    scaler.save(folder / "preprocessing.keras")
    np.savez(folder / "weights.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    floats = (t1.astype("float32") / 255, t2.astype("float32") / 255)
    np.savez(
        folder / "inputs.npz",
        t1=t1,
        t2=t2,
        model=model.predict((t1, t2), verbose=0),
        backbone=np.asarray(model.backbone(floats)),
        preprocessing=np.asarray(scaler(t1)),
    )
    optimizer = recipe_optimizer(steps_per_epoch=5)
    objects = {
        "loss": WeightedBinaryCrossentropy(3.0),
        "dice": DiceLoss(),
        "focal": FocalLoss(),
        "sum": SumOfLosses([DiceLoss(), FocalLoss()], weights=[1.0, 2.0]),
        "metrics": ChangeMetrics(threshold=0.4),
        "optimizer": optimizer,
        "schedule": optimizer.learning_rate,
    }
    serialized = {k: keras.saving.serialize_keras_object(v) for k, v in objects.items()}
    (folder / "objects.json").write_text(json.dumps(serialized))
    expected = {name: type(obj).__name__ for name, obj in objects.items()}
    expected["fitted optimizer"] = type(model.optimizer).__name__
    return folder, expected


@pytest.mark.slow
@pytest.mark.parametrize("imports", IMPORTS.values(), ids=IMPORTS.keys())
def test_every_saved_kind_loads_after_importing_the_package_alone(saved, imports):
    folder, expected_objects = saved[0], dict(saved[1])
    script = imports + "\n" + textwrap.dedent(LOADER)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL_"))}
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        env={**environment, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    name, optimizer, loss, error, weight_error = loaded["model"]
    assert (name, loss) == ("SiameseChangeModel", "SumOfLosses")
    assert optimizer == expected_objects.pop("fitted optimizer")
    # Every weight comes back exactly; predictions agree to float32 round-off (this process
    # and a fresh one may split the convolutions over other thread counts).
    assert weight_error == 0.0
    assert error < 1e-4
    assert loaded["backbone"][0] == "FCSiamBackbone" and loaded["backbone"][1] < 1e-4
    assert loaded["preprocessing"] == ["ChangePreprocessor", 0.0]
    assert loaded["objects"] == expected_objects


def test_importing_the_package_registers_nothing_until_keras_is_imported():
    """The command line's start-up stays free of Keras and TensorFlow."""
    probe = (
        "import sys, siamese_cd\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'siamese_cd.models.siamese')"
        " if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
