"""`SiameseChangeModel`: the change-detection task, preprocessing → backbone → head.

The task owns what turns an architecture into something to train and serve: the
`ChangePreprocessor` that scales raw pixels (saved with the model), the probability head, the
paper's recipe as `compile()` defaults, and the train, test and predict steps. The network is
a backbone object (`FCSiamBackbone` unless another is given), stored in the task's config as
a serialized object, so the architecture is configured in the backbone alone. It is
built at construction (functional style), so it has weights and a `summary()` straight away,
and loading a `.keras` file or Keras Tuner's `build_from_config` + `load_weights` needs no
extra step.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from siamese_cd.data.pipeline.stats import change_fraction
from siamese_cd.data.readers.undecodable import naming_undecodable
from siamese_cd.errors import ConfigError, TrainingError
from siamese_cd.models import recipe
from siamese_cd.models.backbone import (
    ARCHITECTURE_ARGUMENTS,
    SAVED_BEFORE_DEFAULTS,
    VARIANTS,
    make_backbone,
)
from siamese_cd.models.blocks import TwoClassSoftmax
from siamese_cd.models.guards import NaNGuard
from siamese_cd.models.losses import weigh_pending
from siamese_cd.models.metrics import ChangeMetrics
from siamese_cd.models.preprocessing import (
    ChangePreprocessor,
    make_preprocessor,
    stored_pixel_dtype,
)
from siamese_cd.models.recipe import recipe_objects

__all__ = ["VARIANTS", "SiameseChangeModel"]


def _shows_progress(fit_kwargs: dict) -> bool:
    """Whether a `fit`, `evaluate` or `predict` call with these arguments prints progress."""
    return fit_kwargs.get("verbose", "auto") != 0


def _backbone_setting(name: str) -> property:
    """A read-only attribute of the task that is the backbone's attribute `name`."""

    def read(self):
        return getattr(self.backbone, name)

    return property(read, doc=f"The backbone's ``{name}`` (read-only).")


@keras.saving.register_keras_serializable(package="siamese_cd")
class SiameseChangeModel(keras.Model):
    """A fully convolutional change-detection network for a pair of co-registered images.

    Inputs are ``(t1, t2)``, each (B, H, W, in_channels) of any H and W, as raw pixels: uint8,
    uint16 or float, as the files store them. The model's `ChangePreprocessor` scales them
    (``preprocessing``: ``"per_image"``, the default, standardises each image on its own as
    the published code does; ``"unit"`` divides by the type's maximum, ``"standardize"`` uses
    per-band statistics of the training data, ``"auto"`` picks ``"unit"`` for 8-bit data and
    ``"standardize"`` otherwise when `fit` first sees the training data). The
    `FCSiamBackbone` (FC-Siam-diff, FC-Siam-conc or FC-EF) gives logits, and the head turns
    them into the change probability: (B, H, W, 2) softmax scores with ``num_classes=2`` (the
    default, as published), whose channel 1 is change, or (B, H, W, 1) with
    ``num_classes=1`` (sigmoid).

    The defaults are the published network (Daudt et al., ICIP 2018, and the authors' PyTorch
    code) to the pixel: depth 4, 16 filters, spatial dropout 0.2, PyTorch's initialisation
    and pixel grid (``alignment="torch"``), a 2-class head, per-image standardisation; the
    trainable parameter counts equal the published ones (FC-EF 1,350,578; FC-Siam-diff
    1,350,146; FC-Siam-conc 1,545,986 on RGB). `from_torch_state_dict` loads the authors'
    checkpoints into it.

    `compile()` with no arguments is the published training (`siamese_cd.models.recipe`,
    ``"paper"``): PyTorch's Adam at 1e-3 with L2 1e-4, the learning rate × 0.95 per epoch, and
    the class-weighted NLL whose weights `fit` takes from the training masks. A model with a
    sigmoid head trains with the ``"sigmoid"`` recipe (Keras's Adam with decoupled weight
    decay, class-weighted binary cross-entropy). Reported metrics (`precision`, `recall`,
    `f1`, `iou`, `overall_accuracy`, `kappa` of the change class) come from confusion counts
    accumulated over the whole epoch.

    The task takes its network as a backbone object and stores that backbone's config in its
    own, as keras-hub's tasks do: ``SiameseChangeModel(backbone=FCSiamBackbone(variant="conc",
    depth=3), preprocessor=ChangePreprocessor("unit"))``. The keyword form
    ``SiameseChangeModel(variant="conc", depth=3, preprocessing="unit")`` builds the same
    model: the architecture keywords are `FCSiamBackbone`'s own arguments, passed on
    unchanged (`ARCHITECTURE_ARGUMENTS`), and the architecture's settings are read back from
    the backbone (``model.variant``, ``model.depth``, ``model.widths``, ``model.in_channels``,
    ``model.num_classes``, ``model.alignment``, ...). Files saved before the backbone was
    stored (their config names the architecture at the task level) load as before.

    Args:
        backbone: the network from the scaled ``(t1, t2)``, each (B, H, W, in_channels), to
            change logits (B, H, W, num_classes): an `FCSiamBackbone`, or another Keras model
            with ``in_channels`` and ``num_classes`` attributes (``alignment="torch"`` and the
            architecture attributes are then its own business). Without one, an
            `FCSiamBackbone` is built from the architecture keywords in `kwargs`.
        preprocessor: the `ChangePreprocessor` that scales raw pixels; without one, it is made
            from `preprocessing`.
        threshold: probability at or above which a pixel counts as change in the metrics.
        preprocessing: ``"per_image"`` (the default when None,
            `siamese_cd.models.preprocessing.DEFAULT_SCALING`), ``"per_image_band"``,
            ``"unit"``, ``"standardize"``, ``"auto"``, or a config from
            `siamese_cd.models.preprocessing.preprocessing_config`; not with `preprocessor`.
        **kwargs: without a `backbone`, the `FCSiamBackbone` arguments ``variant``
            (``"diff"``, ``"conc"`` or ``"ef"``), ``depth``, ``filters``,
            ``convs_per_level``, ``dropout``, ``batch_norm``, ``in_channels``,
            ``num_classes``, ``init`` and ``alignment`` (see there for their meaning and
            defaults); `name` or `trainable`, passed to `keras.Model`; and `dtype`, the
            model's precision as a dtype policy (e.g. ``"mixed_bfloat16"``, see
            `siamese_cd.training.precision.dtype_policy`), given to the backbone built here
            while the preprocessor and the head stay float32. Keras's global policy is the
            default; the policy is not saved, so a loaded model computes in the loader's.

    Raises:
        ConfigError: a bad architecture setting (named), a backbone with architecture
            keywords too, or a preprocessor whose bands differ from the backbone's.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> t1 = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
        >>> t2 = t1.copy(); t2[:, 4:8, 4:8] = 255
        >>> mask = np.zeros((8, 16, 16, 1), np.float32); mask[:, 4:8, 4:8] = 1
        >>> model = SiameseChangeModel(variant="diff", depth=2, filters=4)
        >>> model.compile()
        >>> history = model.fit((t1, t2), mask, epochs=1, verbose=0)
        >>> model.preprocessor.scaling, type(model.loss).__name__, round(model.loss.pos_weight, 1)
        ('per_image', 'ClassWeightedNLL', 15.0)
        >>> model.predict((t1, t2), verbose=0).shape
        (8, 16, 16, 2)
    """

    def __init__(
        self,
        backbone: keras.Model | None = None,
        preprocessor: ChangePreprocessor | None = None,
        threshold: float = 0.5,
        *,
        preprocessing: str | dict | None = None,
        **kwargs,
    ):
        # === Layers ===
        architecture = {name: kwargs.pop(name) for name in ARCHITECTURE_ARGUMENTS if name in kwargs}
        # Precision per model (keras-hub style): a functional model ignores dtype=, so the
        # policy goes to the backbone built here (a given backbone keeps its own) and is set
        # on the task after; the preprocessor and the head stay float32 whatever it is.
        dtype = kwargs.pop("dtype", None)
        if backbone is None and dtype is not None:
            architecture["dtype"] = dtype
        backbone = make_backbone(backbone, architecture)
        in_channels = backbone.in_channels
        preprocessor = make_preprocessor(preprocessor, preprocessing, in_channels)
        if backbone.num_classes == 1:
            head = layers.Activation("sigmoid", dtype="float32", name="probability")
        else:
            head = TwoClassSoftmax(dtype="float32", name="probability")

        # === Functional model ===
        # Scaled inputs; raw pixels are scaled by the preprocessor in `call` first, so that
        # it sees their stored type (the functional graph would cast them to float32).
        t1 = keras.Input((None, None, in_channels), name="t1")
        t2 = keras.Input((None, None, in_channels), name="t2")
        outputs = head(backbone((t1, t2)))
        super().__init__(inputs=(t1, t2), outputs=outputs, **kwargs)
        if dtype is not None:
            # Read by compile(): mixed_float16 wraps the optimizer for loss scaling.
            self.dtype_policy = dtype

        # === Config ===
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.threshold = threshold
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.change_metrics = ChangeMetrics(threshold=threshold)
        self._extra_metrics: list[keras.metrics.Metric] = []

    # The architecture's settings are the backbone's; read them there (said once).
    variant = _backbone_setting("variant")
    depth = _backbone_setting("depth")
    filters = _backbone_setting("filters")
    widths = _backbone_setting("widths")
    convs_per_level = _backbone_setting("convs_per_level")
    dropout = _backbone_setting("dropout")
    batch_norm = _backbone_setting("batch_norm")
    in_channels = _backbone_setting("in_channels")
    num_classes = _backbone_setting("num_classes")
    init = _backbone_setting("init")
    alignment = _backbone_setting("alignment")

    def get_config(self) -> dict:
        # As keras-hub's tasks: the parts as serialized objects, so another backbone or
        # preprocessor is saved and loaded like these.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            "preprocessor": keras.layers.serialize(self.preprocessor),
            "threshold": self.threshold,
        }

    @classmethod
    def from_config(cls, config: dict) -> SiameseChangeModel:
        # Configs saved before the backbone was stored hold the keyword form's arguments
        # (``variant``, ``depth``, ..., ``preprocessing``), which the constructor still takes.
        config = dict(config)
        if "variant" in config:
            # The keyword form of a file saved before the defaults were the published network.
            config = {**SAVED_BEFORE_DEFAULTS, "preprocessing": "auto", **config}
        if config.get("dtype") is not None and isinstance(config.get("backbone"), dict):
            # A policy given to the task reaches the backbone it rebuilds, as in the keyword
            # form; saved configs hold none (the precision is the loader's choice).
            backbone = config["backbone"]
            inner = {**backbone["config"], "dtype": config["dtype"]}
            config["backbone"] = {**backbone, "config": inner}
        for part in ("backbone", "preprocessor"):
            if isinstance(config.get(part), dict):
                config[part] = keras.layers.deserialize(config[part])
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
        recipe: str = "auto",
        **kwargs,
    ) -> None:
        """Configure training; with no arguments, the published training.

        Args:
            optimizer: ``"auto"`` (default) is the recipe's
                (`siamese_cd.models.recipe.recipe_optimizer`): Adam at 1e-3, weight decay
                1e-4 (coupled as PyTorch's for ``"paper"``), learning rate × 0.95 per epoch.
                Or any Keras optimizer or its name.
            loss: ``"auto"`` (default) is the recipe's: the class-weighted NLL
                (``"paper"``) or binary cross-entropy (``"sigmoid"``), whose weights `fit`
                takes from the training data; a name from
                `siamese_cd.models.losses.get_loss` (``"bce"``, ``"dice"``, ``"focal"``,
                ``"bce+dice"``, ...); or any loss taking ``(mask, probabilities)``.
            metrics: extra metrics, updated with ``(mask, probabilities)`` besides the
                built-in change-class metrics. They are not stored in `.keras` files.
            learning_rate: the initial learning rate of ``optimizer="auto"`` (default 1e-3).
            recipe: ``"auto"`` (default): the model's own recipe, ``"paper"`` for the
                published 2-class head on PyTorch's grid and ``"sigmoid"`` otherwise, with
                any optimizer or loss given replacing that part. ``"paper"`` insists on the
                published training to the arithmetic (no optimizer or loss given);
                ``"sigmoid"`` takes its optimizer and loss for any head. See
                `siamese_cd.models.recipe`.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        # `recipe` (the argument) hides the module here.
        optimizer, loss = recipe_objects(
            recipe,
            optimizer,
            loss,
            learning_rate,
            num_classes=self.num_classes,
            # A plugged-in backbone without the setting is on Keras's grid (its own business).
            alignment=getattr(self.backbone, "alignment", "keras"),
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
        `siamese_cd.data.pipeline.stats.change_fraction`; the recipe's per-epoch decay learns the
        epoch length. Callbacks with an ``attach_to(callbacks)`` method are given the list
        (`MaskImageLogger` finds the TensorBoard callback's folder that way). An image file
        TensorFlow cannot decode is named (`siamese_cd.data.readers.undecodable`).
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
        weigh_pending(
            getattr(self, "loss", None), lambda: change_fraction(x, y, progress=verbose), verbose
        )
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
        self._check_size(t1.shape)
        scaled = (self.preprocessor(t1), self.preprocessor(t2))
        return super().call(scaled, training=training, mask=mask)

    def _check_size(self, shape) -> None:
        """Refuse, by name, an input the published grid cannot pool `depth` times (it has no
        padding); said here rather than as a negative dimension deep in a pooling layer."""
        if getattr(self.backbone, "alignment", None) != "torch":
            return
        least = 2**self.backbone.depth
        sides = [side for side in shape[1:3] if side is not None]
        if any(side < least for side in sides):
            raise ConfigError(
                f"an input of {shape[1]}x{shape[2]} pixels is smaller than the {least} "
                f"pixels a side the network of depth {self.backbone.depth} needs on the "
                "published grid (alignment='torch'); give larger images or crops, or build "
                "the model with alignment='keras', which pads"
            )

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
        """Export for serving: a SavedModel folder, an ONNX file or a LiteRT file.

        `siamese_cd.evaluation.export.export_model` does it: ``format`` is
        ``"tf_saved_model"`` (or ``"saved_model"``), ``"onnx"`` (a ``.onnx`` file) or
        ``"litert"`` (a ``.tflite`` file). Every format takes raw ``t1`` and ``t2``
        (B, H, W, in_channels) of any batch, height and width in the pixel type seen in
        training (`preprocessor.pixel_dtype`, float32 if unknown), scales them as the model
        does, and returns ``probability`` (B, H, W, 1), the change probability, and ``mask``
        (uint8, 1 where it reaches `threshold`); a SavedModel as ``serve(t1, t2)`` and its
        ``serving_default`` signature. The file is computed in float32 and checked against
        this model by its own runtime. `kwargs`: ``pixel_dtype`` and ``check`` of
        `export_model`. The converters for ONNX and LiteRT are the extra
        ``pip install 'siamese_cd[export]'``.

        Returns:
            An `ExportSummary` (path, format, pixel type, the check's largest difference).
        """
        from siamese_cd.evaluation.export import export_model

        return export_model(self, filepath, format, verbose=verbose, **kwargs)
