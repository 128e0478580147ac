"""Choosing the decision threshold on validation data, stored with the model and used after."""

import keras
import numpy as np
import pytest

from siamese_cd import SiameseChangeModel
from siamese_cd.errors import ConfigError
from siamese_cd.evaluation.threshold import ThresholdCounts, choose_threshold
from siamese_cd.models.losses import change_probability
from tests.testing import TestCase


def brute_force_f1(truth, probability, threshold):
    changed = probability >= threshold
    tp = np.sum(changed & truth)
    fp = np.sum(changed & ~truth)
    fn = np.sum(~changed & truth)
    return 2 * tp / (2 * tp + fp + fn)


class TestThreshold(TestCase):
    def test_histogram_f1_equals_brute_force_at_every_candidate(self):
        rng = np.random.default_rng(0)
        truth = rng.random(5000) < 0.1
        probability = np.clip(0.3 * truth + rng.random(5000) * 0.7, 0, 1)
        counts = ThresholdCounts(bins=50)
        counts.update(truth[:2000], probability[:2000])  # in two parts, as over batches
        counts.update(truth[2000:], probability[2000:])
        f1 = counts.f1_per_threshold()
        for k in (5, 17, 25, 40):
            # Probabilities on a bin edge are avoided by the random draw.
            assert f1[k] == pytest.approx(brute_force_f1(truth, probability, k / 50))
        best, best_f1 = counts.best()
        candidates = [brute_force_f1(truth, probability, k / 50) for k in range(1, 50)]
        assert best_f1 == pytest.approx(max(candidates))
        assert best == pytest.approx((1 + int(np.argmax(candidates))) / 50)

    def test_chosen_threshold_is_used_by_evaluate_and_saved(self, tmp_path):
        rng = np.random.default_rng(1)
        x = tuple(rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8) for _ in range(2))
        y = (rng.random((6, 16, 16, 1)) > 0.8).astype(np.float32)
        model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
        model.compile(optimizer="adam", loss="dice")
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
        threshold, f1 = choose_threshold(model, data, bins=100, progress=False)
        assert model.threshold == threshold and model.change_metrics.threshold == threshold
        # The change channel of the 2-class scores, as the threshold counts read it.
        probability = np.asarray(change_probability(model.predict(x, verbose=0)))
        expected = brute_force_f1(y.astype(bool), probability, threshold)
        assert f1 == pytest.approx(expected, abs=1e-6)
        assert model.evaluate(data, return_dict=True, verbose=0)["f1"] == pytest.approx(expected)
        model.save(tmp_path / "m.keras")
        assert keras.saving.load_model(tmp_path / "m.keras").threshold == threshold
        with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\)"):
            model.set_threshold(1.5)
