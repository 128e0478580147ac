"""What a training run is: its settings (`TrainSettings`), its result, and the value it selects by.

Every path that trains (`siamese_cd.training.run.train_on_folder` on one device or mirrored,
`siamese_cd.distributed.multi_worker`, `siamese_cd.training.reproduce`, the tuner's trials)
selects and reports by `MONITOR`; `siamese_cd.training.pipeline.validation_monitor` is the one
place that falls back to `FALLBACK_MONITOR` when the validation split holds no change.

`TrainSettings.hparams` records every field that defines the run in TensorBoard's HParams
dashboard, derived from the dataclass; `HPARAM_EXCLUDED` lists (with the reason) the few that
only say where files go or how much is printed.

Example:
    >>> settings = TrainSettings(epochs=3, filters=[4, 8], precision="float32")
    >>> values = settings.hparams()
    >>> values["epochs"], values["filters"], values["crop_size"], values["precision"]
    (3, '4,8', 0, 'float32')
    >>> "log_dir" in values
    False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from siamese_cd.errors import ConfigError
from siamese_cd.models.recipe_names import DEFAULT_RECIPE, RECIPE_MODELS, check_recipe

#: What the best checkpoint, early stopping, the decision threshold and the tuners follow:
#: the change-class F1 on the validation split (Keras logs `ChangeMetrics`' ``f1`` of the
#: validation data as ``val_f1``).
MONITOR = "val_f1"
#: What they follow instead when the validation split holds no change pixel (F1 is 0 there).
FALLBACK_MONITOR = "val_loss"
#: Whether a larger or a smaller value of a monitored log is better.
MONITOR_MODES = {MONITOR: "max", FALLBACK_MONITOR: "min"}

#: `TrainSettings` fields that are not hyperparameters of the run, so `TrainSettings.hparams`
#: leaves them out; every other field is recorded.
HPARAM_EXCLUDED = {
    "log_dir": "a path: where the logs go, not how the model trains",
    "out": "a path: where the best model goes",
    "overwrite": "what happens to an earlier run in the folder, not to this one",
    "verbose": "how much is printed",
}
#: Field -> the name the HParams dashboard shows (kept short, as in earlier runs' sessions).
HPARAM_RENAMES = {"learning_rate": "lr"}
#: Stand-ins for None, one type per column so the dashboard can sort and filter it.
HPARAM_DEFAULTS = {"crop_size": 0, "early_stopping": 0, "bands": "all"}


@dataclass
class TrainSettings:
    """How `train_on_folder` trains.

    Attributes:
        epochs: epochs to train.
        batch_size: pairs per batch.
        log_dir: TensorBoard run folder; also holds the backup while training.
        out: the best model's ``.keras`` file; None is ``<log_dir>/model.keras``.
        variant: ``"diff"``, ``"conc"`` or ``"ef"``.
        depth: encoder levels.
        filters: first-level width, or one width per level.
        recipe: ``"paper"`` (the default): the published network and training
            (2-class softmax head on PyTorch's pixel grid, PyTorch's Adam with L2, the
            class-weighted NLL), or ``"sigmoid"``: a sigmoid head on Keras's grid trained with
            decoupled weight decay and `loss` (`siamese_cd.models.recipe`).
        preprocessing: how the model scales pixels: ``"per_image"``, ``"per_image_band"``,
            ``"unit"``, ``"standardize"`` or ``"auto"`` (see `SiameseChangeModel`); None is
            the recipe's (``"per_image"`` for ``"paper"``, ``"auto"`` for ``"sigmoid"``).
        loss: ``"auto"`` (the recipe's), or with ``recipe="sigmoid"`` a name for
            `siamese_cd.models.losses.get_loss`, e.g. ``"bce"`` or ``"bce+dice"``.
        learning_rate: the recipe's initial learning rate; None keeps the recipe's own.
        augment: random flips and rotations of training samples.
        crop_size: train on one random crop of this side per scene and epoch (large
            scenes); validation and test use whole images.
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``
            (`siamese_cd.training.precision.dtype_policy`): the model is built with that
            dtype policy; the mixed ones keep float32 weights, preprocessing, head, loss and
            metrics.
        early_stopping: stop after this many epochs without a better ``val_f1`` (``val_loss``
            when the validation split holds no change); None never.
        choose_threshold: after training, set the best model's decision threshold to the one
            with the best F1 on the validation split (`siamese_cd.evaluation.threshold`) and save
            it with the model (the default: the recipe ablation found it the largest gain);
            False keeps 0.5, as does a validation split without change.
        overwrite: replace a finished run in `log_dir` (its event files, model and record)
            and any backup; without it such a folder is refused (`siamese_cd.training.run_folder`).
        seed: seed of weights, shuffling and augmentation.
        dropout: spatial dropout of the model (0 makes a step deterministic).
        init: ``"torch"`` or ``"glorot"`` initialisation of the convolutions (see
            `SiameseChangeModel`).
        distribute: ``"auto"``, ``"none"``, ``"mirrored"`` or ``"multi-worker"``
            (`siamese_cd.distributed.strategy`); ``batch_size`` is then the global batch.
        label_threshold: mask values at or above it are change.
        on_missing: ``"error"`` or ``"skip"`` files without their counterparts.
        bands: OSCD bands, ``"rgb"``, ``"all"`` or a list of names (None: all 13); only for
            OSCD.
        verbose: Keras verbosity; None is one line per epoch when output is not a terminal.
    """

    epochs: int
    batch_size: int = 16
    log_dir: str | Path = "logs/run"
    out: str | Path | None = None
    variant: str = "diff"
    depth: int = 4
    filters: int | list[int] = 16
    recipe: str = DEFAULT_RECIPE
    preprocessing: str | None = None
    loss: str = "auto"
    learning_rate: float | None = None
    augment: bool = True
    crop_size: int | None = None
    precision: str = "auto"
    early_stopping: int | None = None
    choose_threshold: bool = True
    seed: int = 0
    verbose: int | None = None
    dropout: float = 0.2
    init: str = "torch"
    distribute: str = "auto"
    label_threshold: int = 128
    on_missing: str = "error"
    bands: str | list[str] | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        # Checked here, before any data is read: the recipe and a loss it cannot take.
        check_recipe(self.recipe, allow_auto=False)
        if self.recipe == "paper" and self.loss != "auto":
            raise ConfigError(
                f"the paper recipe trains with its own loss (the class-weighted NLL), not "
                f"{self.loss!r}: choose the loss with the sigmoid recipe (--recipe sigmoid)"
            )

    @property
    def model_arguments(self) -> dict[str, Any]:
        """What the recipe builds the model with: its head, grid and (unless set) scaling."""
        made = dict(RECIPE_MODELS[self.recipe])
        if self.preprocessing is not None:
            made["preprocessing"] = self.preprocessing
        return made

    @property
    def model_path(self) -> Path:
        """Where the best checkpoint is written."""
        return Path(self.out) if self.out is not None else Path(self.log_dir) / "model.keras"

    @property
    def backup_dir(self) -> Path:
        """Where the state after each epoch is kept until training completes."""
        return Path(self.log_dir) / "backup"

    def hparams(self) -> dict[str, str | int | float | bool]:
        """Every setting that defines the run, as the HParams dashboard takes them.

        All fields but `HPARAM_EXCLUDED`, named as in `HPARAM_RENAMES`; lists become text
        (``"4,8"``), None becomes the `HPARAM_DEFAULTS` stand-in, the learning rate None the
        recipe's rate and the precision ``"auto"`` the precision it stands for here.
        """
        values = {
            HPARAM_RENAMES.get(item.name, item.name): _hparam(item.name, value)
            for item, value in zip(fields(self), asdict(self).values())
            if item.name not in HPARAM_EXCLUDED
        }
        values["preprocessing"] = self.model_arguments["preprocessing"]
        if self.learning_rate is None:
            from siamese_cd.models.recipe import LEARNING_RATE

            values[HPARAM_RENAMES["learning_rate"]] = LEARNING_RATE
        if self.precision == "auto":
            from siamese_cd.training.precision import choose_precision

            values["precision"] = choose_precision()[0]
        return values


def _hparam(name: str, value: Any) -> str | int | float | bool:
    """One setting as the dashboard takes it: a number, text or a truth value."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if value is None:
        return HPARAM_DEFAULTS.get(name, "none")
    return value


@dataclass
class TrainResult:
    """What `train_on_folder` produced."""

    model: Any  # the best `keras.Model`; not imported here, so settings stay light
    history: dict
    test_scores: dict[str, float] | None = field(default=None)
