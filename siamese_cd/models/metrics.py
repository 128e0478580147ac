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
        predicted = ops.cast(change_probability(y_pred) >= self.threshold, "float64")
        actual = ops.cast(ops.convert_to_tensor(y_true) >= 0.5, "float64")
        weight = ops.ones_like(actual)
        if sample_weight is not None:
            # Per-sample (B,) or per-pixel (B, H, W) weights broadcast over the mask.
            sample_weight = ops.cast(sample_weight, "float64")
            while len(sample_weight.shape) < len(actual.shape):
                sample_weight = ops.expand_dims(sample_weight, -1)
            weight = weight * sample_weight
        updates = {
            "tp": predicted * actual,
            "fp": predicted * (1 - actual),
            "fn": (1 - predicted) * actual,
            "tn": (1 - predicted) * (1 - actual),
        }
        for key, indicator in updates.items():
            self.counts[key].assign_add(ops.sum(indicator * weight))

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
