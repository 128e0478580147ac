"""End to end: synthetic data -> training -> TensorBoard logs -> test scores."""

import re

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
from tensorboard.util import tensor_util

from siamese_cd import PairedImageDataset, SiameseChangeModel
from siamese_cd.cli import main
from siamese_cd.data.synthetic.generate import make_synthetic_dataset
from siamese_cd.errors import TrainingError
from siamese_cd.evaluation.scores import evaluate
from siamese_cd.training.run import TrainSettings, train_on_folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(out, train=96, val=24, test=24, size=32, seed=0, progress=False)


@pytest.mark.slow
def test_training_raises_f1(synthetic):
    import keras

    keras.utils.set_random_seed(0)
    train = PairedImageDataset(
        synthetic / "train", batch_size=8, augment=True, shuffle=True, seed=0
    )
    val = PairedImageDataset(synthetic / "val", batch_size=8)
    model = SiameseChangeModel(depth=3, filters=8, preprocessing="unit")
    model.compile(learning_rate=2e-3)  # the recipe with another initial learning rate
    # evaluate() needs no loss, so it scores the untrained model.
    before = evaluate(model, val, progress=False).scores["f1"]
    history = model.fit(train, validation_data=val, epochs=8, verbose=0)
    after = model.evaluate(val, return_dict=True, verbose=0)["f1"]
    assert after == pytest.approx(history.history["val_f1"][-1], abs=1e-6)
    assert evaluate(model, val, progress=False).scores["f1"] == pytest.approx(after, abs=1e-5)
    assert after > before + 0.2, (before, after)
    assert history.history["loss"][-1] < history.history["loss"][0]


def scalar_values(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={TENSORS: 0})
    events.Reload()
    return events, [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]


@pytest.mark.slow
def test_train_command_writes_logs_model_and_test_scores(synthetic, tmp_path, capsys):
    logdir = tmp_path / "logs" / "run"
    code = main(
        [
            "train", str(synthetic), "--epochs", "2", "--batch-size", "8",
            "--logdir", str(logdir), "--depth", "2", "--filters", "4", "--crop-size", "16",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    # The threshold chosen on the validation split is saved with the model and scores the test.
    chosen = re.search(r"Decision threshold (0\.\d+) \(val_f1 [\d.]+ there\) saved", printed)
    assert chosen is not None, printed
    threshold = float(chosen.group(1))
    assert f"Test split (24 pairs, whole images, threshold {threshold:g})" in printed
    for name in ("precision", "recall", "f1", "iou"):
        assert f" {name} 0." in printed or f" {name} 1.0000" in printed
    assert (logdir / "model.keras").is_file()
    import keras

    saved = keras.saving.load_model(logdir / "model.keras")
    # The published network and scaling, the defaults.
    assert saved.preprocessor.scaling == "per_image"
    assert (saved.num_classes, saved.alignment) == (2, "torch")
    assert saved.threshold == pytest.approx(threshold, abs=5e-4)

    _, val_f1 = scalar_values(logdir / "validation", "epoch_f1")
    assert len(val_f1) == 2 and all(0.0 <= v <= 1.0 for v in val_f1)
    _, losses = scalar_values(logdir / "train", "epoch_loss")
    assert len(losses) == 2
    events = EventAccumulator(str(logdir / "images"), size_guidance={TENSORS: 0})
    events.Reload()
    assert "masks/sample_0" in events.Tags()["tensors"]
    assert [e.step for e in events.Tensors("masks/sample_0")] == [0, 1]


@pytest.mark.slow
def test_train_command_preprocessing_choice_is_saved_with_the_model(synthetic, tmp_path):
    import keras

    out = tmp_path / "best.keras"
    code = main(
        ["train", str(synthetic), "--epochs", "1", "--batch-size", "8", "--depth", "2",
         "--filters", "2", "--logdir", str(tmp_path / "run"), "--out", str(out),
         "--preprocessing", "standardize"]
    )  # fmt: skip
    assert code == 0
    preprocessor = keras.saving.load_model(out).preprocessor
    assert preprocessor.scaling == "standardize"
    assert np.asarray(preprocessor.mean).size == 3  # one mean per band, from DATA/train


def test_settings_and_options_are_one_or_the_other(tmp_path):
    from siamese_cd.errors import ConfigError

    with pytest.raises(ConfigError, match="not both"):
        train_on_folder(tmp_path, TrainSettings(epochs=1), depth=2)
    with pytest.raises(TypeError):
        train_on_folder(tmp_path, epochs=1, no_such_option=2)
    assert TrainSettings(epochs=1, log_dir=tmp_path).model_path == tmp_path / "model.keras"
    hparams = TrainSettings(epochs=1, filters=[4, 8], learning_rate=3e-4).hparams()
    assert hparams["filters"] == "4,8" and hparams["lr"] == 3e-4


def test_the_recipe_decides_the_model_and_refuses_a_loss_it_cannot_take(tmp_path, capsys):
    from siamese_cd.errors import ConfigError

    paper = TrainSettings(epochs=1)
    assert (paper.recipe, paper.loss) == ("paper", "auto")
    assert paper.model_arguments == {
        "num_classes": 2, "alignment": "torch", "preprocessing": "per_image"
    }  # fmt: skip
    assert paper.hparams()["preprocessing"] == "per_image"
    sigmoid = TrainSettings(epochs=1, recipe="sigmoid", loss="dice", preprocessing="unit")
    assert sigmoid.model_arguments == {
        "num_classes": 1, "alignment": "keras", "preprocessing": "unit"
    }  # fmt: skip
    with pytest.raises(ConfigError, match="--recipe sigmoid"):
        TrainSettings(epochs=1, loss="dice")
    with pytest.raises(ConfigError, match="recipe must be one of"):
        TrainSettings(epochs=1, recipe="auto")
    # The command line refuses before reading anything (the folder does not exist).
    assert main(["train", str(tmp_path / "none"), "--epochs", "1", "--loss", "dice"]) == 2
    assert "--recipe sigmoid" in capsys.readouterr().err


def test_hparams_record_every_setting_but_the_listed_exclusions():
    import dataclasses

    from siamese_cd.training.settings import HPARAM_EXCLUDED, HPARAM_RENAMES

    settings = TrainSettings(
        epochs=7, dropout=0.1, init="glorot", crop_size=64, augment=False, seed=3,
        precision="bfloat16", recipe="sigmoid", loss="bce+dice", early_stopping=None,
        bands=["B02", "B03"],
    )  # fmt: skip
    hparams = settings.hparams()
    names = [field.name for field in dataclasses.fields(TrainSettings)]
    assert set(HPARAM_EXCLUDED) <= set(names), "an exclusion names no setting"
    for name in names:
        shown = HPARAM_RENAMES.get(name, name)
        assert (shown in hparams) != (name in HPARAM_EXCLUDED), name
    assert all(reason for reason in HPARAM_EXCLUDED.values())  # each says why
    assert {k: hparams[k] for k in ("epochs", "dropout", "init", "crop_size", "augment")} == {
        "epochs": 7, "dropout": 0.1, "init": "glorot", "crop_size": 64, "augment": False
    }  # fmt: skip
    assert (hparams["seed"], hparams["precision"], hparams["loss"]) == (3, "bfloat16", "bce+dice")
    assert hparams["bands"] == "B02,B03" and hparams["early_stopping"] == 0  # None: never
    # What the dashboard takes: numbers, text and truth values only (None would be refused).
    assert all(isinstance(v, (bool, int, float, str)) for v in hparams.values())
    auto = TrainSettings(epochs=1).hparams()
    assert auto["precision"] in ("float32", "bfloat16", "float16")  # "auto" made concrete
    assert auto["crop_size"] == 0 and auto["bands"] == "all" and auto["lr"] > 0


def test_every_run_selects_by_the_one_monitor_name():
    """``"val_f1"`` is written once, as MONITOR; the training modules do not import in a circle."""
    import ast
    from pathlib import Path

    import siamese_cd
    from siamese_cd.training.settings import MONITOR

    package = Path(siamese_cd.__file__).parent
    written = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        written += [
            f"{path.relative_to(package)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value == MONITOR
        ]
    assert [place.split(":")[0] for place in written] == ["training/settings.py"], written
    imports = {}
    for name in ("training/run.py", "distributed/multi_worker.py", "training/pipeline.py"):
        tree = ast.parse((package / name).read_text())
        imports[name] = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "siamese_cd.distributed.multi_worker" in imports["training/run.py"]
    assert "siamese_cd.training.run" not in imports["distributed/multi_worker.py"]
    assert (
        not {"siamese_cd.training.run", "siamese_cd.distributed.multi_worker"}
        & imports["training/pipeline.py"]
    )


def test_train_command_names_a_missing_split(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert main(["train", str(tmp_path), "--epochs", "1"]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path) in error and "no val/ folder" in error


def test_train_command_refuses_orphans(synthetic, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    (data / "train" / "time2" / "00007.png").unlink()
    assert main(["train", str(data), "--epochs", "1"]) == 2
    error = capsys.readouterr().err
    assert str(data / "train" / "time1" / "00007.png") in error


def test_synth_command(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "d"), "--train", "2", "--val", "1", "--test", "0",
                 "--size", "16"]) == 0  # fmt: skip
    assert len(list((tmp_path / "d" / "train" / "label").glob("*.png"))) == 2
    assert main(["synth", str(tmp_path / "e"), "--size", "20"]) == 2
    assert "multiple of 16" in capsys.readouterr().err


@pytest.mark.slow
def test_nan_loss_stops_with_a_message_and_keeps_no_broken_state(synthetic, tmp_path):
    logdir = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"became NaN at epoch 1, batch \d+.*learning rate"):
        train_on_folder(
            synthetic, epochs=3, batch_size=8, log_dir=logdir, depth=2, filters=4,
            learning_rate=1e36, verbose=0,
        )  # fmt: skip
    assert not (logdir / "backup").exists()
    assert not (logdir / "model.keras").exists()


@pytest.mark.slow
def test_a_val_split_without_change_is_warned_and_val_loss_chooses_the_checkpoint(tmp_path, capsys):
    import json

    import keras
    from PIL import Image

    from siamese_cd.training.pipeline import checkpoint_and_stopper
    from tests.fakes import make_split

    data = tmp_path / "data"
    make_split(data / "train", count=4, seed=0)
    val = make_split(data / "val", count=2, seed=1)
    for label in (val / "label").iterdir():
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(label)
    logdir = tmp_path / "run"
    settings = TrainSettings(
        epochs=3, batch_size=2, log_dir=logdir, depth=2, filters=2, precision="float32",
        early_stopping=2, verbose=0,
    )  # fmt: skip
    with pytest.warns(UserWarning) as warned:
        result = train_on_folder(data, settings)
    (message,) = [str(w.message) for w in warned if "no change pixel" in str(w.message)]
    assert message.startswith(f"{val}: the validation split holds no change pixel")
    assert "follow val_loss instead" in message and "threshold stays 0.5" in message
    printed = capsys.readouterr().out
    # The best checkpoint is the epoch of the lowest val_loss, not epoch 1 by a tie at 0.
    losses = result.history["val_loss"]
    best = int(np.argmin(losses)) + 1
    assert f"Best checkpoint (val_loss, epoch {best}) saved" in printed
    record = json.loads((logdir / "model.best.json").read_text())
    assert record["monitor"] == "val_loss" and record["epoch"] == best
    assert record["best"] == pytest.approx(min(losses))
    # No threshold is chosen on a split without change; 0.5 is kept and said.
    assert "Decision threshold kept at 0.5: the validation split holds no change" in printed
    assert keras.saving.load_model(logdir / "model.keras").threshold == 0.5
    # Early stopping follows the same value.
    _, stopper = checkpoint_and_stopper(settings, "val_loss", resuming=False)
    assert (stopper.monitor, stopper.mode, stopper.patience) == ("val_loss", "min", 2)
