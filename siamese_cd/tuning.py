"""Keras Tuner search over the FC-Siam networks: depth, widths, convs, variant, dropout, lr, loss.

`ChangeHyperModel` defines the search space and trains one trial; `make_tuner` wraps it in a
Hyperband, Bayesian or random-search tuner whose objective is ``val_f1`` (maximised); `main`
is the command behind ``python tuning/search.py``.

Every trial gets its own TensorBoard run (scalars, ``t1 | t2 | truth | prediction`` panels and
HParams) when a `keras.callbacks.TensorBoard` is passed to ``tuner.search``: Keras Tuner gives a
per-trial log folder only to callbacks of that class, and `ChangeHyperModel.fit` puts the mask
images beside it.

Example:
    >>> import keras
    >>> from siamese_cd import PairedImageDataset
    >>> from siamese_cd.tuning import ChangeHyperModel, make_tuner
    >>> train = PairedImageDataset("data/synthetic/train", batch_size=16, augment=True,
    ...                            shuffle=True)  # doctest: +SKIP
    >>> val = PairedImageDataset("data/synthetic/val", batch_size=16)  # doctest: +SKIP
    >>> hypermodel = ChangeHyperModel(depth=(2, 4), filters=(8, 16), variant=("diff", "ef"))
    >>> tuner = make_tuner("hyperband", hypermodel, max_epochs=9, directory="logs/tuning",
    ...                    project_name="demo")  # doctest: +SKIP
    >>> tuner.search(train, validation_data=val, epochs=9, callbacks=[
    ...     keras.callbacks.TensorBoard("logs/tuning/demo/tensorboard")])  # doctest: +SKIP
    >>> best = tuner.get_best_models(1)[0]  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from siamese_cd.callbacks import MaskImageLogger, select_samples
from siamese_cd.cli import loss_name, positive_int
from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.errors import ConfigError, DatasetError, SiameseCDError, TrainingError
from siamese_cd.losses import (
    WeightedBinaryCrossentropy,
    get_loss,
    is_loss_name,
    pos_weight_from_fraction,
)
from siamese_cd.models.siamese import VARIANTS, SiameseChangeModel
from siamese_cd.training import LR_DECAY_PER_EPOCH, WEIGHT_DECAY, split_folder

__all__ = [
    "OBJECTIVE",
    "TUNERS",
    "BayesianOptimization",
    "ChangeHyperModel",
    "FatalConfigError",
    "Hyperband",
    "RandomSearch",
    "TrialSummary",
    "build_parser",
    "configure_devices",
    "count_params",
    "distributed_role",
    "export_best",
    "format_table",
    "hypermodel_from_args",
    "load_datasets",
    "main",
    "make_tuner",
    "run_search",
    "summarize_trials",
]

#: What every tuner maximises: the change-class F1 on the validation split, over all pixels.
OBJECTIVE = kt.Objective("val_f1", direction="max")
WIDTH_MODES = ("per_level", "growth")
SETTINGS_NAME = "search_settings.json"
BEST_MODEL_NAME = "best_model.keras"
BEST_HPS_NAME = "best_hyperparameters.json"
TENSORBOARD_DIR = "tensorboard"


class FatalConfigError(ConfigError, kt.errors.FatalValueError):
    """A `ConfigError` that stops the whole search instead of failing one trial.

    Keras Tuner turns ordinary exceptions raised while a trial trains into a failed trial and
    moves on; a mistake that every trial would repeat (e.g. no validation data) is raised as
    this class so that the search ends at once with the message.
    """


# -- the search space ---------------------------------------------------------------------------


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


def _int(hp: kt.HyperParameters, name: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return hp.Fixed(name, low) if low == high else hp.Int(name, low, high)


def _float(hp: kt.HyperParameters, name: str, bounds: tuple[float, float], **kwargs) -> float:
    low, high = bounds
    return hp.Fixed(name, low) if low == high else hp.Float(name, low, high, **kwargs)


def _choice(hp: kt.HyperParameters, name: str, values: tuple):
    return hp.Fixed(name, values[0]) if len(values) == 1 else hp.Choice(name, list(values))


def _decayed_learning_rate(epoch: int, learning_rate: float, *, initial: float, rate: float):
    """The paper's schedule, from the epoch index so Hyperband's resumed epochs stay on it."""
    return initial * rate**epoch


class ChangeHyperModel(kt.HyperModel):
    """The search space of `SiameseChangeModel` for Keras Tuner, and how one trial trains.

    Hyperparameters, in order (each range can be narrowed, or fixed with a single value):

    - ``variant``: ``"diff"``, ``"conc"`` or ``"ef"``.
    - ``depth``: encoder levels, an integer range (default 2 to 5).
    - The width of every level. With ``width_mode="per_level"`` (default) level ``k``
      (``filters_1``, ``filters_2``, ...) picks its own width from ``filters`` times
      ``2**(k - 1)``: with the default ``(8, 16, 32)`` level 1 tries 8, 16 or 32 and level 3
      tries 32, 64 or 128. Levels below the deepest possible one are declared under
      ``hp.conditional_scope("depth", ...)``, so a level the trial's depth does not reach is
      inactive: it takes no value, is not tuned and is not logged. With
      ``width_mode="growth"`` two hyperparameters replace them: ``filters``, the first
      level's width, and ``growth``, the factor from one level to the next (widths
      ``round(filters * growth**(k - 1))``); a smaller space, which suits Bayesian search.
    - ``convs_per_level``: conv units in every level, an integer range (default 2 to 3; level
      1 needs at least 2).
    - ``dropout``: spatial dropout, a float range (default 0.0 to 0.3).
    - ``learning_rate``: Adam's initial rate, sampled on a log scale (default 1e-4 to 1e-2).
      Adam has the paper's weight decay 1e-4, and `fit` multiplies the rate by `lr_decay`
      each epoch.
    - ``loss``: names for `siamese_cd.losses.get_loss` (default ``"bce"``, the class-weighted
      cross-entropy, and ``"bce+dice"``).

    A scalar fixes a hyperparameter (recorded with ``hp.Fixed``, so it still shows in the
    trial summaries and HParams); a sequence gives the choices, or ``(min, max)`` for ranges.

    `build` returns a compiled, already built `SiameseChangeModel`, so ``max_model_size`` and
    Hyperband's weight reloading work. Building is cheap: Keras Tuner builds the model several
    times at start-up to discover the conditional hyperparameters.

    `fit` passes the tuner's callbacks through to `SiameseChangeModel.fit` (the epochs come
    from the tuner) and adds a `MaskImageLogger` writing into the trial's TensorBoard run.

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
        batch_norm: BatchNorm after each conv (not searched).
        in_channels: bands per image.
        num_classes: 1 for a sigmoid head, 2 for softmax.
        threshold: probability counted as change by the metrics and the mask images.
        mixed_precision: build under the ``mixed_float16`` policy. It is set for each build
            because ``keras.backend.clear_session()``, which the tuner calls before every
            trial, resets the global policy.
        lr_decay: factor applied to the learning rate after each epoch (1 for none).
        pos_weight: weight of change pixels in the ``"bce"`` loss. ``"auto"`` leaves it to
            `SiameseChangeModel.fit`, which reads the training set's change fraction, so
            models the tuner reloads (``get_best_models``) need
            ``model.loss.resolve_auto(train)`` before `evaluate`; a number (e.g. from
            `siamese_cd.losses.pos_weight_from_fraction`) is compiled into every model.
        image_samples: validation samples shown as mask images per trial; 0 for none.
        seed: seed of the choice of those samples.

    Raises:
        ConfigError: if a range is empty or out of what `SiameseChangeModel` accepts.

    Example:
        >>> hypermodel = ChangeHyperModel(depth=(2, 3), filters=(4, 8), loss="bce")
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
        batch_norm: bool = True,
        in_channels: int = 3,
        num_classes: int = 1,
        threshold: float = 0.5,
        mixed_precision: bool = False,
        lr_decay: float = LR_DECAY_PER_EPOCH,
        pos_weight: float | str = "auto",
        image_samples: int = 6,
        seed: int = 0,
    ):
        super().__init__(name="siamese_change")
        self.variant = _as_choices(variant, "variant")
        if unknown := [v for v in self.variant if v not in VARIANTS]:
            raise ConfigError(f"variant: unknown {unknown}; use {', '.join(VARIANTS)}")
        self.depth = _as_range(depth, "depth")
        if not 2 <= self.depth[0] <= self.depth[1] <= 6 or not all(
            isinstance(d, int) for d in self.depth
        ):
            raise ConfigError(f"depth: whole numbers from 2 to 6, got {depth!r}")
        if width_mode not in WIDTH_MODES:
            raise ConfigError(f"width_mode must be one of {WIDTH_MODES}, got {width_mode!r}")
        self.width_mode = width_mode
        self.filters = _as_choices(filters, "filters")
        if any(not isinstance(f, int) or f < 1 for f in self.filters):
            raise ConfigError(f"filters: positive whole numbers, got {filters!r}")
        self.growth = _as_choices(growth, "growth")
        if any(g <= 0 for g in self.growth):
            raise ConfigError(f"growth: positive factors, got {growth!r}")
        self.convs_per_level = _as_range(convs_per_level, "convs_per_level")
        if self.convs_per_level[0] < 2 or not all(isinstance(c, int) for c in self.convs_per_level):
            raise ConfigError(
                f"convs_per_level: whole numbers of at least 2 (level 1 holds a conv unit and "
                f"the head), got {convs_per_level!r}"
            )
        self.dropout = _as_range(dropout, "dropout")
        if not 0 <= self.dropout[0] <= self.dropout[1] < 1:
            raise ConfigError(f"dropout: rates in [0, 1), got {dropout!r}")
        self.learning_rate = _as_range(learning_rate, "learning_rate")
        if self.learning_rate[0] <= 0:
            raise ConfigError(f"learning_rate: positive rates, got {learning_rate!r}")
        self.loss = _as_choices(loss, "loss")
        if unknown := [name for name in self.loss if not is_loss_name(name)]:
            raise ConfigError(f"loss: unknown {unknown}; use names such as bce, dice, bce+dice")
        if not 0 < lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {lr_decay}")
        if pos_weight != "auto" and not (isinstance(pos_weight, (int, float)) and pos_weight > 0):
            raise ConfigError(f"pos_weight must be positive or 'auto', got {pos_weight!r}")
        if image_samples < 0:
            raise ConfigError(f"image_samples must be 0 or more, got {image_samples}")
        self.batch_norm = batch_norm
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.threshold = threshold
        self.mixed_precision = mixed_precision
        self.lr_decay = lr_decay
        self.pos_weight = pos_weight if pos_weight == "auto" else float(pos_weight)
        self.image_samples = image_samples
        self.seed = seed
        self._preview_source = None
        self._preview = None
        self._warned_no_tensorboard = False

    def space(self) -> dict[str, Any]:
        """The search space and fixed settings as plain JSON-able values.

        Choices are lists; ranges are ``[min, max]`` lists.
        """
        space = {
            "variant": list(self.variant),
            "depth": list(self.depth),
            "width_mode": self.width_mode,
            "filters": list(self.filters),
            "convs_per_level": list(self.convs_per_level),
            "dropout": list(self.dropout),
            "learning_rate": list(self.learning_rate),
            "loss": list(self.loss),
            "batch_norm": self.batch_norm,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "threshold": self.threshold,
            "mixed_precision": self.mixed_precision,
            "lr_decay": self.lr_decay,
            "pos_weight": self.pos_weight,
        }
        if self.width_mode == "growth":
            space["growth"] = list(self.growth)
        return space

    def level_widths(self, level: int) -> tuple[int, ...]:
        """Widths level `level` (counted from 1) may take in per-level mode."""
        return tuple(sorted({f * 2 ** (level - 1) for f in self.filters}))

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
            depths = list(range(level, deepest + 1))
            with hp.conditional_scope("depth", depths):
                width = _choice(hp, name, choices)
            if level <= depth:
                widths.append(width)
        return widths

    def model_config(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """The `SiameseChangeModel` arguments for the values in `hp`.

        Declares the hyperparameters in `hp` when they are missing, as `build` does.

        Example:
            >>> ChangeHyperModel(depth=2, filters=8, variant="ef").model_config(
            ...     kt.HyperParameters())["filters"]
            [8, 16]
        """
        variant = _choice(hp, "variant", self.variant)
        depth = _int(hp, "depth", self.depth)
        widths = self._widths(hp, depth)
        return {
            "variant": variant,
            "depth": depth,
            "filters": widths,
            "convs_per_level": _int(hp, "convs_per_level", self.convs_per_level),
            "dropout": float(_float(hp, "dropout", self.dropout)),
            "batch_norm": self.batch_norm,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "threshold": self.threshold,
        }

    def build(self, hp: kt.HyperParameters) -> SiameseChangeModel:
        """A compiled, built `SiameseChangeModel` for the values in `hp`."""
        config = self.model_config(hp)
        learning_rate = _float(hp, "learning_rate", self.learning_rate, sampling="log")
        loss = self._loss(_choice(hp, "loss", self.loss))
        policy = keras.mixed_precision.global_policy()
        if self.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = SiameseChangeModel(**config)
        finally:
            keras.mixed_precision.set_global_policy(policy)
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=WEIGHT_DECAY)
        model.compile(optimizer=optimizer, loss=loss)
        # Built now, the optimizer's slots are restored with the weights when Hyperband
        # continues a trial from its checkpoint (and when the tuner reloads the best one).
        model.optimizer.build(model.trainable_variables)
        return model

    def _loss(self, name: str) -> keras.losses.Loss:
        loss = get_loss(name)
        if self.pos_weight != "auto":
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
        """Train one trial: `model.fit(*args, **kwargs)` plus mask images and the lr schedule.

        ``kwargs`` must hold ``validation_data`` (the objective is ``val_f1``). The tuner's
        callbacks in ``kwargs["callbacks"]`` are passed on; if one is a
        `keras.callbacks.TensorBoard` (whose ``log_dir`` the tuner has set to the trial's run),
        a `MaskImageLogger` is added writing to ``<that log_dir>/images``, or a
        `MaskImageLogger` already among the callbacks is moved there.

        Returns:
            The `keras.callbacks.History` of the trial.

        Raises:
            FatalConfigError: without validation data.
        """
        validation = kwargs.get("validation_data")
        if validation is None:
            raise FatalConfigError(
                "ChangeHyperModel.fit needs validation_data: the objective is val_f1"
            )
        callbacks = list(kwargs.pop("callbacks", None) or [])
        board = next((c for c in callbacks if type(c).__name__ == "TensorBoard"), None)
        loggers = [c for c in callbacks if isinstance(c, MaskImageLogger)]
        if board is not None:
            # The tuner deep-copies callbacks per trial, so moving this copy is safe.
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
        if self.lr_decay != 1:
            schedule = functools.partial(
                _decayed_learning_rate, initial=hp.get("learning_rate"), rate=self.lr_decay
            )
            callbacks.append(keras.callbacks.LearningRateScheduler(schedule))
        return model.fit(*args, callbacks=callbacks, **kwargs)


# -- tuners -------------------------------------------------------------------------------------


class _ReportingTuner:
    """Prints one line when a trial starts and one when it ends, naming the tuner process.

    Keras Tuner's own display runs only in the chief of a distributed search and hides why a
    trial failed; these lines show every trial in the process that runs it, with the error.
    """

    def on_trial_begin(self, trial):
        print(f"Trial id {trial.trial_id} started on {self.tuner_id}", flush=True)
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        status = trial.status
        if status == kt.engine.trial.TrialStatus.COMPLETED:
            score = self.oracle.get_trial(trial.trial_id).score
            print(f"Trial id {trial.trial_id} completed on {self.tuner_id}: val_f1 {score:.4f}")
        else:
            reason = (trial.message or "no message").strip().splitlines()[-1]
            print(
                f"Trial id {trial.trial_id} {status.lower()} on {self.tuner_id}: {reason}",
                file=sys.stderr,
            )
        sys.stdout.flush()


class Hyperband(_ReportingTuner, kt.Hyperband):
    """`keras_tuner.Hyperband` printing a line per trial start and end."""


class BayesianOptimization(_ReportingTuner, kt.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` printing a line per trial start and end."""


class RandomSearch(_ReportingTuner, kt.RandomSearch):
    """`keras_tuner.RandomSearch` printing a line per trial start and end."""


TUNERS = {"hyperband": Hyperband, "bayesian": BayesianOptimization, "random": RandomSearch}


def make_tuner(
    kind: str,
    hypermodel: ChangeHyperModel,
    *,
    max_trials: int | None = None,
    max_epochs: int = 20,
    hyperband_factor: int = 3,
    executions_per_trial: int = 1,
    max_model_size: int | None = None,
    directory: str | os.PathLike = "logs/tuning",
    project_name: str = "siamese_cd",
    overwrite: bool = False,
    seed: int | None = 0,
    distribution_strategy=None,
) -> kt.Tuner:
    """A tuner maximising ``val_f1`` over `hypermodel`'s space.

    With ``overwrite=False`` an existing project in ``directory/project_name`` is resumed:
    finished trials are kept and an interrupted one is run again.

    Args:
        kind: ``"hyperband"``, ``"bayesian"`` or ``"random"``.
        hypermodel: the search space.
        max_trials: trials to run (default 10 for Bayesian and random search). Hyperband
            plans its own trials from `max_epochs` and `hyperband_factor`; a value here caps
            their number.
        max_epochs: Hyperband's largest epoch budget of one model. The other tuners take the
            epochs from ``search(epochs=...)``.
        hyperband_factor: Hyperband's reduction factor between rounds.
        executions_per_trial: models trained (from new initial weights) per trial; their
            ``val_f1`` is averaged.
        max_model_size: trainable parameters above which a model is skipped (trial failed).
        directory: where projects live.
        project_name: the project's folder in `directory`.
        overwrite: start afresh, deleting the project.
        seed: seed of the tuner's sampling.
        distribution_strategy: e.g. `tf.distribute.MirroredStrategy()`; each trial builds
            and trains under its scope.

    Raises:
        ConfigError: for an unknown `kind` or a budget below 1.

    Example:
        >>> tuner = make_tuner("random", ChangeHyperModel(depth=2), max_trials=5,
        ...                    directory="logs/tuning", project_name="quick")  # doctest: +SKIP
    """
    if kind not in TUNERS:
        raise ConfigError(f"tuner must be one of {', '.join(TUNERS)}, got {kind!r}")
    for name, value in (
        ("max_trials", max_trials),
        ("max_epochs", max_epochs),
        ("executions_per_trial", executions_per_trial),
        ("max_model_size", max_model_size),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if hyperband_factor < 2:
        raise ConfigError(f"hyperband_factor must be at least 2, got {hyperband_factor}")
    common = dict(
        hypermodel=hypermodel,
        objective=OBJECTIVE,
        seed=seed,
        executions_per_trial=executions_per_trial,
        max_model_size=max_model_size,
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        distribution_strategy=distribution_strategy,
    )
    if kind == "hyperband":
        tuner = Hyperband(max_epochs=max_epochs, factor=hyperband_factor, **common)
        # The oracle stops creating trials once it holds max_trials of them (base Oracle
        # logic, which Hyperband inherits without exposing the argument).
        tuner.oracle.max_trials = max_trials
        return tuner
    return TUNERS[kind](max_trials=10 if max_trials is None else max_trials, **common)


# -- results ------------------------------------------------------------------------------------


def count_params(model: keras.Model) -> int:
    """Trainable parameters, as Keras Tuner counts them for ``max_model_size``."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


@dataclass
class TrialSummary:
    """One finished trial: its score, when it peaked, its size and its hyperparameters.

    `model_config` holds the `SiameseChangeModel` arguments and `compile_config` the optimizer
    and loss settings, enough to train the same network again from scratch.
    """

    trial_id: str
    val_f1: float
    best_epoch: int
    params: int
    hyperparameters: dict[str, Any]
    model_config: dict[str, Any]
    compile_config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "val_f1": self.val_f1,
            "best_epoch": self.best_epoch,
            "trainable_params": self.params,
            "hyperparameters": self.hyperparameters,
            "model_config": self.model_config,
            "compile": self.compile_config,
        }


def summarize_trials(tuner: kt.Tuner, hypermodel: ChangeHyperModel) -> list[TrialSummary]:
    """Every completed trial, best ``val_f1`` first, with its parameter count.

    Each trial's model is built once (no training) to count its parameters.
    """
    oracle = tuner.oracle
    ranked = [
        t
        for t in oracle.get_best_trials(len(oracle.trials))
        if t.status == kt.engine.trial.TrialStatus.COMPLETED
    ]
    summaries = []
    for trial in ranked:
        hp = trial.hyperparameters.copy()
        keras.backend.clear_session(free_memory=False)
        model = hypermodel.build(hp)
        summaries.append(
            TrialSummary(
                trial_id=trial.trial_id,
                val_f1=float(trial.score),
                best_epoch=int(trial.best_step) + 1,
                params=count_params(model),
                hyperparameters={k: v for k, v in hp.values.items() if not k.startswith("tuner/")},
                model_config=hypermodel.model_config(hp),
                compile_config={
                    "optimizer": "adam",
                    "learning_rate": float(hp.get("learning_rate")),
                    "weight_decay": WEIGHT_DECAY,
                    "lr_decay_per_epoch": hypermodel.lr_decay,
                    "loss": str(hp.get("loss")),
                },
            )
        )
    return summaries


def format_table(summaries: Sequence[TrialSummary]) -> str:
    """A plain-text table: rank, trial, val_f1, best epoch, parameters, hyperparameters."""
    header = (
        "rank", "trial", "val_f1", "epoch", "params", "variant", "depth", "widths",
        "convs", "dropout", "lr", "loss",
    )  # fmt: skip
    rows = [header]
    for rank, s in enumerate(summaries, start=1):
        config = s.model_config
        rows.append(
            (
                str(rank),
                s.trial_id,
                f"{s.val_f1:.4f}",
                str(s.best_epoch),
                f"{s.params:,}",
                config["variant"],
                str(config["depth"]),
                "-".join(str(w) for w in config["filters"]),
                str(config["convs_per_level"]),
                f"{config['dropout']:.2f}",
                f"{s.compile_config['learning_rate']:.2e}",
                s.compile_config["loss"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {0, 2, 3, 4, 6, 8, 9, 10}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def export_best(
    tuner: kt.Tuner,
    best: TrialSummary,
    project_dir: str | os.PathLike,
    train: PairedImageDataset | None = None,
) -> tuple[Path, Path]:
    """Write ``best_hyperparameters.json`` and ``best_model.keras`` into `project_dir`.

    The model carries the weights of the best trial's best epoch. A class-weighted loss still
    waiting for the training set's change fraction is resolved from `train` first, so the
    loaded model can `evaluate()` straight away.

    Returns:
        The paths of the JSON file and the model file.
    """
    project_dir = Path(project_dir)
    hps_path = project_dir / BEST_HPS_NAME
    record = {**best.to_dict(), "objective": "val_f1", "model": BEST_MODEL_NAME}
    hps_path.write_text(json.dumps(record, indent=2) + "\n")
    model = tuner.get_best_models(1)[0]
    loss = getattr(model, "loss", None)
    if train is not None and getattr(loss, "auto_pending", False):
        loss.resolve_auto(train, verbose=False)
    model_path = project_dir / BEST_MODEL_NAME
    model.save(model_path)
    return hps_path, model_path


# -- devices and distribution -------------------------------------------------------------------


def distributed_role() -> str | None:
    """``"chief"``, ``"worker"`` or None, from Keras Tuner's ``KERASTUNER_*`` variables.

    Raises:
        ConfigError: if the variables are set only in part.
    """
    names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    present = [name for name in names if os.environ.get(name)]
    if not present or present == ["KERASTUNER_TUNER_ID"]:
        return None  # a tuner id alone only names the tuner of a one-process search
    if missing := [name for name in names if name not in present]:
        raise ConfigError(f"distributed search needs {', '.join(names)}; missing {missing}")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def configure_devices(gpus: int | None = None, *, chief: bool = False):
    """Choose devices, enable GPU memory growth, print what will be used.

    Must run before TensorFlow touches a device.

    Args:
        gpus: GPUs to use (the first ones visible); None for all, 0 for the CPU only.
        chief: the chief of a distributed search, which only runs the oracle: GPUs are hidden
            from it so that its start-up builds do not hold GPU memory the workers need.

    Returns:
        A `tf.distribute.MirroredStrategy` over the GPUs when more than one is used, else None.

    Raises:
        ConfigError: if more GPUs are asked for than are visible, or devices were already
            initialised.
    """
    import tensorflow as tf

    visible = tf.config.list_physical_devices("GPU")
    cpus = os.cpu_count() or 1
    try:
        if chief:
            tf.config.set_visible_devices([], "GPU")
            print(f"Devices: chief (runs the oracle, trains nothing); CPU ({cpus} cores)")
            return None
        if gpus is not None and gpus > len(visible):
            raise ConfigError(f"--gpus {gpus}: only {len(visible)} GPU(s) visible")
        chosen = visible if gpus is None else visible[:gpus]
        tf.config.set_visible_devices(chosen, "GPU")
        for gpu in chosen:
            # Without it TensorFlow maps nearly all GPU memory at start, which starves other
            # processes sharing the GPU (e.g. two tuner workers).
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as error:
        raise ConfigError(
            f"devices must be configured before TensorFlow uses them: {error}"
        ) from error
    if not chosen:
        print(f"Devices: CPU ({cpus} cores), no GPU" + (" visible" if not visible else " used"))
        return None
    lines = [f"Devices: {len(chosen)} of {len(visible)} GPU(s), memory growth on"]
    for index, gpu in enumerate(chosen):
        details = tf.config.experimental.get_device_details(gpu)
        name = details.get("device_name", gpu.name)
        capability = details.get("compute_capability")
        suffix = f", compute capability {capability[0]}.{capability[1]}" if capability else ""
        lines.append(f"  GPU {index}: {name}{suffix}")
    print("\n".join(lines))
    if len(chosen) == 1:
        return None
    strategy = tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(chosen))])
    print(f"MirroredStrategy: every trial trains on {len(chosen)} GPUs")
    return strategy


# -- the command --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``python tuning/search.py``."""
    parser = argparse.ArgumentParser(
        prog="tuning/search.py",
        description="Keras Tuner search over FC-EF / FC-Siam networks on DATA/train, scored "
        "by val_f1 on DATA/val. Rerunning the same command resumes the search.",
    )
    parser.add_argument("--data", required=True, help="folder holding train/ and val/")
    parser.add_argument("--tuner", choices=tuple(TUNERS), default="hyperband")
    parser.add_argument(
        "--max-trials",
        type=positive_int,
        help="trials to run (default 10; Hyperband: no cap, it plans its own trials)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=20,
        help="epochs per trial; Hyperband's largest budget (default 20)",
    )
    parser.add_argument(
        "--hyperband-factor", type=int, default=3, help="Hyperband reduction factor (default 3)"
    )
    parser.add_argument("--executions-per-trial", type=positive_int, default=1)
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="global batch (default 16)"
    )
    parser.add_argument(
        "--crop-size", type=positive_int, help="train on one random crop of this side per scene"
    )
    parser.add_argument("--directory", default="logs/tuning", help="default logs/tuning")
    parser.add_argument("--project-name", default="siamese_cd", help="default siamese_cd")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the project and start afresh"
    )
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument(
        "--gpus", type=int, help="GPUs to use (default all; 0 = CPU); >1 trains each trial on all"
    )
    parser.add_argument(
        "--max-model-size", type=positive_int, help="skip models with more trainable params"
    )
    parser.add_argument("--top", type=positive_int, default=5, help="trials in the summary")
    parser.add_argument(
        "--image-samples",
        type=int,
        default=6,
        help="validation samples shown as mask images per trial (default 6; 0 = none)",
    )
    space = parser.add_argument_group(
        "search space", "One value fixes a hyperparameter; MIN MAX or a list narrows it."
    )
    space.add_argument("--variant", nargs="+", choices=VARIANTS, help="default diff conc ef")
    space.add_argument("--depth", nargs="+", type=int, metavar="N", help="MIN MAX (default 2 5)")
    space.add_argument(
        "--width-mode",
        choices=("per-level", "growth"),
        default="per-level",
        help="per-level: each level picks a width; growth: first width x growth per level",
    )
    space.add_argument(
        "--filters",
        nargs="+",
        type=positive_int,
        metavar="N",
        help="first-level widths (default 8 16 32); level k tries them x 2^(k-1)",
    )
    space.add_argument(
        "--growth", nargs="+", type=float, metavar="F", help="growth mode (default 1.5 2)"
    )
    space.add_argument(
        "--convs-per-level", nargs="+", type=int, metavar="N", help="MIN MAX (default 2 3)"
    )
    space.add_argument("--dropout", nargs="+", type=float, metavar="F", help="default 0 0.3")
    space.add_argument(
        "--learning-rate", nargs="+", type=float, metavar="F", help="log scale (default 1e-4 1e-2)"
    )
    space.add_argument(
        "--loss", nargs="+", type=loss_name, metavar="NAME", help="default bce bce+dice"
    )
    return parser


def hypermodel_from_args(
    args: argparse.Namespace, pos_weight: float | str = "auto"
) -> ChangeHyperModel:
    """A `ChangeHyperModel` with the CLI's narrowed or fixed ranges (defaults elsewhere)."""
    ranges = {
        "variant": args.variant,
        "depth": args.depth,
        "filters": args.filters,
        "growth": args.growth,
        "convs_per_level": args.convs_per_level,
        "dropout": args.dropout,
        "learning_rate": args.learning_rate,
        "loss": args.loss,
    }
    for name in ("depth", "convs_per_level", "dropout", "learning_rate"):
        if ranges[name] is not None and len(ranges[name]) > 2:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag}: give one value (fixed) or two (MIN MAX)")
    if args.growth is not None and args.width_mode != "growth":
        raise ConfigError("--growth applies to --width-mode growth")
    return ChangeHyperModel(
        **{k: v for k, v in ranges.items() if v is not None},
        width_mode=args.width_mode.replace("-", "_"),
        mixed_precision=args.mixed_precision,
        pos_weight=pos_weight,
        image_samples=args.image_samples,
        seed=args.seed,
    )


def load_datasets(
    data: str | os.PathLike, batch_size: int, crop_size: int | None = None, seed: int = 0
) -> tuple[PairedImageDataset, PairedImageDataset]:
    """Training (shuffled, augmented, optionally cropped) and validation splits of `data`.

    Raises:
        DatasetError: if `data`, ``train/`` or ``val/`` is missing, or files do not pair.
        ConfigError: if `crop_size` is given but this `PairedImageDataset` cannot crop.
    """
    data = Path(data)
    if not data.is_dir():
        raise DatasetError(f"{data}: no such folder (expected one holding train/ and val/)")
    train_dir, val_dir = split_folder(data, "train"), split_folder(data, "val")
    extra = {}
    if crop_size is not None:
        if "crop_size" not in inspect.signature(PairedImageDataset).parameters:
            raise ConfigError("--crop-size needs a PairedImageDataset with crop_size=")
        extra["crop_size"] = crop_size
    train = PairedImageDataset(
        train_dir, batch_size=batch_size, augment=True, shuffle=True, seed=seed, **extra
    )
    val = PairedImageDataset(val_dir, batch_size=batch_size)
    return train, val


def _check_settings(project_dir: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to resume a project with other settings: the saved space would silently win."""
    path = project_dir / SETTINGS_NAME
    if overwrite or not path.is_file():
        return
    saved = json.loads(path.read_text())
    changed = [
        f"{key}: {saved.get(key)!r} then, {settings.get(key)!r} now"
        for key in sorted(set(saved) | set(settings))
        if saved.get(key) != settings.get(key)
    ]
    if changed:
        raise ConfigError(
            f"{project_dir} holds a search started with other settings ("
            + "; ".join(changed)
            + "). Rerun with the same flags to resume it, or pass --overwrite or another "
            "--project-name to start a new search."
        )


def run_search(args: argparse.Namespace) -> list[TrialSummary] | None:
    """Run the search the parsed arguments describe; see `main`.

    Returns:
        The completed trials, best first; None in a distributed worker, which leaves the
        summary and export to the chief.
    """
    # Arguments and data are checked first: mistakes surface before TensorFlow starts.
    role = distributed_role()
    hypermodel = hypermodel_from_args(args)
    train, val = load_datasets(args.data, args.batch_size, args.crop_size, args.seed)
    if any("bce" in map(str.strip, name.split("+")) for name in hypermodel.loss):
        # Read once here rather than by every trial, and compiled into every model, so the
        # models the tuner reloads evaluate straight away.
        fraction = train.change_fraction(progress=sys.stderr.isatty())
        pos_weight = pos_weight_from_fraction(fraction)
        print(
            f"Change fraction of the training masks: {fraction:.4f}; change pixels weighted "
            f"by {pos_weight:.3f}"
        )
        hypermodel = hypermodel_from_args(args, pos_weight=pos_weight)
    project_dir = Path(args.directory) / args.project_name
    settings = {
        "tuner": args.tuner,
        # Flat, so a refused resume names the very range that changed.
        **{f"space.{name}": value for name, value in hypermodel.space().items()},
        "max_epochs": args.max_epochs,
        "hyperband_factor": args.hyperband_factor if args.tuner == "hyperband" else None,
        "executions_per_trial": args.executions_per_trial,
        "batch_size": args.batch_size,
        "crop_size": args.crop_size,
        "seed": args.seed,
        "max_model_size": args.max_model_size,
    }
    _check_settings(project_dir, settings, args.overwrite)
    strategy = configure_devices(args.gpus, chief=role == "chief")
    if args.mixed_precision and strategy is None and not _gpus_in_use():
        print("Note: --mixed-precision on a CPU computes more slowly than float32")
    print(f"Data: {len(train.pairs)} training pairs, {len(val.pairs)} validation pairs")
    keras.utils.set_random_seed(args.seed)
    overwrite = args.overwrite
    if role == "worker" and overwrite:
        # A worker deleting the shared project would wipe the chief's state.
        print("Note: --overwrite is applied by the chief only; this worker ignores it")
        overwrite = False
    if role:
        print(
            f"Distributed search: {os.environ['KERASTUNER_TUNER_ID']} ({role}), oracle at "
            f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        )
    tuner = make_tuner(
        args.tuner,
        hypermodel,
        max_trials=args.max_trials,
        max_epochs=args.max_epochs,
        hyperband_factor=args.hyperband_factor,
        executions_per_trial=args.executions_per_trial,
        max_model_size=args.max_model_size,
        directory=args.directory,
        project_name=args.project_name,
        overwrite=overwrite,
        seed=args.seed,
        distribution_strategy=strategy,
    )
    if role != "worker":
        (project_dir / SETTINGS_NAME).write_text(json.dumps(settings, indent=2) + "\n")
        _print_start(tuner, hypermodel, project_dir)
    tensorboard_root = project_dir / TENSORBOARD_DIR
    verbose = 1 if sys.stdout.isatty() else 2
    tuner.search(
        train,
        validation_data=val,
        epochs=args.max_epochs,
        callbacks=[keras.callbacks.TensorBoard(str(tensorboard_root), write_graph=False)],
        verbose=verbose,
    )
    if role == "worker":
        print(f"Worker {tuner.tuner_id} finished: the chief prints the summary")
        return None

    summaries = summarize_trials(tuner, hypermodel)
    failed = [
        t for t in tuner.oracle.trials.values() if t.status != kt.engine.trial.TrialStatus.COMPLETED
    ]
    if not summaries:
        raise TrainingError(
            f"no trial completed in {project_dir} ({len(failed)} failed; the reasons are "
            "printed above)"
        )
    top = summaries[: args.top]
    print()
    print(f"Top {len(top)} of {len(summaries)} completed trials by val_f1 ({project_dir}):")
    print(format_table(top))
    if failed:
        print(f"{len(failed)} trial(s) did not complete: " + ", ".join(t.trial_id for t in failed))
    hps_path, model_path = export_best(tuner, summaries[0], project_dir, train)
    print(f"Best hyperparameters: {hps_path}")
    print(f"Best model (trial {summaries[0].trial_id}): {model_path}")
    print(f"TensorBoard (scalars, mask images, HParams): tensorboard --logdir {tensorboard_root}")
    return summaries


def _gpus_in_use() -> bool:
    import tensorflow as tf

    return bool(tf.config.get_visible_devices("GPU"))


def _print_start(tuner: kt.Tuner, hypermodel: ChangeHyperModel, project_dir: Path) -> None:
    trials = tuner.oracle.trials.values()
    done = sum(t.status == kt.engine.trial.TrialStatus.COMPLETED for t in trials)
    if trials:
        unfinished = [t.trial_id for t in trials if t.status == kt.engine.trial.TrialStatus.RUNNING]
        again = f"; interrupted trial(s) {', '.join(unfinished)} run again" if unfinished else ""
        print(f"Resuming the search in {project_dir}: {done} trial(s) finished{again}")
    else:
        print(f"Starting a search in {project_dir}")
    print("Search space:")
    for name, value in hypermodel.space().items():
        print(f"  {name}: {value}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python tuning/search.py``; returns the exit status.

    0 on success, 2 for bad data or settings (the message names the folder or flag), 1 when
    the tuner gave up after consecutive failed trials.
    """
    args = build_parser().parse_args(argv)
    try:
        run_search(args)
    except SiameseCDError as error:
        print(f"search: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        print(f"search: error: {error}", file=sys.stderr)
        return 1
    return 0
