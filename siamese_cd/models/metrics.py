"""Change-class metrics computed from confusion counts accumulated over a whole epoch.

Averaging per-batch F1 scores is biased toward batches with little change; summing true and
false positives and negatives over every pixel first (micro averaging) is the protocol of the
published results.
"""

from __future__ import annotations

import keras
from keras import ops

from siamese_cd.models.losses import change_probability

SCORE_NAMES = ("precision", "recall", "f1", "iou", "overall_accuracy", "kappa")


def scores_from_counts(tp, fp, fn, tn) -> dict:
    """Change-class scores from confusion counts; tensors or NumPy scalars.

    A ratio whose denominator is zero is 0: with no change in the truth and none predicted,
    precision, recall, F1, IoU and kappa are 0 and overall accuracy is 1.
    """
    total = tp + fp + fn + tn
    precision = ops.divide_no_nan(tp, tp + fp)
    recall = ops.divide_no_nan(tp, tp + fn)
    f1 = ops.divide_no_nan(2 * tp, 2 * tp + fp + fn)
    iou = ops.divide_no_nan(tp, tp + fp + fn)
    accuracy = ops.divide_no_nan(tp + tn, total)
    expected = ops.divide_no_nan((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), total * total)
    kappa = ops.divide_no_nan(accuracy - expected, 1 - expected)
    return dict(zip(SCORE_NAMES, (precision, recall, f1, iou, accuracy, kappa)))


@keras.saving.register_keras_serializable(package="siamese_cd")
class ChangeMetrics(keras.metrics.Metric):
    """Precision, recall, F1, IoU, overall accuracy and Cohen's kappa of the change class.

    The four confusion counts are summed over every pixel seen since the last reset, in
    float64 so that counts stay exact far beyond a float32's 2**24. `result()` returns a dict,
    which Keras logs as separate entries: ``f1`` in training and ``val_f1`` in validation.

    Args:
        threshold: probability at or above which a pixel is predicted as change.
        name: name of the metric.
        dtype: dtype of the results.

    Example:
        >>> import numpy as np
        >>> m = ChangeMetrics()
        >>> m.update_state(np.array([[[[1.0]], [[0.0]]]]), np.array([[[[0.9]], [[0.8]]]]))
        >>> {k: round(float(v), 2) for k, v in m.result().items()}["precision"]
        0.5
    """

    def __init__(self, threshold: float = 0.5, name: str = "change_metrics", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.counts = {
            key: self.add_variable(shape=(), initializer="zeros", dtype="float64", name=key)
            for key in ("tp", "fp", "fn", "tn")
        }

    def update_state(self, y_true, y_pred, sample_weight=None):
        predicted = change_probability(y_pred) >= self.threshold
        actual = ops.convert_to_tensor(y_true) >= 0.5
        if sample_weight is None:
            counts = _pixel_counts(predicted, actual)
        else:
            counts = _weighted_counts(predicted, actual, sample_weight)
        for key, count in counts.items():
            self.counts[key].assign_add(count)

    def result(self) -> dict:
        scores = scores_from_counts(*(self.counts[k] for k in ("tp", "fp", "fn", "tn")))
        return {name: ops.cast(value, self.dtype) for name, value in scores.items()}

    def confusion(self) -> dict[str, float]:
        """The accumulated counts ``{"tp", "fp", "fn", "tn"}`` as Python floats."""
        return {k: float(ops.convert_to_numpy(v)) for k, v in self.counts.items()}

    def reset_state(self) -> None:
        for variable in self.counts.values():
            variable.assign(0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


def _pixel_counts(predicted, actual) -> dict:
    """The confusion counts of boolean maps, counted in int32 (exact up to 2**31 pixels per
    batch) and returned as float64: a few passes over one-byte masks, where products and sums
    of float64 indicators took a dozen over eight-byte ones in every training step."""

    def count(mask):
        return ops.cast(ops.sum(ops.cast(mask, "int32")), "float64")

    both = ops.logical_and(predicted, actual)
    tp = count(both)
    fp = count(ops.logical_and(predicted, ops.logical_not(actual)))
    fn = count(ops.logical_and(ops.logical_not(predicted), actual))
    pixels = ops.cast(ops.size(both), "float64")  # of the shape both broadcast to
    return {"tp": tp, "fp": fp, "fn": fn, "tn": pixels - tp - fp - fn}


def _weighted_counts(predicted, actual, sample_weight) -> dict:
    """The confusion counts with per-sample (B,) or per-pixel (B, H, W) weights, which
    broadcast over the mask, summed in float64."""
    predicted, actual = ops.cast(predicted, "float64"), ops.cast(actual, "float64")
    weight = ops.cast(sample_weight, "float64")
    while len(weight.shape) < len(actual.shape):
        weight = ops.expand_dims(weight, -1)
    weight = ops.ones_like(actual) * weight
    indicators = {
        "tp": predicted * actual,
        "fp": predicted * (1 - actual),
        "fn": (1 - predicted) * actual,
        "tn": (1 - predicted) * (1 - actual),
    }
    return {key: ops.sum(indicator * weight) for key, indicator in indicators.items()}
