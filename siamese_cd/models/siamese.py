"""`SiameseChangeModel`: the change-detection task, preprocessing → backbone → head.

The task owns what turns an architecture into something to train and serve: the
`ChangePreprocessor` that scales raw pixels (saved with the model), the probability head, the
paper's recipe as `compile()` defaults, and the train, test and predict steps. The network is
built at construction (functional style), so it has weights and a `summary()` straight away,
and loading a `.keras` file or Keras Tuner's `build_from_config` + `load_weights` needs no
extra step.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

from siamese_cd.data.stats import change_fraction
from siamese_cd.data.undecodable import naming_undecodable
from siamese_cd.errors import ConfigError, TrainingError
from siamese_cd.losses import pending_weight_losses, pos_weight_from_fraction
from siamese_cd.metrics import ChangeMetrics
from siamese_cd.models import recipe
from siamese_cd.models.backbone import (
    VARIANTS,
    FCSiamBackbone,
    check_architecture,
    resolve_convs,
    resolve_widths,
)
from siamese_cd.models.guards import NaNGuard
from siamese_cd.models.preprocessing import SCALINGS, ChangePreprocessor, stored_pixel_dtype
from siamese_cd.models.recipe import recipe_objects

__all__ = ["VARIANTS", "SiameseChangeModel"]


def _shows_progress(fit_kwargs: dict) -> bool:
    """Whether a `fit`, `evaluate` or `predict` call with these arguments prints progress."""
    return fit_kwargs.get("verbose", "auto") != 0


def _make_preprocessor(spec, in_channels: int) -> ChangePreprocessor:
    if isinstance(spec, str):
        return ChangePreprocessor(spec, in_channels=in_channels, name="preprocessor")
    if isinstance(spec, dict):
        config = {**spec, "name": "preprocessor"}
        if config.setdefault("in_channels", in_channels) != in_channels:
            raise ConfigError(
                f"the preprocessing was measured on {config['in_channels']} band(s), "
                f"the model takes in_channels={in_channels}"
            )
        return ChangePreprocessor.from_config(config)
    raise ConfigError(
        f"preprocessing must be one of {SCALINGS} or a preprocessor config dict, got {spec!r}"
    )


@keras.saving.register_keras_serializable(package="siamese_cd")
class SiameseChangeModel(keras.Model):
    """A fully convolutional change-detection network for a pair of co-registered images.

    Inputs are ``(t1, t2)``, each (B, H, W, in_channels) of any H and W, as raw pixels: uint8,
    uint16 or float, as the files store them. The model's `ChangePreprocessor` scales them
    (``preprocessing``: ``"unit"`` divides by the type's maximum, ``"standardize"`` uses
    per-band statistics of the training data, ``"auto"`` picks ``"unit"`` for 8-bit data and
    ``"standardize"`` otherwise when `fit` first sees the training data). The
    `FCSiamBackbone` (FC-Siam-diff, FC-Siam-conc or FC-EF) gives logits, and the head turns
    them into the change probability: (B, H, W, 1) with ``num_classes=1`` (sigmoid), or
    (B, H, W, 2) softmax scores with ``num_classes=2``, whose channel 1 is change.

    At depth 4 and filters 16 on RGB with a 2-class head the trainable parameter counts equal
    the published ones (FC-EF 1,350,578; FC-Siam-diff 1,350,146; FC-Siam-conc 1,545,986); the
    default 1-channel sigmoid head has 145 fewer.

    `compile()` with no arguments is the paper's recipe (`siamese_cd.models.recipe`): Adam at
    1e-3 with weight decay 1e-4, the learning rate × 0.95 per epoch, and class-weighted binary
    cross-entropy whose change weight `fit` takes from the training masks;
    ``compile(recipe="paper")`` on a model built by `paper` is the published PyTorch training
    to the arithmetic, and `from_torch_state_dict` loads the authors' checkpoints. Reported metrics
    (`precision`, `recall`, `f1`, `iou`, `overall_accuracy`, `kappa` of the change class) come
    from confusion counts accumulated over the whole epoch.

    Args:
        variant: ``"diff"``, ``"conc"`` or ``"ef"``.
        depth: number of encoder levels (pooling steps), 2 to 6.
        filters: width of the first level, doubled per level; or one width per level.
        convs_per_level: conv units per level, shallowest first; an int for all levels. The
            default is the paper's: 2 in the first two levels, 3 in deeper ones.
        dropout: spatial dropout after each conv unit.
        batch_norm: BatchNorm after each conv.
        in_channels: bands per image, e.g. 3 for RGB or 13 for Sentinel-2.
        num_classes: 1 for a sigmoid change map, 2 for a softmax over no-change/change.
        threshold: probability at or above which a pixel counts as change in the metrics.
        preprocessing: ``"auto"`` (default), ``"unit"``, ``"standardize"``, or a config from
            `siamese_cd.models.preprocessing.preprocessing_config`.
        init: ``"torch"`` (default: kernels and biases from U(±1/sqrt(fan_in)), as the
            published PyTorch code initialises them; the recipe ablation in
            ``benchmarks/recipe_ablation.py`` chose it) or ``"glorot"`` (Keras's
            Glorot-uniform kernels, zero biases).
        alignment: ``"keras"`` (default: the input padded to a multiple of ``2**depth``) or
            ``"torch"``: the published PyTorch network to the pixel, whose weights
            `from_torch_state_dict` loads (see `FCSiamBackbone`).
        **kwargs: `name`, `trainable` or `dtype`, passed to `keras.Model`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> t1 = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
        >>> t2 = t1.copy(); t2[:, 4:8, 4:8] = 255
        >>> mask = np.zeros((8, 16, 16, 1), np.float32); mask[:, 4:8, 4:8] = 1
        >>> model = SiameseChangeModel(variant="diff", depth=2, filters=4)
        >>> model.compile()
        >>> history = model.fit((t1, t2), mask, epochs=1, verbose=0)
        >>> model.preprocessor.scaling, round(model.loss.pos_weight, 1)
        ('unit', 15.0)
        >>> model.predict((t1, t2), verbose=0).shape
        (8, 16, 16, 1)
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
        preprocessing: str | dict = "auto",
        init: str = "torch",
        alignment: str = "keras",
        **kwargs,
    ):
        check_architecture(variant, depth, num_classes, dropout, in_channels, init, alignment)
        widths = resolve_widths(filters, depth)
        convs = resolve_convs(convs_per_level, depth)

        # === Layers ===
        preprocessor = _make_preprocessor(preprocessing, in_channels)
        architecture = (variant, depth, widths, convs, dropout, batch_norm, in_channels)
        backbone = FCSiamBackbone(*architecture, num_classes, init, alignment)
        activation = "sigmoid" if num_classes == 1 else "softmax"
        head = layers.Activation(activation, dtype="float32", name="probability")

        # === Functional model ===
        # Scaled inputs; raw pixels are scaled by the preprocessor in `call` first, so that
        # it sees their stored type (the functional graph would cast them to float32).
        t1 = keras.Input((None, None, in_channels), name="t1")
        t2 = keras.Input((None, None, in_channels), name="t2")
        outputs = head(backbone((t1, t2)))
        super().__init__(inputs=(t1, t2), outputs=outputs, **kwargs)

        # === Config ===
        self.preprocessor = preprocessor
        self.backbone = backbone
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
        self.init = init
        self.alignment = alignment
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
            "preprocessing": self.preprocessor.get_config(),
            "init": self.init,
            "alignment": self.alignment,
        }

    @classmethod
    def from_config(cls, config: dict) -> SiameseChangeModel:
        return cls(**config)

    @classmethod
    def paper(cls, variant: str = "diff", in_channels: int = 3, **overrides) -> SiameseChangeModel:
        """The published network and input scaling (`siamese_cd.models.recipe.PAPER_MODEL`).

        Depth 4, 16 filters, spatial dropout 0.2, PyTorch's initialisation and pixel grid
        (``alignment="torch"``), a 2-class softmax head and each image standardised on its
        own (``preprocessing="per_image"``), ready for ``compile(recipe="paper")``.
        `overrides` replace any of those (e.g. ``filters=8``).
        """
        return cls(variant=variant, in_channels=in_channels, **{**recipe.PAPER_MODEL, **overrides})

    @classmethod
    def from_torch_state_dict(
        cls, state_dict, variant: str, num_classes: int = 2, **kwargs
    ) -> SiameseChangeModel:
        """A model holding the weights of a checkpoint of the authors' PyTorch code.

        See `siamese_cd.models.torch_weights.model_from_state_dict`: `state_dict` maps the
        published names (``conv11.weight``, ``bn11.running_mean``, ..., ``conv11d.bias``) to
        torch tensors or NumPy arrays; PyTorch itself is not needed.
        """
        from siamese_cd.models.torch_weights import model_from_state_dict

        return model_from_state_dict(state_dict, variant, num_classes=num_classes, **kwargs)

    def build_from_config(self, config: dict) -> None:
        # Built at construction; the recorded input shape has open sides and nothing to add.
        if not self.built:
            super().build_from_config(config)

    # -- training set-up -------------------------------------------------------------------------

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics=None,
        *,
        learning_rate: float | None = None,
        recipe: str = "default",
        **kwargs,
    ) -> None:
        """Configure training; with no arguments, the paper's recipe.

        Args:
            optimizer: ``"auto"`` (default) is `siamese_cd.models.recipe.recipe_optimizer`:
                Adam, weight decay 1e-4, learning rate × 0.95 per epoch. Or any Keras
                optimizer or its name.
            loss: ``"auto"`` (default) is the class-weighted binary cross-entropy whose
                change weight `fit` takes from the training data; a name from
                `siamese_cd.losses.get_loss` (``"bce"``, ``"dice"``, ``"focal"``,
                ``"bce+dice"``, ...); or any loss taking ``(mask, probabilities)``.
            metrics: extra metrics, updated with ``(mask, probabilities)`` besides the
                built-in change-class metrics. They are not stored in `.keras` files.
            learning_rate: the initial learning rate of ``optimizer="auto"`` (default 1e-3).
            recipe: ``"default"`` (above) or ``"paper"``: the published PyTorch training to
                the arithmetic (PyTorch's Adam with L2 1e-4, the class-weighted NLL divided
                by the weights), for a model built by `paper` or with ``num_classes=2,
                alignment="torch"``; see `siamese_cd.models.recipe.recipe_objects`.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        # `recipe` (the argument) hides the module here.
        optimizer, loss = recipe_objects(
            recipe,
            optimizer,
            loss,
            learning_rate,
            num_classes=self.num_classes,
            alignment=self.alignment,
        )
        self._extra_metrics = [keras.metrics.get(m) for m in metrics or []]
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config: dict) -> None:
        # Keras skips restoring the compile state of models that override compile(), unless
        # they restore it themselves; the config holds only serializable objects.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def adapt(self, data, progress: bool = True) -> None:
        """Set the preprocessing from training data: see `ChangePreprocessor.adapt`."""
        self.preprocessor.adapt(data, progress=progress)
        if progress and self.preprocessor.scaling == "standardize":
            print(
                f"Preprocessing: per-band standardisation of {self.preprocessor.pixel_dtype} "
                "pixels, statistics measured on the training data"
            )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, first resolving what the training data decides.

        Before training: the preprocessing (``"auto"``, or unmeasured statistics) is measured
        on `x`; a class-weighted loss waiting for its change weight gets it from
        `siamese_cd.data.stats.change_fraction`; the recipe's per-epoch decay learns the
        epoch length. Callbacks with an ``attach_to(callbacks)`` method are given the list
        (`MaskImageLogger` finds the TensorBoard callback's folder that way). An image file
        TensorFlow cannot decode is named (`siamese_cd.data.undecodable`).
        """
        progress = _shows_progress(kwargs)
        with naming_undecodable(x, kwargs.get("validation_data"), progress=progress):
            return self._resolve_and_fit(x, y, *args, **kwargs)

    def _resolve_and_fit(self, x, y, *args, **kwargs):
        verbose = _shows_progress(kwargs)
        if self.preprocessor.pending:
            self.adapt(x, progress=verbose)
        if self.preprocessor.pixel_dtype is None:
            # Recorded (and saved) so that serving another pixel type warns.
            self.preprocessor.pixel_dtype = stored_pixel_dtype(x)
        pending = pending_weight_losses(getattr(self, "loss", None))
        if pending:
            weight = pos_weight_from_fraction(change_fraction(x, y, progress=verbose))
            for part in pending:
                part.pos_weight = weight
            if verbose:
                print(f"Change pixels weighted by {weight:.3f} (from the training masks)")
        schedule = recipe.epoch_schedule(getattr(self, "optimizer", None))
        if schedule is not None and schedule.steps_per_epoch is None:
            schedule.steps_per_epoch = recipe.steps_per_epoch(
                x, kwargs.get("batch_size"), kwargs.get("steps_per_epoch")
            )
            if schedule.steps_per_epoch is None:
                raise ConfigError(
                    "cannot tell the epoch length of this training data for the per-epoch "
                    "learning-rate decay; pass steps_per_epoch= to fit"
                )
        callbacks = list(kwargs.get("callbacks") or [])
        for callback in callbacks:
            if hasattr(callback, "attach_to"):
                callback.attach_to(callbacks)
        # A NaN loss stops every fit with an error naming the epoch and batch.
        guard = next((c for c in callbacks if isinstance(c, NaNGuard)), None)
        if guard is None:
            guard = NaNGuard()
            callbacks.append(guard)
        kwargs["callbacks"] = callbacks
        history = super().fit(x, y, *args, **kwargs)
        if guard.stopped_at is not None:
            raise TrainingError(guard.message())
        return history

    def set_threshold(self, threshold: float) -> None:
        """Use `threshold` for the change decision of the metrics, `evaluate` and `predict`
        tools, and store it with the model (e.g. from `models.threshold.choose_threshold`)."""
        if not 0 < threshold < 1:
            raise ConfigError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.change_metrics.threshold = self.threshold
        # The compiled steps captured the old value; let Keras trace them again.
        self.train_function = self.test_function = self.predict_function = None

    def _check_ready(self) -> None:
        if self.preprocessor.pending:
            raise ConfigError(
                f"the model's preprocessing ({self.preprocessor.scaling!r}) has not seen "
                "training data yet: fit the model, call model.adapt(train_data), or build it "
                "with preprocessing='unit'"
            )

    def evaluate(self, x=None, *args, **kwargs):
        self._check_ready()
        with naming_undecodable(x, progress=_shows_progress(kwargs)):
            return super().evaluate(x, *args, **kwargs)

    def predict(self, x=None, *args, **kwargs):
        self._check_ready()
        with naming_undecodable(x, progress=_shows_progress(kwargs)):
            return super().predict(x, *args, **kwargs)

    # -- steps -----------------------------------------------------------------------------------

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listed here so Keras resets them every epoch and reports exactly these.
        return [self.loss_tracker, self.change_metrics, *self._extra_metrics]

    def call(self, inputs, training=None, mask=None):
        t1, t2 = inputs
        scaled = (self.preprocessor(t1), self.preprocessor(t2))
        return super().call(scaled, training=training, mask=mask)

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

    # -- serving ---------------------------------------------------------------------------------

    def export(self, filepath, format: str = "tf_saved_model", verbose: bool = True, **kwargs):
        """Export for serving; a SavedModel gets the endpoint ``serve(t1, t2)``.

        The SavedModel's ``serve`` function and its ``serving_default`` signature take raw
        ``t1`` and ``t2`` of shape (B, H, W, in_channels), any H and W, in the pixel type seen
        in training (`preprocessor.pixel_dtype`, float32 if unknown), scale them as the model
        does, and return ``{"probability": (B, H, W, num_classes)}``. Other formats are
        Keras's own.
        """
        # Writing traces the layers with Keras's own float32 specs, not served pixels, so the
        # preprocessor's pixel-type warning is off meanwhile.
        with self.preprocessor.pixel_checks_off():
            return self._export(filepath, format, verbose, **kwargs)

    def _export(self, filepath, format: str, verbose: bool, **kwargs):
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        import tensorflow as tf

        def serve(t1, t2):
            return {"probability": self((t1, t2), training=False)}

        shape = (None, None, None, self.in_channels)
        dtype = tf.as_dtype(self.preprocessor.pixel_dtype or "float32")
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint(
            "serve",
            serve,
            input_signature=[
                tf.TensorSpec(shape, dtype, name="t1"),
                tf.TensorSpec(shape, dtype, name="t2"),
            ],
        )
        archive.write_out(str(filepath), verbose=verbose)
