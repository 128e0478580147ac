"""`SiameseChangeModel`: FC-EF, FC-Siam-conc and FC-Siam-diff (Daudt, Le Saux, Boulch, ICIP 2018).

The network is built at construction (functional style), so it has weights, a parameter count
and a `summary()` straight away, and loading a `.keras` file or Keras Tuner's
`build_from_config` + `load_weights` needs no extra step.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

from siamese_cd.callbacks import attach_loggers
from siamese_cd.errors import ConfigError
from siamese_cd.losses import get_loss, is_loss_name
from siamese_cd.metrics import ChangeMetrics
from siamese_cd.models.blocks import (
    CropLike,
    PadToMultiple,
    build_encoder,
    decode,
    scale_pixels,
)

VARIANTS = ("diff", "conc", "ef")


def resolve_widths(filters: int | Sequence[int], depth: int) -> list[int]:
    """Filters per level: an int is the first level's width, doubled at each level."""
    if isinstance(filters, int):
        widths = [filters * 2**level for level in range(depth)]
    else:
        widths = [int(f) for f in filters]
        if len(widths) != depth:
            raise ConfigError(f"filters has {len(widths)} widths for depth {depth}")
    if any(w < 1 for w in widths):
        raise ConfigError(f"filters must be positive, got {widths}")
    return widths


def resolve_convs(convs_per_level: int | Sequence[int] | None, depth: int) -> list[int]:
    """Convs per level. The default follows the paper: 2 in the first two levels, 3 below."""
    if convs_per_level is None:
        return [2 if level < 2 else 3 for level in range(depth)]
    if isinstance(convs_per_level, int):
        convs = [convs_per_level] * depth
    else:
        convs = [int(c) for c in convs_per_level]
    if len(convs) != depth:
        raise ConfigError(f"convs_per_level has {len(convs)} entries for depth {depth}")
    if convs[0] < 2 or any(c < 1 for c in convs):
        # Level 1 needs one conv unit plus the head.
        raise ConfigError(f"convs_per_level needs >= 2 at level 1 and >= 1 elsewhere: {convs}")
    return convs


@keras.saving.register_keras_serializable(package="siamese_cd")
class SiameseChangeModel(keras.Model):
    """A fully convolutional change-detection network for a pair of co-registered images.

    Variants, as published:

    - ``"diff"`` (FC-Siam-diff): one encoder with shared weights runs on both dates; each
      decoder level concatenates the upsampled features with ``|skip_t1 - skip_t2|``.
    - ``"conc"`` (FC-Siam-conc): shared encoder; skips are ``[skip_t1, skip_t2]``.
    - ``"ef"`` (FC-EF): the dates are stacked on channels at the input of a plain U-Net.

    In the siamese variants the decoder starts from the second date's bottleneck, as in the
    published code. At depth 4 and filters 16 on RGB with a 2-class head the trainable
    parameter counts equal the published ones (FC-EF 1,350,578; FC-Siam-diff 1,350,146;
    FC-Siam-conc 1,545,986); the default 1-channel sigmoid head has 145 fewer.

    Inputs are ``(t1, t2)``, each (B, H, W, in_channels), of any H and W: the model pads to a
    multiple of ``2**depth`` and crops its output back. Images are float, normalised (in
    [0, 1], or standardised), or integer pixels as stored, uint8 or uint16, which the model
    first divides by 255 or 65535 into [0, 1]: the batches of `PairedImageDataset` with
    ``normalization="unit"`` are such pixels, four times smaller than float32. The output is the
    change probability: (B, H, W, 1) with ``num_classes=1`` (sigmoid), or (B, H, W, 2)
    softmax scores with ``num_classes=2``, whose channel 1 is change.

    `compile()` defaults to the class-weighted binary cross-entropy of the paper, with the
    weight of the change class taken from the training set's change fraction at `fit()`.
    Reported metrics (`precision`, `recall`, `f1`, `iou`, `overall_accuracy`, `kappa` for the
    change class) come from confusion counts accumulated over the whole epoch.

    Args:
        variant: ``"diff"``, ``"conc"`` or ``"ef"``.
        depth: number of encoder levels (pooling steps), 2 to 6.
        filters: width of the first level, doubled per level; or one width per level.
        convs_per_level: conv units per level, shallowest first; an int for all levels. The
            default is the paper's: 2 in the first two levels, 3 in deeper ones
            (2, 2, 3, 3 at depth 4).
        dropout: spatial dropout after each conv unit.
        batch_norm: BatchNorm after each conv.
        in_channels: bands per image, e.g. 3 for RGB or 13 for Sentinel-2.
        num_classes: 1 for a sigmoid change map, 2 for a softmax over no-change/change.
        threshold: probability at or above which a pixel counts as change in the metrics.
        **kwargs: `name`, `trainable` or `dtype`, passed to `keras.Model`.

    Example:
        >>> model = SiameseChangeModel(variant="diff", depth=4, filters=16)
        >>> model.compile(optimizer="adam")
        >>> model.fit(train, validation_data=val, epochs=50)  # doctest: +SKIP
        >>> probabilities = model.predict(test)  # doctest: +SKIP
    """

    def __init__(
        self,
        variant: str = "diff",
        depth: int = 4,
        filters: int | Sequence[int] = 16,
        convs_per_level: int | Sequence[int] | None = None,
        dropout: float = 0.2,
        batch_norm: bool = True,
        in_channels: int = 3,
        num_classes: int = 1,
        threshold: float = 0.5,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if not 2 <= depth <= 6:
            raise ConfigError(f"depth must be from 2 to 6, got {depth}")
        if num_classes not in (1, 2):
            raise ConfigError(f"num_classes must be 1 (sigmoid) or 2 (softmax), got {num_classes}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if in_channels < 1:
            raise ConfigError(f"in_channels must be at least 1, got {in_channels}")
        widths = resolve_widths(filters, depth)
        convs = resolve_convs(convs_per_level, depth)

        t1 = keras.Input((None, None, in_channels), name="t1")
        t2 = keras.Input((None, None, in_channels), name="t2")
        pad = PadToMultiple(2**depth, name="pad")
        p1, p2 = pad(t1), pad(t2)
        if variant == "ef":
            stacked = layers.Concatenate(name="early_fusion")([p1, p2])
            encoder = build_encoder(2 * in_channels, widths, convs, dropout, batch_norm)
            *skips, bottleneck = encoder(stacked)
            skip_groups = [[s] for s in skips]
        else:
            encoder = build_encoder(in_channels, widths, convs, dropout, batch_norm)
            *skips1, _ = encoder(p1)
            *skips2, bottleneck = encoder(p2)
            if variant == "diff":
                skip_groups = [
                    [ops.abs(layers.Subtract(name=f"skip{i}_diff")([a, b]))]
                    for i, (a, b) in enumerate(zip(skips1, skips2), start=1)
                ]
            else:
                skip_groups = [[a, b] for a, b in zip(skips1, skips2)]
        logits = decode(bottleneck, skip_groups, widths, convs, dropout, batch_norm, num_classes)
        activation = "sigmoid" if num_classes == 1 else "softmax"
        probabilities = layers.Activation(activation, dtype="float32", name="probability")(logits)
        outputs = CropLike(name="crop", dtype="float32")([probabilities, t1])
        super().__init__(inputs=(t1, t2), outputs=outputs, **kwargs)

        self.variant = variant
        self.depth = depth
        self.filters = filters if isinstance(filters, int) else list(widths)
        self.widths = widths
        self.convs_per_level = convs_per_level if convs_per_level is None else list(convs)
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.threshold = threshold
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.change_metrics = ChangeMetrics(threshold=threshold)
        self._extra_metrics: list[keras.metrics.Metric] = []

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "variant": self.variant,
            "depth": self.depth,
            "filters": self.filters,
            "convs_per_level": self.convs_per_level,
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "threshold": self.threshold,
        }

    @classmethod
    def from_config(cls, config: dict) -> SiameseChangeModel:
        return cls(**config)

    def build_from_config(self, config: dict) -> None:
        # Built at construction; the recorded input shape has open sides and nothing to add.
        if not self.built:
            super().build_from_config(config)

    def compile(self, optimizer="adam", loss="auto", metrics=None, **kwargs) -> None:
        """Configure training.

        Args:
            optimizer: any Keras optimizer or its name.
            loss: ``"auto"`` (default) is `WeightedBinaryCrossentropy(pos_weight="auto")`,
                weighted from the training set's change fraction at `fit()`; a name from
                `siamese_cd.losses.get_loss` (``"bce"``, ``"dice"``, ``"focal"``,
                ``"bce+dice"``, ...); or any loss taking ``(mask, probabilities)``.
            metrics: extra metrics, updated with ``(mask, probabilities)`` besides the
                built-in change-class metrics. They are not stored in `.keras` files.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        if loss == "auto":
            loss = "bce"
        if is_loss_name(loss):
            loss = get_loss(loss)
        self._extra_metrics = [keras.metrics.get(m) for m in metrics or []]
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config: dict) -> None:
        # Keras skips restoring the compile state of models that override compile(), unless
        # they restore it themselves; the config holds only serializable objects.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listed here so Keras resets them every epoch and reports exactly these.
        return [self.loss_tracker, self.change_metrics, *self._extra_metrics]

    def call(self, inputs, training=None, mask=None):
        # Integer pixels (the batches of PairedImageDataset) are scaled here, before the
        # functional graph would cast them to float32 unscaled.
        t1, t2 = inputs
        return super().call((scale_pixels(t1), scale_pixels(t2)), training=training, mask=mask)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, first resolving ``pos_weight="auto"`` from the training data.

        With a `PairedImageDataset` the change fraction is read from its masks in one
        streaming pass; with NumPy masks it is their mean. Other inputs need an explicit
        `pos_weight`. A `MaskImageLogger` without a log_dir among the callbacks is pointed at
        the folder of the `keras.callbacks.TensorBoard` callback (Keras Tuner's per-trial one).
        """
        loss = getattr(self, "loss", None)
        if getattr(loss, "auto_pending", False):
            loss.resolve_auto(x, y, verbose=kwargs.get("verbose", "auto") != 0)
        attach_loggers(kwargs.get("callbacks"))
        return super().fit(x, y, *args, **kwargs)

    def _record(self, loss, y, y_pred, sample_weight) -> dict:
        import tensorflow as tf

        # Under tf.distribute the compiled loss is divided by the replica count; undo it so
        # the reported loss matches a single device.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        batch = ops.shape(y_pred)[0]
        self.loss_tracker.update_state(loss * replicas, sample_weight=batch)
        self.change_metrics.update_state(y, y_pred, sample_weight)
        for metric in self._extra_metrics:
            metric.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def export(self, filepath, format: str = "tf_saved_model", verbose: bool = True, **kwargs):
        """Export for serving; a SavedModel gets the endpoint ``serve(t1, t2)``.

        The SavedModel's ``serve`` function and its ``serving_default`` signature take float32
        ``t1`` and ``t2`` of shape (B, H, W, in_channels), any H and W, normalised as in
        training (pixels divided by 255 for 8-bit images), and return
        ``{"probability": (B, H, W, num_classes)}``. Other formats are Keras' own.

        Example:
            >>> model.export("served")  # doctest: +SKIP
            >>> served = tf.saved_model.load("served")  # doctest: +SKIP
            >>> served.serve(t1, t2)["probability"]  # doctest: +SKIP
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        import tensorflow as tf

        def serve(t1, t2):
            return {"probability": self((t1, t2), training=False)}

        shape = (None, None, None, self.in_channels)
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint(
            "serve",
            serve,
            input_signature=[
                tf.TensorSpec(shape, tf.float32, name="t1"),
                tf.TensorSpec(shape, tf.float32, name="t2"),
            ],
        )
        archive.write_out(str(filepath), verbose=verbose)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def train_step(self, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            # A no-op unless mixed precision wraps the optimizer in a LossScaleOptimizer,
            # whose apply() unscales: skipping it would shrink gradients by the loss scale.
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._record(loss, y, y_pred, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        return self._record(loss, y, y_pred, sample_weight)
