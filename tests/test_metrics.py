import numpy as np
import pytest

from siamese_cd.models.metrics import ChangeMetrics, scores_from_counts
from tests.testing import TestCase


def masks(values):
    return np.array(values, np.float32).reshape(1, -1, 1, 1)


# 10 pixels: tp=3 (1,1), fp=2 (0,1), fn=1 (1,0), tn=4 (0,0).
TRUTH = masks([1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
PROBS = masks([0.9, 0.6, 0.5, 0.7, 0.51, 0.49, 0.1, 0.0, 0.2, 0.3])


def result(metric):
    return {k: float(v) for k, v in metric.result().items()}


class TestChangeMetrics(TestCase):
    def test_scores_match_hand_computed_counts(self):
        metric = ChangeMetrics()
        metric.update_state(TRUTH, PROBS)
        assert metric.confusion() == {"tp": 3.0, "fp": 2.0, "fn": 1.0, "tn": 4.0}
        scores = result(metric)
        assert scores["precision"] == pytest.approx(3 / 5)
        assert scores["recall"] == pytest.approx(3 / 4)
        assert scores["f1"] == pytest.approx(6 / 9)
        assert scores["iou"] == pytest.approx(3 / 6)
        assert scores["overall_accuracy"] == pytest.approx(7 / 10)
        # Cohen's kappa: po = 0.7, pe = (5*4 + 5*6) / 100 = 0.5.
        assert scores["kappa"] == pytest.approx((0.7 - 0.5) / (1 - 0.5))

    def test_counts_accumulate_over_batches_not_averaged(self):
        split = ChangeMetrics()
        # Batch 1 holds every true positive; batch 2 only false positives.
        split.update_state(masks([1, 1, 0]), masks([0.9, 0.9, 0.1]))
        split.update_state(masks([0, 0, 0]), masks([0.9, 0.2, 0.2]))
        assert split.confusion() == {"tp": 2.0, "fp": 1.0, "fn": 0.0, "tn": 3.0}
        assert result(split)["f1"] == pytest.approx(4 / 5)  # not the mean of 1.0 and 0.0

    def test_threshold(self):
        metric = ChangeMetrics(threshold=0.8)
        metric.update_state(TRUTH, PROBS)
        assert metric.confusion() == {"tp": 1.0, "fp": 0.0, "fn": 3.0, "tn": 6.0}

    def test_two_class_softmax_uses_channel_one(self):
        truth = np.array([1, 0], np.float32).reshape(1, 1, 2, 1)
        scores = np.array([[0.2, 0.8], [0.7, 0.3]], np.float32).reshape(1, 1, 2, 2)
        metric = ChangeMetrics()
        metric.update_state(truth, scores)
        assert metric.confusion() == {"tp": 1.0, "fp": 0.0, "fn": 0.0, "tn": 1.0}

    def test_all_negative_is_zero_not_nan(self):
        metric = ChangeMetrics()
        metric.update_state(masks([0, 0, 0, 0]), masks([0.1, 0.2, 0.3, 0.4]))
        scores = result(metric)
        assert not any(np.isnan(v) for v in scores.values())
        assert scores == {
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "iou": 0.0,
            "overall_accuracy": 1.0,
            "kappa": 0.0,
        }

    def test_predicted_change_with_none_true(self):
        metric = ChangeMetrics()
        metric.update_state(masks([0, 0]), masks([0.9, 0.1]))
        scores = result(metric)
        assert scores["precision"] == 0.0 and scores["recall"] == 0.0
        assert scores["overall_accuracy"] == pytest.approx(0.5)

    def test_sample_weight_per_sample(self):
        truth = np.concatenate([masks([1, 0]), masks([1, 0])])
        probs = np.concatenate([masks([0.9, 0.9]), masks([0.1, 0.1])])
        metric = ChangeMetrics()
        metric.update_state(truth, probs, sample_weight=np.array([1.0, 0.0]))
        assert metric.confusion() == {"tp": 1.0, "fp": 1.0, "fn": 0.0, "tn": 0.0}

    def test_reset(self):
        metric = ChangeMetrics()
        metric.update_state(TRUTH, PROBS)
        metric.reset_state()
        assert metric.confusion() == {"tp": 0.0, "fp": 0.0, "fn": 0.0, "tn": 0.0}

    def test_counts_stay_exact_beyond_float32(self):
        metric = ChangeMetrics()
        ones = np.ones((1, 4096, 4096, 1), np.float32)  # 2**24 pixels per update
        metric.update_state(ones, ones)
        metric.update_state(ones[:, :1, :1], ones[:, :1, :1])
        assert metric.confusion()["tp"] == 2**24 + 1

    def test_scores_from_numpy_counts(self):
        scores = scores_from_counts(np.float64(3), np.float64(2), np.float64(1), np.float64(4))
        assert float(scores["f1"]) == pytest.approx(2 / 3)

    def test_serialization(self):
        revived = self.run_serialization_test(ChangeMetrics(threshold=0.3))
        assert revived.threshold == 0.3
