"""Building blocks of the FC-EF / FC-Siam networks: conv units, encoder, decoder, padding.

Everything here is `keras.layers` and `keras.ops`, so the networks stay backend-neutral.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="siamese_cd")
class PadToMultiple(layers.Layer):
    """Zero-pad the bottom and right of NHWC images so height and width divide `multiple`.

    The U-Net needs sizes divisible by ``2**depth``; padding inside the model lets it take
    any size, and `CropLike` cuts the output back.
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, x):
        shape = ops.shape(x)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        return ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        batch, height, width, channels = input_shape
        return (batch, padded(height), padded(width), channels)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="siamese_cd")
class CropLike(layers.Layer):
    """Crop ``inputs[0]`` to the height and width of ``inputs[1]`` (top-left aligned)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def conv_unit(x, filters: int, dropout: float, batch_norm: bool, name: str):  # -> KerasTensor
    """3x3 'same' conv, then BatchNorm, ReLU and spatial dropout, as in the published networks."""
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    if batch_norm:
        # PyTorch's defaults, as in the published networks: moving statistics follow the
        # batches at 0.1 per step (Keras' 0.99 momentum lags for many epochs on small sets).
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout, name=f"{name}_drop")(x)
    return x


def build_encoder(
    in_channels: int,
    widths: Sequence[int],
    convs_per_level: Sequence[int],
    dropout: float,
    batch_norm: bool,
    name: str = "encoder",
) -> keras.Model:
    """The contracting path as a model of its own, so a siamese network can share its weights.

    Returns:
        A model mapping an image (B, H, W, C) to ``[skip_1, ..., skip_depth, bottleneck]``:
        the features of each level before pooling, then the pooled features of the last level.
    """
    image = keras.Input((None, None, in_channels), name=f"{name}_input")
    x, skips = image, []
    for level, (width, convs) in enumerate(zip(widths, convs_per_level), start=1):
        for k in range(1, convs + 1):
            x = conv_unit(x, width, dropout, batch_norm, f"enc{level}_{k}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    return keras.Model(image, [*skips, x], name=name)


def decode(
    x,
    skips: Sequence[Sequence],
    widths: Sequence[int],
    convs_per_level: Sequence[int],
    dropout: float,
    batch_norm: bool,
    head_channels: int,
):  # -> KerasTensor
    """The expanding path: per level, deepest first, upsample, concatenate the skips, convolve.

    Each level's transposed conv keeps the channel count. Its convs keep the level's width and
    the last one narrows to the next level's width; at level 1 the last conv is the head,
    without BatchNorm or activation, returning logits.

    Args:
        x: the bottleneck features.
        skips: per level (shallowest first), the tensors concatenated after upsampling.
        widths: filters per level, shallowest first.
        convs_per_level: convs per level, shallowest first.
        dropout: spatial dropout rate after each conv unit.
        batch_norm: use BatchNorm in conv units.
        head_channels: channels of the logits.
    """
    depth = len(widths)
    for level in range(depth, 0, -1):
        channels = x.shape[-1]
        x = layers.Conv2DTranspose(channels, 3, strides=2, padding="same", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, *skips[level - 1]])
        convs = convs_per_level[level - 1]
        for k in range(1, convs + 1):
            last = k == convs
            if last and level == 1:
                # Logits in float32, so mixed precision keeps a stable head.
                return layers.Conv2D(
                    head_channels, 3, padding="same", name="head", dtype="float32"
                )(x)
            width = widths[level - 2] if last else widths[level - 1]
            x = conv_unit(x, width, dropout, batch_norm, f"dec{level}_{k}")
    raise AssertionError("unreachable: level 1 returns the head")
