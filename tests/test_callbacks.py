import copy

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator

from siamese_cd.callbacks import MaskImageLogger, select_samples
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError
from siamese_cd.models.siamese import SiameseChangeModel
from tests.fakes import make_split


def read_images(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={TENSORS: 0})
    events.Reload()
    return events


def test_select_prefers_changed_samples(tmp_path):
    data = PairedImageDataset(make_split(tmp_path / "s", count=9), batch_size=4)
    t1, t2, masks = select_samples(data, max_samples=6)
    assert t1.shape == (6, 32, 32, 3) and masks.shape == (6, 32, 32, 1)
    assert all(m.any() for m in masks)  # 6 of the 9 samples contain change
    again = select_samples(data, max_samples=6)
    np.testing.assert_array_equal(again[0], t1)  # deterministic


def test_select_fills_with_unchanged_when_needed():
    masks = np.zeros((3, 4, 4, 1), np.float32)
    masks[1, 0, 0] = 1
    images = np.zeros((3, 4, 4, 3), np.float32)
    _, _, chosen = select_samples((images, images, masks), max_samples=3)
    assert chosen.shape[0] == 3 and chosen[0].any() and not chosen[1:].any()


def test_select_refuses_bad_data(tmp_path):
    with pytest.raises(DatasetError, match="PairedImageDataset or"):
        select_samples(object(), max_samples=2)
    split = make_split(tmp_path / "s", count=2)
    unlabelled = PairedImageDataset(t1_dir=split / "time1", t2_dir=split / "time2")
    with pytest.raises(DatasetError, match="labelled"):
        select_samples(unlabelled, max_samples=2)


def test_logger_writes_png_panels_per_epoch(tmp_path):
    data = PairedImageDataset(make_split(tmp_path / "s", count=4), batch_size=2)
    model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit")
    model.compile(optimizer="adam")
    logger = MaskImageLogger(data, log_dir=tmp_path / "logs", max_samples=3)
    logger = copy.deepcopy(logger)  # Keras Tuner copies callbacks per trial
    model.fit(data, epochs=2, callbacks=[logger], verbose=0)

    events = read_images(tmp_path / "logs" / "images")
    tags = sorted(events.Tags()["tensors"])
    assert [t for t in tags if t.startswith("masks/")] == [
        "masks/sample_0",
        "masks/sample_1",
        "masks/sample_2",
    ]
    records = events.Tensors("masks/sample_0")
    assert [r.step for r in records] == [0, 1]
    # An image summary tensor is [width, height, png bytes...].
    values = records[-1].tensor_proto.string_val
    assert values[0] == b"192" and values[1] == b"32"  # six 32-px panels side by side
    png = tmp_path / "panel.png"
    png.write_bytes(values[2])
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (192, 32)
    assert "pr_curve/change/pr_curves" in tags


def test_every_n_epochs(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 3), dtype=np.float32)
    y = np.ones((2, 16, 16, 1), np.float32)
    y[:, :8] = 0
    model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit")
    model.compile(optimizer="adam")
    logger = MaskImageLogger((x, x, y), log_dir=tmp_path, every_n_epochs=2, max_samples=1)
    model.fit((x, x), y, epochs=4, callbacks=[logger], verbose=0)
    steps = [r.step for r in read_images(tmp_path / "images").Tensors("masks/sample_0")]
    assert steps == [1, 3]


def test_without_log_dir_writes_beside_the_tensorboard_callback(tmp_path):
    import keras

    data = PairedImageDataset(make_split(tmp_path / "s", count=2), batch_size=2)
    model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit")
    model.compile(optimizer="adam")
    logger = MaskImageLogger(data, max_samples=1)
    for run in ("trial_a", "trial_b"):  # as Keras Tuner does: a copy per trial, its own dir
        board = keras.callbacks.TensorBoard(str(tmp_path / run))
        model.fit(data, epochs=1, callbacks=[board, copy.deepcopy(logger)], verbose=0)
        events = read_images(tmp_path / run / "images")
        assert "masks/sample_0" in events.Tags()["tensors"]


def test_without_log_dir_or_tensorboard_is_an_error(tmp_path):
    from siamese_cd.errors import ConfigError

    data = PairedImageDataset(make_split(tmp_path / "s", count=2), batch_size=2)
    model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit")
    model.compile(optimizer="adam")
    with pytest.raises(ConfigError, match="keras.callbacks.TensorBoard"):
        model.fit(data, epochs=1, callbacks=[MaskImageLogger(data)], verbose=0)


def test_samples_are_held_as_raw_pixels_and_shown_converted(tmp_path):
    masks = np.zeros((2, 16, 16, 1), np.float32)
    masks[:, :4] = 1
    t1 = np.full((2, 16, 16, 3), 1000, np.uint16)
    t2 = np.full((2, 16, 16, 3), 30000, np.uint16)
    logger = MaskImageLogger((t1, t2, masks), log_dir=tmp_path, max_samples=2)
    assert logger.t1.dtype == np.uint16 and logger.t2.dtype == np.uint16  # never scaled
    seen = []

    class Recorder:
        def predict_on_batch(self, x):
            seen.append(x)
            return np.full((*x[0].shape[:3], 1), 0.9, np.float32)

    logger.set_model(Recorder())
    logger.on_train_begin()
    logger.on_epoch_end(0)
    logger.on_train_end()
    np.testing.assert_array_equal(seen[0][1], t2)  # the model gets the stored pixels
    record = read_images(tmp_path / "images").Tensors("masks/sample_0")[0]
    png = tmp_path / "panel.png"
    png.write_bytes(record.tensor_proto.string_val[2])
    with Image.open(png) as image:
        panel = np.asarray(image.convert("RGB"))
    assert tuple(panel[8, 16 + 8]) == (117, 117, 117)  # t2: 30000 / 65535 of full brightness


def test_attach_to_takes_the_tensorboard_folder(tmp_path):
    import keras

    from siamese_cd.errors import ConfigError

    x = np.zeros((1, 16, 16, 3), np.uint8)
    logger = MaskImageLogger((x, x, np.ones((1, 16, 16, 1), np.float32)))
    with pytest.raises(ConfigError, match="keras.callbacks.TensorBoard"):
        logger.target_dir()
    board = keras.callbacks.TensorBoard(str(tmp_path / "trial_7"))
    logger.attach_to([logger, board])
    assert logger.target_dir() == tmp_path / "trial_7"
    logger.attach_to([logger])
    with pytest.raises(ConfigError):
        logger.target_dir()
    given = MaskImageLogger((x, x, np.ones((1, 16, 16, 1), np.float32)), log_dir=tmp_path)
    given.attach_to([board])
    assert given.target_dir() == tmp_path  # an explicit log_dir wins


def test_bad_rgb_bands_fail_at_construction(tmp_path):
    data = PairedImageDataset(make_split(tmp_path / "s", count=2), batch_size=2)
    with pytest.raises(ValueError, match="does not fit 3 bands"):
        MaskImageLogger(data, log_dir=tmp_path, rgb_bands=(0, 1, 5))
