"""Losses for change masks, taking ``(mask, probabilities)`` like the model's output.

All are serializable and take either a sigmoid map (B, H, W, 1) or 2-class softmax scores
(B, H, W, 2), whose channel 1 is change. `get_loss` builds them, and their sums, from names
such as ``"bce+dice"``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

from siamese_cd.errors import ConfigError
from siamese_cd.hints import option_hint
from siamese_cd.models.loss_names import LOSS_NAMES, is_loss_name

_EPSILON = 1e-7
NORMALIZATIONS = ("pixels", "weights")


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
            "the training masks must contain both change and no-change pixels. If your masks "
            "mark change with values below the label threshold (default 128), lower it: "
            f"{option_hint('label_threshold=', '--label-threshold')}; "
            "`siamese-cd check DATA` lists such masks"
        )
    return (1 - change_fraction) / change_fraction


@keras.saving.register_keras_serializable(package="siamese_cd")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with the change class weighted by `pos_weight`.

    Per pixel, ``w * bce`` with ``w = pos_weight`` for change and 1 for no-change. The batch's
    loss is either the mean over its pixels (``normalize="pixels"``, Keras's reduction), or
    the sum divided by the batch's sum of weights (``normalize="weights"``), as the class
    weighted NLL of the published PyTorch code does: there, a batch rich in change weighs no
    more than one without.

    Args:
        pos_weight: weight of change pixels relative to no-change ones, or ``"auto"`` to take
            ``(1 - p) / p`` from the training set's change fraction ``p`` when
            `SiameseChangeModel.fit` starts (the class balance of the published training),
            whatever the input pipeline.
        normalize: ``"pixels"`` or ``"weights"`` (see above).
        name: name of the loss.
        **kwargs: `reduction` or `dtype`, passed to `keras.losses.Loss`.

    Example:
        >>> import numpy as np
        >>> y = np.array([[1.0], [0.0]])
        >>> p = np.array([[0.5], [0.5]])
        >>> round(float(WeightedBinaryCrossentropy(4.0, "pixels")(y, p)), 4)  # (4 + 1) ln 2 / 2
        1.7329
        >>> round(float(WeightedBinaryCrossentropy(4.0, "weights")(y, p)), 4)  # (4 + 1) ln 2 / 5
        0.6931
    """

    def __init__(
        self,
        pos_weight: float | str = "auto",
        normalize: str = "pixels",
        name: str = "weighted_bce",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if pos_weight != "auto" and not float(pos_weight) > 0:
            raise ConfigError(f"pos_weight must be positive or 'auto', got {pos_weight!r}")
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.pos_weight = pos_weight if pos_weight == "auto" else float(pos_weight)
        self.normalize = normalize

    @property
    def auto_pending(self) -> bool:
        """True while ``pos_weight="auto"`` waits for the training data."""
        return self.pos_weight == "auto"

    def call(self, y_true, y_pred):
        if self.pos_weight == "auto":
            raise ConfigError(
                "the loss weight pos_weight='auto' is not known yet: SiameseChangeModel.fit "
                "reads it from the training data. Before fit (e.g. in evaluate), set "
                "loss.pos_weight = pos_weight_from_fraction(change_fraction(train_data)), or "
                "compile with loss=WeightedBinaryCrossentropy(pos_weight=...)"
            )
        p = ops.clip(change_probability(y_pred), _EPSILON, 1 - _EPSILON)
        y = ops.cast(y_true, p.dtype)
        weight = 1 + (self.pos_weight - 1) * y
        loss = -weight * (y * ops.log(p) + (1 - y) * ops.log(1 - p))
        if self.normalize == "weights":
            # Keras's reduction divides by the pixel count; rescaling by count / sum(weights)
            # turns that mean into sum(loss) / sum(weights).
            count = ops.cast(ops.size(weight), p.dtype)
            loss = loss * ops.stop_gradient(count / ops.sum(weight))
        return ops.squeeze(loss, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "pos_weight": self.pos_weight, "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="siamese_cd")
class ClassWeightedNLL(keras.losses.Loss):
    """The published loss: ``torch.nn.NLLLoss(weight=w)`` of the 2-class log-probabilities.

    Per pixel ``-w[y] * log p[y]``, summed over the batch and divided by the batch's sum of
    ``w[y]`` (PyTorch's mean reduction with class weights). The class weights are
    ``[2p, 2(1 - p)]`` for the change fraction ``p``; after the division only their ratio
    counts, so `pos_weight` is ``(1 - p) / p``, the weight of change relative to no-change.
    Each class's probability is read from its own softmax channel (not as ``1 - p[1]``), so
    confident pixels keep their precision; a sigmoid map (B, H, W, 1) is read as
    ``[1 - p, p]``.

    Args:
        pos_weight: weight of change relative to no-change, or ``"auto"`` to take it from
            the training masks when `SiameseChangeModel.fit` starts.
        no_change_factor: multiplies the no-change weight (the public notebook's
            ``FP_MODIFIER``, 10 there, "use 1 if unsure"; 1 here as in the paper).
        name: name of the loss.
        **kwargs: `reduction` or `dtype`, passed to `keras.losses.Loss`.

    Example:
        >>> import numpy as np
        >>> y = np.array([[[[1.0], [0.0]]]])  # (1, 1, 2, 1): a change and a no-change pixel
        >>> p = np.array([[[[0.5, 0.5], [0.8, 0.2]]]])  # softmax scores, channel 1 change
        >>> loss = ClassWeightedNLL(pos_weight=3.0)  # (3 ln 2 + ln 1.25) / (3 + 1)
        >>> round(float(loss(y, p)), 4)
        0.5756
    """

    def __init__(
        self,
        pos_weight: float | str = "auto",
        no_change_factor: float = 1.0,
        name: str = "class_weighted_nll",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if pos_weight != "auto" and not float(pos_weight) > 0:
            raise ConfigError(f"pos_weight must be positive or 'auto', got {pos_weight!r}")
        if not float(no_change_factor) > 0:
            raise ConfigError(f"no_change_factor must be positive, got {no_change_factor!r}")
        self.pos_weight = pos_weight if pos_weight == "auto" else float(pos_weight)
        self.no_change_factor = float(no_change_factor)

    @property
    def auto_pending(self) -> bool:
        """True while ``pos_weight="auto"`` waits for the training data."""
        return self.pos_weight == "auto"

    def call(self, y_true, y_pred):
        if self.pos_weight == "auto":
            raise ConfigError(
                "the loss weight pos_weight='auto' is not known yet: SiameseChangeModel.fit "
                "reads it from the training data; before fit, compile with "
                "loss=ClassWeightedNLL(pos_weight=...)"
            )
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] == 2:
            no_change, change = y_pred[..., :1], y_pred[..., 1:]
        else:
            no_change, change = 1 - y_pred, y_pred
        y = ops.cast(y_true, y_pred.dtype)
        # A floor far below any probability a float32 softmax resolves only keeps log finite.
        p_true = ops.maximum(y * change + (1 - y) * no_change, 1e-30)
        weight = self.no_change_factor + (self.pos_weight - self.no_change_factor) * y
        # Keras divides the sum by the pixel count; count / sum(weights) makes it sum / weights.
        count = ops.cast(ops.size(weight), y_pred.dtype)
        loss = -weight * ops.log(p_true) * ops.stop_gradient(count / ops.sum(weight))
        return ops.squeeze(loss, axis=-1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "pos_weight": self.pos_weight,
            "no_change_factor": self.no_change_factor,
        }


@keras.saving.register_keras_serializable(package="siamese_cd")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss of the change class, per sample: ``1 - (2|P∩Y| + s) / (|P| + |Y| + s)``.

    Dice looks at the overlap of the change region only, so it is insensitive to how rare
    change is; `smooth` keeps samples without change defined (predicting none gives 0).

    Args:
        smooth: added to numerator and denominator.
        name: name of the loss.
        **kwargs: `reduction` or `dtype`, passed to `keras.losses.Loss`.

    Example:
        >>> import numpy as np
        >>> y = np.ones((1, 2, 2, 1), np.float32)
        >>> round(float(DiceLoss(smooth=0.0)(y, np.full_like(y, 0.5))), 4)  # 1 - 2*2/(2+4)
        0.3333
    """

    def __init__(self, smooth: float = 1.0, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        p = change_probability(y_pred)
        y = ops.cast(y_true, p.dtype)
        axes = tuple(range(1, len(p.shape)))
        overlap = ops.sum(p * y, axis=axes)
        total = ops.sum(p, axis=axes) + ops.sum(y, axis=axes)
        return 1 - (2 * overlap + self.smooth) / (total + self.smooth)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="siamese_cd")
class FocalLoss(keras.losses.Loss):
    """Binary focal loss (Lin et al. 2017), averaged over pixels.

    ``-alpha y (1-p)^gamma log p - (1-alpha) (1-y) p^gamma log(1-p)``: confident, correct
    pixels, most of them no-change, contribute little, so training focuses on hard ones.

    Args:
        alpha: weight of the change class in [0, 1]; 0.5 weights both classes equally.
        gamma: focusing exponent; 0 gives ``alpha``-weighted cross-entropy.
        name: name of the loss.
        **kwargs: `reduction` or `dtype`, passed to `keras.losses.Loss`.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, name: str = "focal", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0 <= alpha <= 1 or gamma < 0:
            raise ConfigError(f"focal loss needs 0 <= alpha <= 1 and gamma >= 0: {alpha}, {gamma}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        p = ops.clip(change_probability(y_pred), _EPSILON, 1 - _EPSILON)
        y = ops.cast(y_true, p.dtype)
        positive = -self.alpha * y * (1 - p) ** self.gamma * ops.log(p)
        negative = -(1 - self.alpha) * (1 - y) * p**self.gamma * ops.log(1 - p)
        return ops.squeeze(positive + negative, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="siamese_cd")
class SumOfLosses(keras.losses.Loss):
    """A weighted sum of losses, e.g. cross-entropy plus Dice.

    Args:
        losses: the parts, as loss objects or their serialized configs.
        weights: one weight per part; all 1 by default.
        name: name of the loss.
        **kwargs: `reduction` or `dtype`, passed to `keras.losses.Loss`.

    Example:
        >>> loss = SumOfLosses([WeightedBinaryCrossentropy(pos_weight=1.0), DiceLoss()])
    """

    def __init__(self, losses, weights=None, name: str = "sum_of_losses", **kwargs):
        super().__init__(name=name, **kwargs)
        self.losses = [
            keras.saving.deserialize_keras_object(part) if isinstance(part, dict) else part
            for part in losses
        ]
        self.weights = [1.0] * len(self.losses) if weights is None else [float(w) for w in weights]
        if not self.losses or len(self.weights) != len(self.losses):
            raise ConfigError(f"{len(self.losses)} losses and {len(self.weights)} weights")

    @property
    def auto_pending(self) -> bool:
        """True while a part waits for its ``pos_weight``."""
        return bool(pending_weight_losses(self))

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Each part reduces itself (Dice per sample, the others per pixel) before the sum.
        total = 0.0
        for weight, part in zip(self.weights, self.losses):
            total = total + weight * part(y_true, y_pred, sample_weight=sample_weight)
        return total

    def call(self, y_true, y_pred):
        raise NotImplementedError("SumOfLosses reduces each part in __call__")

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "losses": [keras.saving.serialize_keras_object(part) for part in self.losses],
            "weights": self.weights,
        }


# One class per name of `siamese_cd.models.loss_names`.
LOSS_CLASSES = dict(zip(LOSS_NAMES, (WeightedBinaryCrossentropy, DiceLoss, FocalLoss), strict=True))


def pending_weight_losses(loss) -> list[WeightedBinaryCrossentropy]:
    """The parts of `loss` (itself, or the parts of a sum) still waiting for ``pos_weight``.

    Example:
        >>> [type(part).__name__ for part in pending_weight_losses(get_loss("bce+dice"))]
        ['WeightedBinaryCrossentropy']
    """
    parts = loss.losses if isinstance(loss, SumOfLosses) else [loss]
    return [part for part in parts if getattr(part, "auto_pending", False)]


def weigh_pending(loss, fraction: Callable[[], float], verbose: bool = False) -> float | None:
    """Give the parts of `loss` waiting for ``pos_weight`` the weight of a change fraction.

    The one place that resolves ``pos_weight="auto"`` from training data: `SiameseChangeModel`'s
    ``fit``, the distributed loop and the tuner's export all call it. `fraction` is called only
    when a part waits (measuring it reads every mask). With `verbose` it says
    ``Change pixels weighted by W (from the training masks)``.

    Returns:
        The weight given, or None when no part waited.

    Example:
        >>> loss = get_loss("bce+dice")
        >>> weigh_pending(loss, lambda: 0.25)
        3.0
        >>> print(weigh_pending(loss, lambda: 0.5))  # nothing waits any more
        None
    """
    pending = pending_weight_losses(loss)
    if not pending:
        return None
    weight = pos_weight_from_fraction(fraction())
    for part in pending:
        part.pos_weight = weight
    if verbose:
        print(f"Change pixels weighted by {weight:.3f} (from the training masks)")
    return weight


def get_loss(spec: str | keras.losses.Loss) -> keras.losses.Loss:
    """A loss from a name: ``"bce"`` (class-weighted, ``pos_weight="auto"``), ``"dice"``,
    ``"focal"``, or a sum such as ``"bce+dice"``. Loss objects are returned as they are.

    Raises:
        ConfigError: for an unknown name.
    """
    if not isinstance(spec, str):
        return spec
    names = [name.strip() for name in spec.split("+")]
    if not is_loss_name(spec):
        raise ConfigError(
            f"unknown loss {spec!r}: use {', '.join(LOSS_NAMES)} or a sum such as 'bce+dice'"
        )
    parts = [LOSS_CLASSES[name]() for name in names]
    return parts[0] if len(parts) == 1 else SumOfLosses(parts, name=spec.replace("+", "_"))
