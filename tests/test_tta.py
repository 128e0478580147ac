"""Test-time augmentation: exact on models that commute with flips and rotations."""

import numpy as np

from siamese_cd.evaluation.inference import predict_scene
from siamese_cd.evaluation.scores import evaluate
from siamese_cd.evaluation.tta import SYMMETRIES, TestTimeAugmentation, transform, untransform
from tests.fakes import make_split


class Pixelwise:
    """A model computing a pixelwise function: it commutes with every symmetry."""

    in_channels = 3

    def __init__(self):
        self.calls = 0

    def predict_on_batch(self, inputs):
        self.calls += 1
        t1, t2 = (np.asarray(x, np.float32) for x in inputs)
        return 1 / (1 + np.exp(-(t2 - t1).mean(-1, keepdims=True) / 50))


class RowRamp:
    """A model that is not symmetric: probability grows down the rows."""

    def predict_on_batch(self, inputs):
        batch, height, width = inputs[0].shape[:3]
        rows = np.arange(height, dtype=np.float32)[:, None] / max(height - 1, 1)
        return np.broadcast_to(rows, (batch, height, width))[..., None].copy()


def batch(seed=0, shape=(2, 12, 20, 3)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, shape, np.uint8), rng.integers(0, 255, shape, np.uint8)


def test_the_8_symmetries_are_distinct_and_invert():
    x = np.arange(2 * 3 * 5 * 1).reshape(2, 3, 5, 1)
    images = {transform(x, t, f).tobytes() + bytes(transform(x, t, f).shape) for t, f in SYMMETRIES}
    assert len(SYMMETRIES) == 8 and len(images) == 8
    assert all(np.array_equal(untransform(transform(x, t, f), t, f), x) for t, f in SYMMETRIES)


def test_tta_equals_the_plain_prediction_of_a_pixelwise_model():
    model = Pixelwise()
    plain = model.predict_on_batch(batch())
    assert np.array_equal(TestTimeAugmentation(model).predict_on_batch(batch()), plain)
    assert model.calls == 1 + 8


def test_tta_averages_the_8_views_of_an_asymmetric_model():
    out = TestTimeAugmentation(RowRamp()).predict_on_batch(batch(shape=(1, 6, 6, 3)))
    # Rows, columns and their flips: every pixel averages 2 x (r + (5-r) + c + (5-c)) / 8 / 5.
    assert np.allclose(out, 0.5)


def test_evaluate_and_predict_scene_with_tta_equal_plain_for_a_pixelwise_model(tmp_path):
    from siamese_cd.data.pipeline.dataset import PairedImageDataset

    data = PairedImageDataset(make_split(tmp_path, count=3, size=32), batch_size=2)
    plain = evaluate(Pixelwise(), data, progress=False)
    tta = evaluate(Pixelwise(), data, progress=False, tta=True)
    assert plain.counts == tta.counts and tta.protocol["tta"] is True
    t1, t2 = batch(1, (40, 56, 3))
    assert np.array_equal(
        predict_scene(Pixelwise(), t1, t2, tile_size=32, overlap=8),
        predict_scene(Pixelwise(), t1, t2, tile_size=32, overlap=8, tta=True),
    )
