"""Model files written by earlier versions still load.

``old_format_model.json`` holds, member by member, a `.keras` file saved before the task's
config held its backbone: its ``config.json`` names the architecture with ``variant``,
``depth``, ``filters``, ... keys at the task level. Its weights (and the trained optimizer's
state) are stored as they were written, so the archive rebuilt here is that file, byte for
byte in every value that matters.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from siamese_cd.models import recipe
from siamese_cd.models.backbone import FCSiamBackbone
from siamese_cd.models.loading import load_change_model
from siamese_cd.models.siamese import SiameseChangeModel

FIXTURE = Path(__file__).with_name("old_format_model.json")


@pytest.fixture(scope="module")
def old():
    return json.loads(FIXTURE.read_text())


def write_archive(fixture: dict, path: Path) -> Path:
    """The `.keras` file the fixture was taken from."""
    import h5py

    weights = io.BytesIO()
    with h5py.File(weights, "w") as h5:
        for group, attrs in fixture["groups"].items():
            h5.require_group(group).attrs.update(attrs)
        for name, stored in fixture["weights"].items():
            raw = base64.b64decode(stored["base64"])
            h5[name] = np.frombuffer(raw, stored["dtype"]).reshape(stored["shape"])
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(fixture["metadata"]))
        archive.writestr("config.json", json.dumps(fixture["config"]))
        archive.writestr("model.weights.h5", weights.getvalue())
    return path


def inputs(fixture: dict) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.asarray(fixture["inputs"][k], np.uint8) for k in ("t1", "t2"))


def test_the_fixture_is_the_old_format(old):
    config = old["config"]["config"]
    assert "backbone" not in config and "preprocessor" not in config
    assert (config["variant"], config["depth"], config["filters"]) == ("diff", 2, 2)


def test_a_file_saved_before_the_backbone_was_stored_loads_and_predicts_alike(old, tmp_path):
    model = load_change_model(write_archive(old, tmp_path / "old.keras"))
    assert isinstance(model, SiameseChangeModel)
    assert isinstance(model.backbone, FCSiamBackbone)
    assert (model.variant, model.depth, model.widths, model.threshold) == ("diff", 2, [2, 4], 0.4)
    assert (model.in_channels, model.num_classes, model.alignment) == (3, 1, "keras")
    assert model.preprocessor.scaling == "unit" and model.preprocessor.pixel_dtype == "uint8"
    np.testing.assert_allclose(
        model.predict(inputs(old), verbose=0), np.asarray(old["probability"]), atol=1e-6
    )
    # Compiled as saved: the recipe's optimizer with its trained state, the fitted weight.
    assert model.loss.pos_weight == pytest.approx(old["pos_weight"])
    assert int(model.optimizer.iterations) == 1
    assert recipe.epoch_schedule(model.optimizer).steps_per_epoch == 1


def test_an_old_file_saved_again_is_written_in_the_new_format(old, tmp_path):
    model = load_change_model(write_archive(old, tmp_path / "old.keras"))
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as archive:
        config = json.loads(archive.read("config.json"))["config"]
    assert config["backbone"]["class_name"] == "FCSiamBackbone"
    assert "variant" not in config and "filters" not in config  # said once, in the backbone
    again = load_change_model(tmp_path / "new.keras")
    np.testing.assert_allclose(
        again.predict(inputs(old), verbose=0), np.asarray(old["probability"]), atol=1e-6
    )


def test_an_old_config_dict_revives_through_from_config_and_the_registry(old):
    stored = old["config"]
    expected = SiameseChangeModel(
        variant="diff", depth=2, filters=2, threshold=0.4, num_classes=1, alignment="keras"
    )
    model = SiameseChangeModel.from_config(dict(stored["config"]))
    assert model.backbone.get_config() == expected.backbone.get_config()
    assert model.threshold == 0.4
    assert model.preprocessor.get_config() == {
        **expected.preprocessor.get_config(),
        "scaling": "unit",
        "pixel_dtype": "uint8",
    }
    revived = keras.saving.deserialize_keras_object(
        {k: stored[k] for k in ("module", "class_name", "config", "registered_name")}
    )
    assert type(revived) is SiameseChangeModel
    assert revived.get_config() == model.get_config()


def test_configs_from_before_the_published_defaults_keep_the_head_and_grid_they_had(old):
    """Files saved when the default head was a sigmoid on Keras's grid, some from before the
    settings existed at all, are read with those values, not with today's defaults."""
    legacy = {
        k: v for k, v in old["config"]["config"].items() if k not in ("num_classes", "alignment")
    }
    model = SiameseChangeModel.from_config(legacy)
    assert (model.num_classes, model.alignment) == (1, "keras")
    backbone = FCSiamBackbone(depth=2, filters=2, num_classes=1, alignment="keras").get_config()
    for key in ("num_classes", "alignment"):
        del backbone[key]
    revived = FCSiamBackbone.from_config(backbone)
    assert (revived.num_classes, revived.alignment) == (1, "keras")
    assert (FCSiamBackbone(depth=2).num_classes, FCSiamBackbone(depth=2).alignment) == (2, "torch")
