"""The library's model built and trained in float64, for `reference_parity.py`.

``keras.config.set_floatx("float64")`` (and the float64 dtype policy) makes every layer built
without an explicit dtype compute and store in float64: Conv2D, Conv2DTranspose,
BatchNormalization and MaxPooling2D all have float64 CPU kernels in TensorFlow 2.21, forward
and backward, and the loss and Adam's moments follow. Three places of the library pin float32
on purpose (mixed precision keeps a stable head and exact input statistics that way), and
would leave float32 rounding inside a float64 run:

- the head conv (``Conv2D(..., dtype="float32")`` in `siamese_cd.models.blocks`) and the
  probability head (``Activation`` or ``TwoClassSoftmax(..., dtype="float32")`` in
  `SiameseChangeModel`): while `float64_keras` builds the model, these are subclasses that
  read an explicit float32 as float64;
- `ChangePreprocessor`, which always computes in float32: the model's preprocessor is
  replaced by `Float64PerImage`, the same per-image standardisation
  (`standardize_each_image`) in float64;
- `EpochDecay`'s learning rate is the optimizer's float32 variable (1e-3 · 0.95^k computed
  in float64 and rounded once, up to 6e-8 from the float64 value): the PyTorch side is
  given that same rate.

and float64 showed one more rounding, in the recipe's arithmetic rather than its storage:
`CoupledAdam` computed the bias corrections ``1 - beta**t`` from
``ops.cast(self.beta_1, dtype)``, and a cast of a Python float makes a float32 tensor first,
so the betas were 0.9 and 0.999 rounded to float32 (1 - beta_2 off by 1.3e-5): every step
was about 6.7e-6 shorter than PyTorch's. `exact_betas_of` gives them as float64 NumPy
numbers, which the cast keeps exact. `CoupledAdam` now computes the corrections in float64
itself, so with or without it the step is PyTorch's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import keras
import numpy as np
from keras import ops

from siamese_cd.models import siamese
from siamese_cd.models.preprocessing import standardize_each_image

# Relative spacing of float64 numbers near 1.
FLOAT64_SPACING = float(np.finfo(np.float64).eps)


def _widened(cls: type) -> type:
    """`cls` with an explicit ``dtype="float32"`` read as float64."""

    class Widened(cls):
        def __init__(self, *args, dtype=None, **kwargs):
            super().__init__(*args, dtype="float64" if dtype == "float32" else dtype, **kwargs)

    Widened.__name__ = Widened.__qualname__ = cls.__name__
    return Widened


@contextlib.contextmanager
def float64_keras() -> Iterator[None]:
    """Within the block, Keras builds and computes in float64, the library's float32 pins
    included; the previous floatx and dtype policy come back after it."""
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        with (
            mock.patch.object(keras.layers, "Conv2D", _widened(keras.layers.Conv2D)),
            mock.patch.object(keras.layers, "Activation", _widened(keras.layers.Activation)),
            mock.patch.object(siamese, "TwoClassSoftmax", _widened(siamese.TwoClassSoftmax)),
        ):
            yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


class Float64PerImage:
    """Stands in for a model's `ChangePreprocessor` (``"per_image"``): each image
    standardised over its pixels and bands, in float64."""

    pending = False
    scaling = "per_image"
    pixel_dtype = "uint8"

    def __call__(self, images):
        return standardize_each_image(ops.cast(images, "float64"))


def use_float64_inputs(model) -> None:
    """Give `model` the float64 per-image standardisation instead of its preprocessor."""
    # Set around Keras's attribute tracking: the stand-in holds no state to track.
    object.__setattr__(model, "preprocessor", Float64PerImage())


def exact_betas_of(optimizer) -> None:
    """Adam's betas as float64 NumPy numbers, so ``ops.cast`` keeps them exact."""
    optimizer.beta_1 = np.float64(optimizer.beta_1)
    optimizer.beta_2 = np.float64(optimizer.beta_2)


def check_float64(model) -> None:
    """Every variable of the network is float64 and so is the output: no float32 is left
    (the replaced preprocessor's unused statistics aside)."""
    narrow = [v.path for v in model.backbone.variables if v.dtype != "float64"]
    pixels = np.zeros((1, 32, 32, model.in_channels), np.uint8)
    output = model((pixels, pixels), training=False)
    if narrow or keras.backend.standardize_dtype(output.dtype) != "float64":
        raise RuntimeError(f"not float64: {narrow[:5]}, output {output.dtype}")
