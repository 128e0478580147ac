"""Building blocks of the FC-EF / FC-Siam networks: conv units, encoder, decoder, padding.

Everything here is `keras.layers` and `keras.ops`, so the networks stay backend-neutral; the
one exception, BatchNorm as TensorFlow's fused op (`_fused_batch_norm`), is taken only on
TensorFlow, and the same layer computes with `keras.ops` elsewhere.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import keras
from keras import layers, ops

INITS = ("glorot", "torch")
# How the decoder lines its upsampled features up with the skips (see `decode`).
ALIGNMENTS = ("keras", "torch")


def initializers(init: str, fan_in: int) -> dict:
    """Initializer arguments of a conv layer: Keras's defaults, or PyTorch's.

    ``"glorot"``: Glorot-uniform kernels, zero biases (Keras). ``"torch"``: kernels and biases
    from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as `torch.nn.Conv2d` initialises them (kaiming
    uniform with a = sqrt(5)) in the published code.

    Example:
        >>> initializers("glorot", 27)
        {}
        >>> sorted(initializers("torch", 27))
        ['bias_initializer', 'kernel_initializer']
    """
    if init == "glorot":
        return {}
    if init != "torch":
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    bound = 1 / math.sqrt(fan_in)
    return {
        # limit sqrt(3 * scale / fan_in) = 1 / sqrt(fan_in)
        "kernel_initializer": keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
    }


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
        # Remainders of non-negative numbers only: ``(-size) % multiple`` is a floor modulo
        # of a negative number, which tf2onnx turns into ONNX's truncated one (a negative
        # pad, cropping instead of padding).
        pad_h = (self.multiple - shape[1] % self.multiple) % self.multiple
        pad_w = (self.multiple - shape[2] % self.multiple) % self.multiple
        padded = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        if x.shape[-1] is None:
            return padded
        # A pad by amounts known only at run time loses the static band count in
        # TensorFlow's graph, and the LiteRT converter needs it for the convolution after.
        return ops.reshape(padded, (shape[0], shape[1] + pad_h, shape[2] + pad_w, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        batch, height, width, channels = input_shape
        return (batch, padded(height), padded(width), channels)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="siamese_cd")
class TorchUpsampleAlign(layers.Layer):
    """PyTorch's strided transposed conv and replication padding, from Keras's ``"valid"`` one.

    ``inputs = [full, skip]``: `full` is ``Conv2DTranspose(3, strides=2, padding="valid")``
    of a side of n pixels, 2n + 1 pixels. PyTorch's ``ConvTranspose2d(3, stride=2,
    padding=1, output_padding=1)`` with the same kernel gives ``full[1:2n + 1]``, and the
    published networks then repeat its last row and column (``ReplicationPad2d``) up to the
    skip's side, 2n or 2n + 1: row ``j`` of the result is row ``min(j + 1, 2n)`` of `full`.
    Any height and width, also unknown until run time.
    """

    def call(self, inputs):
        full, skip = inputs
        full_shape, skip_shape = ops.shape(full), ops.shape(skip)
        # Rows and columns 1 to 2n (PyTorch's grid), then the last of each repeated once when
        # the skip's side is odd: a symmetric pad of one repeats the edge. A slice and a pad
        # (and a pad and a slice back) cost about a third of the two gathers and their
        # scatter-add gradients at 256 x 256 (docs/benchmarks.md).
        size = (full_shape[0], full_shape[1] - 1, full_shape[2] - 1, full_shape[3])
        shifted = ops.slice(full, (0, 1, 1, 0), size)
        extra_rows, extra_cols = skip_shape[1] - size[1], skip_shape[2] - size[2]
        aligned = ops.pad(
            shifted, [[0, 0], [0, extra_rows], [0, extra_cols], [0, 0]], mode="symmetric"
        )
        if full.shape[-1] is None:
            return aligned
        # A slice and a pad by amounts known only at run time lose the static channel count
        # in TensorFlow's graph, which the LiteRT converter needs for the convolution after.
        return ops.reshape(aligned, (size[0], skip_shape[1], skip_shape[2], full.shape[-1]))

    def compute_output_shape(self, input_shapes):
        full_shape, skip_shape = input_shapes
        return (full_shape[0], skip_shape[1], skip_shape[2], full_shape[3])


@keras.saving.register_keras_serializable(package="siamese_cd")
class TorchBatchNormalization(layers.BatchNormalization):
    """BatchNormalization whose moving variance follows PyTorch's running variance.

    Both frameworks normalise a training batch by its biased variance, but
    ``torch.nn.BatchNorm2d`` moves its running variance towards the unbiased one
    (× n / (n - 1), n values per channel) and Keras towards the biased one. At the deepest
    level of a 64 × 64 batch of 4, n = 256 and the two running variances differ by 0.4 %;
    this layer makes them equal, so a trained model predicts as PyTorch's does.
    """

    def call(self, inputs, training=None, mask=None):
        if mask is None and _folds(self, inputs, training):
            return inputs  # the conv before computed this layer too (`FoldingConv2D`)
        training = bool(training and self.trainable)
        if mask is None and _fusable(self, inputs, training):
            return _fused_batch_norm(self, inputs, training)
        if not training or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        rank = len(x.shape)
        axes = [a for a in range(rank) if a != self.axis % rank]
        mean, variance = ops.moments(x, axes=axes)
        shape = ops.shape(x)
        count = 1.0
        for axis in axes:
            count = count * ops.cast(shape[axis], x.dtype)
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        self._move(mean, unbiased)
        outputs = ops.batch_normalization(
            x,
            mean,
            variance,
            axis=self.axis,
            offset=self.beta if self.center else None,
            scale=self.gamma if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def _move(self, mean, unbiased_variance) -> None:
        """Move the running statistics towards a training batch's, as PyTorch does."""
        keep = self.momentum
        self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
        self.moving_variance.assign(self.moving_variance * keep + unbiased_variance * (1.0 - keep))


# Input types TensorFlow's fused batch norm takes (its scale, offset and statistics float32):
# in inference all three; in training the 16-bit ones only (see `_fusable`).
FUSED_BATCH_NORM_TYPES = ("float32", "bfloat16", "float16")
FUSED_TRAINING_TYPES = ("bfloat16", "float16")


def _fusable(layer: TorchBatchNormalization, inputs, training: bool = False) -> bool:
    """Whether `_fused_batch_norm` computes `layer` on `inputs`: on TensorFlow, for NHWC
    images of a type the fused op takes (not float64, whose exact path the float64 parity
    checks use), with BatchNorm's plain options (channels last, scale and offset, no renorm).

    A training step in float32 keeps the composed path: the fused op's batch statistics and
    gradients are less exact on the CPU, and one step of FC-Siam-conc then moved 13,293
    weights another way than PyTorch's (gradients 1.1e-2 apart, against 2.6e-5 composed;
    `benchmarks/reference_parity.py`). Under mixed precision the fused op is what removes
    the casts, and bfloat16's own rounding is far coarser.
    """
    rank = len(inputs.shape)
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    return (
        keras.backend.backend() == "tensorflow"
        and rank == 4
        and layer.axis % rank == 3
        and layer.center
        and layer.scale
        and not layer.renorm
        and dtype in (FUSED_TRAINING_TYPES if training else FUSED_BATCH_NORM_TYPES)
    )


def _fused_batch_norm(layer: TorchBatchNormalization, inputs, training: bool):
    """`layer` on `inputs` as one TensorFlow ``FusedBatchNormV3``, forward and backward.

    The composed path (moments, then normalisation, in float32 with casts around it under
    mixed precision) took 45 % of the op time of a bfloat16 training step of FC-Siam-diff
    at 256 x 256 (docs/benchmarks.md); the fused op reads bfloat16 features, computes in
    float32 and writes bfloat16, and Grappler joins it with the ReLU after. In training its
    third output is the batch variance with Bessel's correction, PyTorch's running variance.
    The op is called directly because `tf.nn.fused_batch_norm` raises an epsilon below
    1.001e-5 (a cuDNN limit) to that value; the published epsilon is 1e-5.
    """
    import tensorflow as tf

    common = {
        "x": inputs,
        "scale": layer.gamma.value,  # float32 master weights (BatchNorm's are not autocast)
        "offset": layer.beta.value,
        "epsilon": layer.epsilon,
        "data_format": "NHWC",
    }
    if not training:
        mean, variance = layer.moving_mean.value, layer.moving_variance.value
        return tf.raw_ops.FusedBatchNormV3(
            mean=mean, variance=variance, is_training=False, **common
        )[0]
    empty = tf.zeros((0,), "float32")
    outputs, mean, unbiased = tf.raw_ops.FusedBatchNormV3(
        mean=empty, variance=empty, is_training=True, exponential_avg_factor=1.0, **common
    )[:3]
    layer._move(mean, unbiased)
    return outputs


def _folds(norm: TorchBatchNormalization, inputs, training) -> bool:
    """Whether `norm` is computed by the `FoldingConv2D` before it for `inputs` (that conv's
    input or `norm`'s, the same type): linked to a live conv, in inference (training off or
    the layer frozen) and on the fused path's types."""
    link = getattr(norm, "_folded_into", None)
    inference = not (training and norm.trainable)
    return link is not None and link() is not None and inference and _fusable(norm, inputs)


@keras.saving.register_keras_serializable(package="siamese_cd")
class FoldingConv2D(layers.Conv2D):
    """A `keras.layers.Conv2D` that, outside training, computes the BatchNorm after it too.

    In inference BatchNorm is an affine map per channel, so it folds into the conv: the
    kernel times ``s = gamma / sqrt(variance + epsilon)`` and the bias ``(bias - mean) * s +
    beta``. The conv then writes normalised features in one pass, TensorFlow joins the ReLU
    after it, and the BatchNorm in between passes its input on: a pass over every conv
    unit's features less, prediction about 15 % faster in bfloat16 (docs/benchmarks.md).
    `conv_unit` links a conv to its `TorchBatchNormalization` (`fold`); the link is not part
    of the config but made again whenever the network is built, a loaded one too. In
    training (the BatchNorm trainable), without a link, or in float64, this is Conv2D.
    """

    def fold(self, norm: TorchBatchNormalization) -> None:
        """Compute `norm`, which must be called on this conv's output only, in inference."""
        # Weak references: an attribute holding the other layer would track its weights.
        self._folded_norm = weakref.ref(norm)
        norm._folded_into = weakref.ref(self)

    def call(self, inputs, training=None):
        link = getattr(self, "_folded_norm", None)
        norm = None if link is None else link()
        linear = self.activation is keras.activations.linear
        plain = not linear or self.data_format != "channels_last"
        if norm is None or plain or not _folds(norm, inputs, training):
            return super().call(inputs)
        scale = norm.gamma * ops.rsqrt(norm.moving_variance + norm.epsilon)  # float32
        kernel = ops.cast(ops.cast(self.kernel, "float32") * scale, self.compute_dtype)
        bias = ops.cast(self.bias, "float32") if self.use_bias else 0.0
        shift = ops.cast((bias - norm.moving_mean) * scale + norm.beta, self.compute_dtype)
        return ops.add(self.convolution_op(inputs, kernel), ops.reshape(shift, (1, 1, 1, -1)))


@keras.saving.register_keras_serializable(package="siamese_cd")
class SpatialDropoutByScale(layers.SpatialDropout2D):
    """`keras.layers.SpatialDropout2D` computed as one multiplication, with the same result.

    Keras's dropout multiplies every feature by ``1 / (1 - rate)`` and then selects between
    that and zero with the (B, 1, 1, C) keep mask: two passes over the features forward and
    two back. This layer draws the same mask from the same seed and turns it into a
    per-(sample, channel) scale, ``1 / (1 - rate)`` or 0, which multiplies the features
    once; the values are those of Keras's layer.
    """

    def call(self, inputs, training=False):
        if not training or not 0 < self.rate < 1:
            return super().call(inputs, training=training)
        noise = keras.random.uniform(
            self._get_noise_shape(inputs), dtype=inputs.dtype, seed=self.seed_generator
        )
        kept = ops.cast(1 / (1 - self.rate), inputs.dtype)
        return inputs * ops.where(noise >= self.rate, kept, ops.zeros((), inputs.dtype))


def two_class_softmax(logits):
    """Softmax over a last axis of 2 logits as ``sigmoid(l_c - l_other)`` per channel: the
    same probabilities, each channel its own sigmoid (a confident pixel keeps the precision
    of its small probability). The differences are one product with [[1, -1], [-1, 1]];
    TensorFlow's softmax over 2 channels took about 12 % of a bfloat16 prediction of
    FC-Siam-diff at 256 x 256, this about a quarter of that (docs/benchmarks.md)."""
    signs = ops.convert_to_tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=logits.dtype)
    # One (pixels, 2) x (2, 2) product: an einsum over "..." broadcasts a batched one, slower.
    differences = ops.matmul(ops.reshape(logits, (-1, 2)), signs)
    return ops.sigmoid(ops.reshape(differences, ops.shape(logits)))


@keras.saving.register_keras_serializable(package="siamese_cd")
class TwoClassSoftmax(layers.Layer):
    """The softmax of 2-class logits (B, H, W, 2) by `two_class_softmax`: the head of every
    2-class `SiameseChangeModel` (a file saved with Keras's softmax head loads with this)."""

    def call(self, logits):
        return two_class_softmax(logits)


@keras.saving.register_keras_serializable(package="siamese_cd")
class After(layers.Layer):
    """``inputs[0]`` unchanged, computed only once ``inputs[1]`` is: orders two branches.

    A functional model runs its deeper branch first, so of the two calls of a shared encoder
    the second date's (which feeds the decoder) would run, and move BatchNorm's statistics,
    first. PyTorch's networks run the first date first; making the second date's input wait
    for the first date's features gives Keras the same order, hence the same moving
    statistics after training. No gradient flows to ``inputs[1]``.
    """

    def call(self, inputs):
        return inputs[0]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


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


def conv_unit(
    x,
    filters: int,
    dropout: float,
    batch_norm: bool,
    name: str,
    init: str = "glorot",
    alignment: str = "keras",
    fan_in: int | None = None,
    dtype=None,
):  # -> KerasTensor
    """3x3 'same' conv, then BatchNorm, ReLU and spatial dropout, as in the published networks.

    `fan_in` overrides the conv's fan-in for ``init="torch"`` (default ``9 * channels in``);
    ``alignment="torch"`` uses `TorchBatchNormalization`, folded into its conv in inference
    (`FoldingConv2D`). `dtype` is the layers' dtype policy (None: Keras's global one), as
    in every builder here.
    """
    fan_in = 9 * x.shape[-1] if fan_in is None else fan_in
    torch_norm = batch_norm and alignment == "torch"
    conv = (FoldingConv2D if torch_norm else layers.Conv2D)(
        filters, 3, padding="same", name=f"{name}_conv", dtype=dtype, **initializers(init, fan_in)
    )
    x = conv(x)
    if batch_norm:
        # PyTorch's defaults, as in the published networks: moving statistics follow the
        # batches at 0.1 per step (Keras' 0.99 momentum lags for many epochs on small sets).
        norm_class = TorchBatchNormalization if torch_norm else layers.BatchNormalization
        norm = norm_class(momentum=0.9, epsilon=1e-5, name=f"{name}_bn", dtype=dtype)
        if torch_norm:
            conv.fold(norm)
        x = norm(x)
    x = layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)
    if dropout > 0:
        x = SpatialDropoutByScale(dropout, name=f"{name}_drop", dtype=dtype)(x)
    return x


def build_encoder(
    in_channels: int,
    widths: Sequence[int],
    convs_per_level: Sequence[int],
    dropout: float,
    batch_norm: bool,
    name: str = "encoder",
    init: str = "glorot",
    alignment: str = "keras",
    dtype=None,
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
            x = conv_unit(
                x, width, dropout, batch_norm, f"enc{level}_{k}", init, alignment, dtype=dtype
            )
        skips.append(x)
        # "valid" pooling floors odd sides, as PyTorch's max_pool2d does.
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool", dtype=dtype)(x)
    encoder = keras.Model(image, [*skips, x], name=name)
    if dtype is not None:  # a functional model ignores dtype=; its layers above compute in it
        encoder.dtype_policy = dtype
    return encoder


def upsample(x, reference, level: int, init: str = "glorot", alignment: str = "keras", dtype=None):
    """A decoder level's 3x3 stride-2 transposed conv, channels kept, sized like `reference`.

    ``alignment="keras"``: ``padding="same"``, exactly twice the side (the input was padded
    to a multiple of ``2**depth``). ``"torch"``: PyTorch's output grid, one pixel up and left
    of Keras's, replicated on the bottom and right to `reference`'s size (`TorchUpsampleAlign`).
    """
    channels = x.shape[-1]
    # PyTorch counts a transposed conv's fan-in on its output channels; equal here.
    up = layers.Conv2DTranspose(
        channels,
        3,
        strides=2,
        padding="valid" if alignment == "torch" else "same",
        name=f"dec{level}_up",
        dtype=dtype,
        **initializers(init, 9 * channels),
    )(x)
    if alignment == "torch":
        up = TorchUpsampleAlign(name=f"dec{level}_align", dtype=dtype)([up, reference])
    return up


def decode(
    x,
    skips: Sequence[Sequence],
    widths: Sequence[int],
    convs_per_level: Sequence[int],
    dropout: float,
    batch_norm: bool,
    head_channels: int,
    init: str = "glorot",
    alignment: str = "keras",
    dtype=None,
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
        init: ``"glorot"`` or ``"torch"`` initialisation (see `initializers`).
        alignment: ``"keras"`` or ``"torch"`` (see `upsample`). With ``"torch"`` the convs
            stand for the published ``ConvTranspose2d(k=3, padding=1)`` layers, whose
            PyTorch fan-in is counted on their output channels.
        dtype: the dtype policy of every layer but the head, which stays float32.
    """
    depth = len(widths)
    for level in range(depth, 0, -1):
        x = upsample(x, skips[level - 1][0], level, init, alignment, dtype)
        x = layers.Concatenate(name=f"dec{level}_concat", dtype=dtype)([x, *skips[level - 1]])
        convs = convs_per_level[level - 1]
        for k in range(1, convs + 1):
            last = k == convs
            if last and level == 1:
                fan_in = 9 * (head_channels if alignment == "torch" else x.shape[-1])
                # Logits in float32, so mixed precision keeps a stable head.
                return layers.Conv2D(
                    head_channels,
                    3,
                    padding="same",
                    name="head",
                    dtype="float32",
                    **initializers(init, fan_in),
                )(x)
            width = widths[level - 2] if last else widths[level - 1]
            fan_in = 9 * width if alignment == "torch" else None
            x = conv_unit(
                x, width, dropout, batch_norm, f"dec{level}_{k}", init, alignment, fan_in, dtype
            )
    raise AssertionError("unreachable: level 1 returns the head")
