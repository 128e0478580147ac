"""End to end: synthetic data -> training -> TensorBoard logs -> test scores."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
from tensorboard.util import tensor_util

from siamese_cd import PairedImageDataset, SiameseChangeModel
from siamese_cd.cli import main
from siamese_cd.data.synthetic import make_synthetic_dataset
from siamese_cd.training import paper_optimizer


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
    model = SiameseChangeModel(depth=3, filters=8)
    model.compile(optimizer=paper_optimizer(len(train), 2e-3))
    model.loss.resolve_auto(train, verbose=False)  # so evaluate() works before fit()
    before = model.evaluate(val, return_dict=True, verbose=0)["f1"]
    history = model.fit(train, validation_data=val, epochs=8, verbose=0)
    after = model.evaluate(val, return_dict=True, verbose=0)["f1"]
    assert after == pytest.approx(history.history["val_f1"][-1], abs=1e-6)
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
            "--logdir", str(logdir), "--depth", "2", "--filters", "4",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Test split (24 pairs, whole images, threshold 0.5)" in printed
    for name in ("precision", "recall", "f1", "iou"):
        assert f" {name} 0." in printed or f" {name} 1.0000" in printed
    assert (logdir / "model.keras").is_file()

    _, val_f1 = scalar_values(logdir / "validation", "epoch_f1")
    assert len(val_f1) == 2 and all(0.0 <= v <= 1.0 for v in val_f1)
    _, losses = scalar_values(logdir / "train", "epoch_loss")
    assert len(losses) == 2
    events = EventAccumulator(str(logdir / "images"), size_guidance={TENSORS: 0})
    events.Reload()
    assert "masks/sample_0" in events.Tags()["tensors"]
    assert [e.step for e in events.Tensors("masks/sample_0")] == [0, 1]


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
