"""Test-time augmentation: average the change probability over the 8 flips and rotations.

Each batch is predicted 8 times, once per symmetry of the square (4 rotations by 90 degrees,
each with and without a left-right flip), every prediction is mapped back onto the input's
pixel grid, and the 8 probabilities are averaged. Both dates get the same transform. It costs
8 model calls per batch and is off by default; ``evaluate(..., tta=True)``,
``predict_scene(..., tta=True)`` and ``siamese-cd evaluate/predict --tta`` turn it on.

The sum is taken in float64, so a model whose output commutes with the transforms (a
pixelwise function, or a network symmetric by construction) gives back exactly its plain
prediction.

Example:
    >>> class Brighter:  # a pixelwise stand-in model: change where t2 is brighter
    ...     def predict_on_batch(self, inputs):
    ...         t1, t2 = inputs
    ...         return (t2.mean(-1, keepdims=True) > t1.mean(-1, keepdims=True)).astype("float32")
    >>> t1 = np.zeros((1, 8, 12, 3), np.uint8)
    >>> t2 = t1.copy()
    >>> t2[0, 2:5, 3:9] = 9
    >>> plain = Brighter().predict_on_batch((t1, t2))
    >>> bool((TestTimeAugmentation(Brighter()).predict_on_batch((t1, t2)) == plain).all())
    True
"""

from __future__ import annotations

import numpy as np

from siamese_cd.models.losses import change_probability

# (quarter turns, flipped) of the 8 symmetries of the square.
SYMMETRIES = tuple((turns, flip) for turns in range(4) for flip in (False, True))


def transform(batch: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """A (B, H, W, C) batch rotated by `turns` quarter turns, then flipped left-right."""
    out = np.rot90(batch, turns, axes=(1, 2))
    return out[:, :, ::-1] if flip else out


def untransform(batch: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """The inverse of `transform`: back onto the input's pixel grid."""
    out = batch[:, :, ::-1] if flip else batch
    return np.rot90(out, -turns, axes=(1, 2))


class TestTimeAugmentation:
    """A change model whose `predict_on_batch` averages the 8 flips and rotations.

    Returns (B, H, W, 1) float32 change probabilities whatever the model's head (sigmoid or
    2-class softmax). Other attributes (``in_channels``, ``threshold``, ...) are the model's.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict_on_batch(self, inputs) -> np.ndarray:
        t1, t2 = (np.asarray(x) for x in inputs)
        total = None
        for turns, flip in SYMMETRIES:
            # Contiguous copies: a model may not take negative strides.
            x1 = np.ascontiguousarray(transform(t1, turns, flip))
            x2 = np.ascontiguousarray(transform(t2, turns, flip))
            probability = change_probability(np.asarray(self.model.predict_on_batch((x1, x2))))
            back = untransform(probability.astype(np.float64), turns, flip)
            total = back if total is None else total + back
        return (total / len(SYMMETRIES)).astype(np.float32)


def with_tta(model, tta: bool):
    """`model` wrapped in `TestTimeAugmentation` if `tta`, else `model` itself."""
    return TestTimeAugmentation(model) if tta else model
