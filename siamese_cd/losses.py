"""Losses for change masks, taking ``(mask, probabilities)`` like the model's output."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from siamese_cd.errors import ConfigError

_EPSILON = 1e-7


def change_probability(y_pred):
    """The change probability (B, H, W, 1) from a sigmoid map or 2-class softmax scores."""
    return y_pred[..., -1:] if y_pred.shape[-1] == 2 else y_pred


def pos_weight_from_fraction(change_fraction: float) -> float:
    """Weight of the change class relative to no-change for a given change fraction ``p``.

    The paper weights no-change by ``2p`` and change by ``2(1 - p)``; only their ratio
    ``(1 - p) / p`` matters to Adam, and that is what this returns.

    Raises:
        ConfigError: if ``p`` is not strictly between 0 and 1.
    """
    if not 0 < change_fraction < 1:
        raise ConfigError(
            f"cannot weight classes from a change fraction of {change_fraction}: "
            "the training masks must contain both change and no-change pixels"
        )
    return (1 - change_fraction) / change_fraction


@keras.saving.register_keras_serializable(package="siamese_cd")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with the change class weighted by `pos_weight`.

    ``loss = -(pos_weight * y * log(p) + (1 - y) * log(1 - p))``, averaged over pixels.

    Args:
        pos_weight: weight of change pixels relative to no-change ones, or ``"auto"`` to take
            ``(1 - p) / p`` from the training set's change fraction ``p`` when
            `SiameseChangeModel.fit` starts (the class balance of the published training).
        name: name of the loss.
        **kwargs: `reduction` or `dtype`, passed to `keras.losses.Loss`.

    Example:
        >>> loss = WeightedBinaryCrossentropy(pos_weight=4.0)
        >>> y = np.array([[1.0], [0.0]])
        >>> p = np.array([[0.5], [0.5]])
        >>> round(float(loss(y, p)), 4)  # (4 * ln 2 + ln 2) / 2
        1.7329
    """

    def __init__(self, pos_weight: float | str = "auto", name: str = "weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        if pos_weight != "auto" and not float(pos_weight) > 0:
            raise ConfigError(f"pos_weight must be positive or 'auto', got {pos_weight!r}")
        self.pos_weight = pos_weight if pos_weight == "auto" else float(pos_weight)

    def resolve_auto(self, x, y=None, verbose: bool = True) -> float:
        """Set ``pos_weight`` from training data: a dataset with `change_fraction()`, or masks.

        Raises:
            ConfigError: if the change fraction cannot be read from `x` and `y`.
        """
        if hasattr(x, "change_fraction"):
            fraction = x.change_fraction(progress=verbose)
        elif y is not None and isinstance(y, np.ndarray):
            fraction = float(np.mean(y >= 0.5))
        else:
            raise ConfigError(
                "pos_weight='auto' reads the change fraction from the training data, which "
                f"works for a PairedImageDataset or NumPy masks, not {type(x).__name__}. "
                "Compile with loss=WeightedBinaryCrossentropy(pos_weight=...) instead."
            )
        self.pos_weight = pos_weight_from_fraction(fraction)
        if verbose:
            print(
                f"Change fraction of the training masks: {fraction:.4f}; "
                f"change pixels weighted by {self.pos_weight:.3f}"
            )
        return self.pos_weight

    def call(self, y_true, y_pred):
        if self.pos_weight == "auto":
            raise ConfigError(
                "the loss weight pos_weight='auto' is not known yet: SiameseChangeModel.fit "
                "reads it from the training data. Before fit (e.g. in evaluate), call "
                "model.loss.resolve_auto(train_dataset) or compile with "
                "loss=WeightedBinaryCrossentropy(pos_weight=...)"
            )
        p = ops.clip(change_probability(y_pred), _EPSILON, 1 - _EPSILON)
        y = ops.cast(y_true, p.dtype)
        loss = -(self.pos_weight * y * ops.log(p) + (1 - y) * ops.log(1 - p))
        return ops.squeeze(loss, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "pos_weight": self.pos_weight}
