"""Choosing the decision threshold on validation data, beyond the paper's fixed 0.5.

A class-weighted loss shifts probabilities toward change, so 0.5 is rarely the threshold with
the best change F1. `choose_threshold` predicts the validation split once, accumulates
histograms of the change probability of changed and unchanged pixels, and takes the threshold
whose F1 is highest. The model stores it (`threshold` in its config), and its metrics,
`evaluate` and `predict` then use it.

Example:
    >>> import numpy as np
    >>> probability = np.array([0.1, 0.3, 0.35, 0.8, 0.2])
    >>> truth = np.array([0, 1, 1, 1, 0])
    >>> counts = ThresholdCounts(bins=100)
    >>> counts.update(truth, probability)
    >>> threshold, f1 = counts.best()
    >>> round(threshold, 2), round(f1, 3)
    (0.3, 1.0)
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm


class ThresholdCounts:
    """Histograms of the change probability of changed and unchanged pixels.

    Args:
        bins: candidate thresholds are ``k / bins`` for k in 1 .. bins - 1.
    """

    def __init__(self, bins: int = 1000):
        self.bins = bins
        self.changed = np.zeros(bins + 1, np.int64)
        self.unchanged = np.zeros(bins + 1, np.int64)

    def update(self, truth: np.ndarray, probability: np.ndarray) -> None:
        """Add pixels: 0/1 truth and change probabilities of the same shape."""
        index = np.clip(np.floor(np.asarray(probability) * self.bins), 0, self.bins).astype(int)
        changed = np.asarray(truth) >= 0.5
        self.changed += np.bincount(index[changed], minlength=self.bins + 1)
        self.unchanged += np.bincount(index[~changed], minlength=self.bins + 1)

    def f1_per_threshold(self) -> np.ndarray:
        """Change F1 at each threshold ``k / bins``: pixels in bins ``>= k`` are change."""
        tp = np.cumsum(self.changed[::-1])[::-1]
        fp = np.cumsum(self.unchanged[::-1])[::-1]
        fn = self.changed.sum() - tp
        return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(tp)), where=tp > 0)

    def best(self) -> tuple[float, float]:
        """The threshold with the highest F1 (the one nearest 0.5 among equals), and its F1."""
        f1 = self.f1_per_threshold()[1:-1]
        thresholds = np.arange(1, self.bins) / self.bins
        candidates = np.flatnonzero(f1 == f1.max())
        k = candidates[np.argmin(np.abs(thresholds[candidates] - 0.5))]
        return float(thresholds[k]), float(f1[k])


def choose_threshold(model, data, bins: int = 1000, progress: bool = True) -> tuple[float, float]:
    """Set `model`'s decision threshold to the one with the best change F1 on `data`.

    Args:
        model: a `SiameseChangeModel`.
        data: labelled batches ``((t1, t2), mask)``: a `PairedImageDataset` or a
            `tf.data.Dataset`.
        bins: resolution of the candidate thresholds.
        progress: show a progress bar.

    Returns:
        ``(threshold, f1)`` on `data`.
    """
    counts = ThresholdCounts(bins)
    batches = (data[i] for i in range(len(data))) if hasattr(data, "__getitem__") else data
    total = len(data) if hasattr(data, "__len__") else None
    for batch in tqdm(
        batches, total=total, desc="Choosing the threshold", unit="batch", disable=not progress
    ):
        x, mask = batch[0], batch[1]
        probability = np.asarray(model.predict_on_batch(x))
        if probability.shape[-1] == 2:
            probability = probability[..., 1:]
        counts.update(np.asarray(mask), probability)
    threshold, f1 = counts.best()
    model.set_threshold(threshold)
    return threshold, f1
