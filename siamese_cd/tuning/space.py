"""The search space of `SiameseChangeModel` for Keras Tuner, and how one trial trains.

`ChangeHyperModel.build` declares the hyperparameters inline, as keras-tuner's own
applications do, and returns a model compiled with the paper's recipe at the trial's learning
rate (`SiameseChangeModel.compile(learning_rate=...)`): the optimizer, its weight decay and
the per-epoch decay come from the model, not from here.

Example:
    >>> import keras_tuner as kt
    >>> hypermodel = ChangeHyperModel(depth=(2, 3), filters=(2, 4), preprocessing="unit")
    >>> hp = kt.HyperParameters()
    >>> model = hypermodel.build(hp)
    >>> model.depth, model.widths == [hp["filters_1"], hp["filters_2"]]
    (2, True)
    >>> [p.name for p in hp.space if p.conditions]  # level 3 only exists at depth 3
    ['filters_3']
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from siamese_cd.callbacks import MaskImageLogger, select_samples
from siamese_cd.errors import ConfigError
from siamese_cd.models.losses import WeightedBinaryCrossentropy, get_loss, is_loss_name
from siamese_cd.models.siamese import VARIANTS, SiameseChangeModel
from siamese_cd.training.pipeline import compiled_model
from siamese_cd.training.precision import POLICIES
from siamese_cd.training.settings import MONITOR

WIDTH_MODES = ("per_level", "growth")
PREPROCESSING_MODES = ("auto", "unit", "standardize")


class FatalConfigError(ConfigError, kt.errors.FatalValueError):
    """A `ConfigError` that stops the whole search instead of failing one trial.

    Keras Tuner turns ordinary exceptions raised while a trial trains into a failed trial and
    moves on; a mistake that every trial would repeat (e.g. no validation data) is raised as
    this class so that the search ends at once with the message.
    """


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _as_range(value, name: str) -> tuple:
    """``(min, max)`` from a scalar (fixed) or a one- or two-element sequence."""
    values = (value,) if _is_scalar(value) else tuple(value)
    if len(values) == 1:
        values = (values[0], values[0])
    if len(values) != 2:
        raise ConfigError(f"{name}: give one value (fixed) or two (min, max), got {value!r}")
    low, high = values
    if low > high:
        raise ConfigError(f"{name}: the minimum {low} is above the maximum {high}")
    return low, high


def _as_choices(value, name: str) -> tuple:
    """Distinct candidates, in the given order, from a scalar (fixed) or a sequence."""
    values = (value,) if _is_scalar(value) else tuple(value)
    values = tuple(dict.fromkeys(values))
    if not values:
        raise ConfigError(f"{name}: give at least one value")
    return values


# A single value is declared with hp.Fixed, so it still shows in trial summaries and HParams.
def _int(hp: kt.HyperParameters, name: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return hp.Fixed(name, low) if low == high else hp.Int(name, low, high)


def _float(hp: kt.HyperParameters, name: str, bounds: tuple[float, float], **kwargs) -> float:
    low, high = bounds
    return hp.Fixed(name, low) if low == high else hp.Float(name, low, high, **kwargs)


def _choice(hp: kt.HyperParameters, name: str, values: tuple):
    return hp.Fixed(name, values[0]) if len(values) == 1 else hp.Choice(name, list(values))


class ChangeHyperModel(kt.HyperModel):
    """The search space of `SiameseChangeModel` for Keras Tuner, and how one trial trains.

    Hyperparameters, in order (each range can be narrowed, or fixed with a single value):

    - ``variant``: ``"diff"``, ``"conc"`` or ``"ef"``.
    - ``depth``: encoder levels, an integer range (default 2 to 5).
    - The width of every level. With ``width_mode="per_level"`` (default) level ``k``
      (``filters_1``, ``filters_2``, ...) picks its own width from ``filters`` times
      ``2**(k - 1)``: with the default ``(8, 16, 32)`` level 1 tries 8, 16 or 32 and level 3
      tries 32, 64 or 128. Levels below the shallowest allowed depth are declared under
      ``hp.conditional_scope("depth", ...)``, so a level the trial's depth does not reach is
      inactive: it takes no value, is not tuned and is not logged. With
      ``width_mode="growth"`` two hyperparameters replace them: ``filters``, the first
      level's width, and ``growth``, the factor from one level to the next (widths
      ``round(filters * growth**(k - 1))``); a smaller space, which suits Bayesian search.
    - ``convs_per_level``: conv units in every level, an integer range (default 2 to 3; level
      1 needs at least 2).
    - ``dropout``: spatial dropout, a float range (default 0.0 to 0.3).
    - ``learning_rate``: the recipe's initial rate, sampled on a log scale (default 1e-4 to
      1e-2). Everything else about the optimizer is the model's recipe.
    - ``loss``: names for `siamese_cd.models.losses.get_loss` (default ``"bce"``, the class-weighted
      cross-entropy, and ``"bce+dice"``).

    A scalar fixes a hyperparameter; a sequence gives the choices, or ``(min, max)`` for
    ranges.

    `build` returns a compiled, already built `SiameseChangeModel`, so ``max_model_size`` and
    Hyperband's weight reloading work. Building is cheap: Keras Tuner builds the model several
    times at start-up to discover the conditional hyperparameters.

    `fit` passes the tuner's callbacks through to `SiameseChangeModel.fit` (the epochs come
    from the tuner), adding a `MaskImageLogger` that writes into the trial's TensorBoard run.

    Args:
        variant: a variant, or the variants to try.
        depth: a depth, or ``(min, max)``; from 2 to 6.
        filters: per-level mode: first-level widths to try, doubled for each deeper level; an
            int fixes the widths at ``filters * 2**(k - 1)``. Growth mode: the first level's
            widths to try.
        width_mode: ``"per_level"`` or ``"growth"`` (see above).
        growth: growth mode only: width factors between levels to try.
        convs_per_level: conv units per level, or ``(min, max)``; at least 2.
        dropout: a dropout rate, or ``(min, max)``, in [0, 1).
        learning_rate: a learning rate, or ``(min, max)`` sampled on a log scale.
        loss: a loss name, or the names to try.
        preprocessing: the models' pixel scaling: ``"auto"``, ``"unit"``, ``"standardize"``
            (each trial measures the training data at `fit`), or the dict of
            `siamese_cd.models.preprocessing.preprocessing_config`, measured once for the
            whole search (what ``tuning/search.py`` does).
        batch_norm: BatchNorm after each conv (not searched).
        in_channels: bands per image.
        num_classes: 1 for a sigmoid head, 2 for softmax.
        threshold: probability counted as change by the metrics and the mask images.
        precision: ``"float32"``, ``"bfloat16"`` or ``"float16"``: every trial's model is
            built with that dtype policy of its own
            (`siamese_cd.training.pipeline.compiled_model`), so neither Keras's global policy
            nor ``keras.backend.clear_session()``, which the tuner calls before every trial,
            changes it.
        pos_weight: weight of change pixels in the ``"bce"`` loss. ``"auto"`` leaves it to
            `SiameseChangeModel.fit`, which reads the training set's change fraction; a
            number (e.g. from `siamese_cd.models.losses.pos_weight_from_fraction`) is compiled into
            every model, so the models the tuner reloads evaluate straight away.
        image_samples: validation samples shown as mask images per trial; 0 for none.
        seed: seed of the choice of those samples.

    Raises:
        ConfigError: if a range is empty or out of what `SiameseChangeModel` accepts.

    Example:
        >>> hypermodel = ChangeHyperModel(depth=(2, 3), filters=(4, 8), loss="bce",
        ...                               preprocessing="unit")
        >>> hp = kt.HyperParameters()
        >>> model = hypermodel.build(hp)
        >>> model.built, model.depth, model.widths
        (True, 2, [4, 8])
        >>> sorted(hp.values)
        ['convs_per_level', 'depth', 'dropout', 'filters_1', 'filters_2', 'learning_rate', \
'loss', 'variant']
    """

    def __init__(
        self,
        *,
        variant: str | Sequence[str] = VARIANTS,
        depth: int | Sequence[int] = (2, 5),
        filters: int | Sequence[int] = (8, 16, 32),
        width_mode: str = "per_level",
        growth: float | Sequence[float] = (1.5, 2.0),
        convs_per_level: int | Sequence[int] = (2, 3),
        dropout: float | Sequence[float] = (0.0, 0.3),
        learning_rate: float | Sequence[float] = (1e-4, 1e-2),
        loss: str | Sequence[str] = ("bce", "bce+dice"),
        preprocessing: str | dict = "auto",
        batch_norm: bool = True,
        in_channels: int = 3,
        num_classes: int = 1,
        threshold: float = 0.5,
        precision: str = "float32",
        pos_weight: float | str = "auto",
        image_samples: int = 6,
        seed: int = 0,
    ):
        super().__init__(name="siamese_change")
        self.variant = _as_choices(variant, "variant")
        self.depth = _as_range(depth, "depth")
        self.width_mode = width_mode
        self.filters = _as_choices(filters, "filters")
        self.growth = _as_choices(growth, "growth")
        self.convs_per_level = _as_range(convs_per_level, "convs_per_level")
        self.dropout = _as_range(dropout, "dropout")
        self.learning_rate = _as_range(learning_rate, "learning_rate")
        self.loss = _as_choices(loss, "loss")
        self._check_space(depth, filters, growth, convs_per_level, dropout, learning_rate)
        if not isinstance(preprocessing, dict) and preprocessing not in PREPROCESSING_MODES:
            raise ConfigError(
                f"preprocessing must be one of {PREPROCESSING_MODES} or a measured config "
                f"dict, got {preprocessing!r}"
            )
        if pos_weight != "auto" and not (isinstance(pos_weight, (int, float)) and pos_weight > 0):
            raise ConfigError(f"pos_weight must be positive or 'auto', got {pos_weight!r}")
        if image_samples < 0:
            raise ConfigError(f"image_samples must be 0 or more, got {image_samples}")
        self.preprocessing = preprocessing
        self.batch_norm = batch_norm
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.threshold = threshold
        if precision not in POLICIES:
            raise FatalConfigError(f"precision must be one of {tuple(POLICIES)}, got {precision!r}")
        self.precision = precision
        self.pos_weight = pos_weight if pos_weight == "auto" else float(pos_weight)
        self.image_samples = image_samples
        self.seed = seed
        self._preview_source = None
        self._preview = None
        self._warned_no_tensorboard = False

    def _check_space(self, depth, filters, growth, convs_per_level, dropout, learning_rate):
        """Raise a `ConfigError` naming the first range `SiameseChangeModel` cannot take."""
        if unknown := [v for v in self.variant if v not in VARIANTS]:
            raise ConfigError(f"variant: unknown {unknown}; use {', '.join(VARIANTS)}")
        if not 2 <= self.depth[0] <= self.depth[1] <= 6 or not all(
            isinstance(d, int) for d in self.depth
        ):
            raise ConfigError(f"depth: whole numbers from 2 to 6, got {depth!r}")
        if self.width_mode not in WIDTH_MODES:
            raise ConfigError(f"width_mode must be one of {WIDTH_MODES}, got {self.width_mode!r}")
        if any(not isinstance(f, int) or f < 1 for f in self.filters):
            raise ConfigError(f"filters: positive whole numbers, got {filters!r}")
        if any(g <= 0 for g in self.growth):
            raise ConfigError(f"growth: positive factors, got {growth!r}")
        if self.convs_per_level[0] < 2 or not all(isinstance(c, int) for c in self.convs_per_level):
            raise ConfigError(
                f"convs_per_level: whole numbers of at least 2 (level 1 holds a conv unit and "
                f"the head), got {convs_per_level!r}"
            )
        if not 0 <= self.dropout[0] <= self.dropout[1] < 1:
            raise ConfigError(f"dropout: rates in [0, 1), got {dropout!r}")
        if self.learning_rate[0] <= 0:
            raise ConfigError(f"learning_rate: positive rates, got {learning_rate!r}")
        if unknown := [name for name in self.loss if not is_loss_name(name)]:
            raise ConfigError(f"loss: unknown {unknown}; use names such as bce, dice, bce+dice")

    def space(self) -> dict[str, Any]:
        """The search space and fixed settings as plain JSON-able values.

        Choices are lists; ranges are ``[min, max]`` lists. A measured preprocessing config
        is named by its scaling only.

        Example:
            >>> ChangeHyperModel(depth=3, loss="bce").space()["depth"]
            [3, 3]
        """
        preprocessing = self.preprocessing
        if isinstance(preprocessing, dict):
            preprocessing = preprocessing.get("scaling", "measured")
        space = {
            "variant": list(self.variant),
            "depth": list(self.depth),
            "width_mode": self.width_mode,
            "filters": list(self.filters),
            "convs_per_level": list(self.convs_per_level),
            "dropout": list(self.dropout),
            "learning_rate": list(self.learning_rate),
            "loss": list(self.loss),
            "preprocessing": preprocessing,
            "batch_norm": self.batch_norm,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "threshold": self.threshold,
            "precision": self.precision,
            "pos_weight": self.pos_weight,
        }
        if self.width_mode == "growth":
            space["growth"] = list(self.growth)
        return space

    def level_widths(self, level: int) -> tuple[int, ...]:
        """Widths level `level` (counted from 1) may take in per-level mode."""
        return tuple(sorted({f * 2 ** (level - 1) for f in self.filters}))

    def build(self, hp: kt.HyperParameters) -> SiameseChangeModel:
        """A compiled, built `SiameseChangeModel` for the values in `hp` (declared if missing)."""
        variant = _choice(hp, "variant", self.variant)
        depth = _int(hp, "depth", self.depth)
        widths = self._widths(hp, depth)
        convs_per_level = _int(hp, "convs_per_level", self.convs_per_level)
        dropout = float(_float(hp, "dropout", self.dropout))
        learning_rate = _float(hp, "learning_rate", self.learning_rate, sampling="log")
        loss = _choice(hp, "loss", self.loss)
        # The same model and recipe as every training run, in the search's precision.
        model = compiled_model(
            self.precision,
            learning_rate=learning_rate,
            loss=self._loss(loss),
            variant=variant,
            depth=depth,
            filters=widths,
            convs_per_level=convs_per_level,
            dropout=dropout,
            batch_norm=self.batch_norm,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            threshold=self.threshold,
            preprocessing=self.preprocessing,
        )
        # Built now, the optimizer's slots are restored with the weights when Hyperband
        # continues a trial from its checkpoint (and when the tuner reloads the best one).
        model.optimizer.build(model.trainable_variables)
        return model

    def _widths(self, hp: kt.HyperParameters, depth: int) -> list[int]:
        if self.width_mode == "growth":
            base = _choice(hp, "filters", self.filters)
            growth = _choice(hp, "growth", self.growth)
            return [max(1, round(base * growth**level)) for level in range(depth)]
        widths = []
        shallowest, deepest = self.depth
        for level in range(1, deepest + 1):
            name, choices = f"filters_{level}", self.level_widths(level)
            if level <= shallowest:
                widths.append(_choice(hp, name, choices))
                continue
            # Declared for every trial so the space is complete, but active (given a value,
            # tuned, logged) only when the trial's depth reaches this level.
            with hp.conditional_scope("depth", list(range(level, deepest + 1))):
                width = _choice(hp, name, choices)
            if level <= depth:
                widths.append(width)
        return widths

    def _loss(self, name: str) -> str | keras.losses.Loss:
        if self.pos_weight == "auto":
            return name
        loss = get_loss(name)
        for part in getattr(loss, "losses", [loss]):
            if isinstance(part, WeightedBinaryCrossentropy):
                part.pos_weight = self.pos_weight
        return loss

    def _preview_samples(self, data):
        # Decoded once per search, not once per trial; the arrays are what each trial shows.
        if self._preview is None or self._preview_source is not data:
            self._preview = select_samples(data, self.image_samples, seed=self.seed)
            self._preview_source = data
        return self._preview

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs):
        """Train one trial: `model.fit(*args, **kwargs)` with mask images of the trial.

        ``kwargs`` must hold ``validation_data`` (the objective is ``val_f1``). The tuner's
        callbacks in ``kwargs["callbacks"]`` are passed on. Keras Tuner points a
        `keras.callbacks.TensorBoard` among them at the trial's run and adds the trial's
        HParams; a `MaskImageLogger` (one is added unless given) writes into
        ``<that run>/images``.

        Returns:
            The `keras.callbacks.History` of the trial.

        Raises:
            FatalConfigError: without validation data.
        """
        validation = kwargs.get("validation_data")
        if validation is None:
            raise FatalConfigError(
                f"ChangeHyperModel.fit needs validation_data: the objective is {MONITOR}"
            )
        callbacks = list(kwargs.pop("callbacks", None) or [])
        board = next((c for c in callbacks if type(c).__name__ == "TensorBoard"), None)
        if board is not None:
            # The tuner set board.log_dir to the trial's run and deep-copied the callbacks per
            # trial, so every MaskImageLogger copy is pointed at this trial's run.
            loggers = [c for c in callbacks if isinstance(c, MaskImageLogger)]
            for logger in loggers:
                logger.log_dir = Path(board.log_dir)
            if not loggers and self.image_samples:
                callbacks.append(
                    MaskImageLogger(
                        self._preview_samples(validation),
                        log_dir=board.log_dir,
                        max_samples=self.image_samples,
                        threshold=self.threshold,
                        seed=self.seed,
                    )
                )
        elif not self._warned_no_tensorboard:
            self._warned_no_tensorboard = True
            warnings.warn(
                "no keras.callbacks.TensorBoard among the search callbacks: trials get no "
                "TensorBoard runs, HParams or mask images",
                stacklevel=2,
            )
        return model.fit(*args, callbacks=callbacks, **kwargs)
