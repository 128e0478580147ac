"""Train a model on a dataset folder with the paper's recipe, log it, and score the test split.

The steps are small functions, in order: `load_splits` pairs the files, `build_model` makes
and compiles the model (the recipe is `SiameseChangeModel.compile`, see
`siamese_cd.models.recipe`), `build_callbacks` sets up checkpoints, TensorBoard, panels and the
HParams session, and `score_test` scores the best checkpoint. `train_on_folder` runs them.

Example:
    >>> import tempfile
    >>> from siamese_cd.data.synthetic import make_synthetic_dataset
    >>> folder = tempfile.mkdtemp()
    >>> data = make_synthetic_dataset(folder + "/data", train=4, val=2, test=2, size=32,
    ...                               progress=False)
    >>> settings = TrainSettings(epochs=1, batch_size=2, log_dir=folder + "/run", depth=2,
    ...                          filters=2, verbose=0)
    >>> result = train_on_folder(data, settings)  # doctest: +ELLIPSIS
    Training on 4 pairs, validating on 2 pairs.
    Precision: ...
    Best checkpoint (val_f1, epoch 1) saved to .../run/model.keras
    Decision threshold ... saved with the model
    Test split (2 pairs, whole images, threshold ...): precision ...
    >>> sorted(result.test_scores)[:3]
    ['f1', 'iou', 'kappa']
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

from siamese_cd.atomic import atomic_path
from siamese_cd.callbacks import BestCheckpoint, MaskImageLogger, NaNGuard, write_scores
from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.data.splits import DatasetSplits, training_splits
from siamese_cd.distribute import resolve_mode
from siamese_cd.distributed_training import mirrored_model, train_multi_worker
from siamese_cd.errors import ConfigError, DatasetError, TrainingError
from siamese_cd.metrics import SCORE_NAMES
from siamese_cd.models.siamese import SiameseChangeModel
from siamese_cd.models.threshold import choose_threshold
from siamese_cd.precision import set_precision
from siamese_cd.resume import TrainingBackup

# The settings recorded as the run's hyperparameters in TensorBoard's HParams dashboard.
HPARAM_NAMES = ("variant", "depth", "filters", "preprocessing", "loss", "lr", "batch_size")


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
        preprocessing: how the model scales pixels: ``"auto"``, ``"unit"`` or
            ``"standardize"`` (see `SiameseChangeModel`); measured on the training split.
        loss: a name for `siamese_cd.losses.get_loss`, e.g. ``"bce"`` or ``"bce+dice"``.
        learning_rate: the recipe's initial learning rate; None keeps the recipe's own.
        augment: random flips and rotations of training samples.
        crop_size: train on one random crop of this side per scene and epoch (large
            scenes); validation and test use whole images.
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``
            (`siamese_cd.precision.set_precision`); the mixed ones keep float32 weights,
            preprocessing, head, loss and metrics.
        early_stopping: stop after this many epochs without a better ``val_f1``; None never.
        choose_threshold: after training, set the best model's decision threshold to the one
            with the best F1 on the validation split (`siamese_cd.models.threshold`) and save
            it with the model (the default: the recipe ablation found it the largest gain);
            False keeps 0.5.
        seed: seed of weights, shuffling and augmentation.
        dropout: spatial dropout of the model (0 makes a step deterministic).
        init: ``"torch"`` or ``"glorot"`` initialisation of the convolutions (see
            `SiameseChangeModel`).
        distribute: ``"auto"``, ``"none"``, ``"mirrored"`` or ``"multi-worker"``
            (`siamese_cd.distribute`); ``batch_size`` is then the global batch.
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
    preprocessing: str = "auto"
    loss: str = "bce"
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

    @property
    def model_path(self) -> Path:
        """Where the best checkpoint is written."""
        return Path(self.out) if self.out is not None else Path(self.log_dir) / "model.keras"

    @property
    def backup_dir(self) -> Path:
        """Where the state after each epoch is kept until training completes."""
        return Path(self.log_dir) / "backup"

    def hparams(self) -> dict[str, str | int | float]:
        """The run's hyperparameters as the HParams dashboard takes them (lists as text)."""
        from siamese_cd.models.recipe import LEARNING_RATE

        values = asdict(self)
        values["lr"] = self.learning_rate if self.learning_rate is not None else LEARNING_RATE
        filters = values["filters"]
        values["filters"] = ",".join(map(str, filters)) if isinstance(filters, list) else filters
        return {name: values[name] for name in HPARAM_NAMES}


@dataclass
class TrainResult:
    """What `train_on_folder` produced."""

    model: keras.Model
    history: dict
    test_scores: dict[str, float] | None = field(default=None)


def format_scores(scores: dict[str, float]) -> str:
    """``"precision 0.9000  recall ..."`` in the order of `SCORE_NAMES`."""
    return "  ".join(f"{name} {scores[name]:.4f}" for name in SCORE_NAMES if name in scores)


def load_splits(data_dir: str | Path, settings: TrainSettings) -> DatasetSplits:
    """The training, validation and test splits of `data_dir`, raw pixels as stored.

    Split folders, or OSCD and AirChange with their own split
    (`siamese_cd.data.splits.training_splits`). The test split is paired now, so a broken
    one fails before training rather than after.
    """
    return training_splits(
        data_dir,
        batch_size=settings.batch_size,
        augment=settings.augment,
        seed=settings.seed,
        crop_size=settings.crop_size,
        multiple=2**settings.depth,
        bands=settings.bands,
        label_threshold=settings.label_threshold,
        on_missing=settings.on_missing,
    )


def build_model(settings: TrainSettings, in_channels: int) -> SiameseChangeModel:
    """A model compiled with the recipe, in the precision asked for."""
    policy = keras.mixed_precision.global_policy()
    set_precision(settings.precision)
    try:
        model = SiameseChangeModel(
            variant=settings.variant,
            depth=settings.depth,
            filters=settings.filters,
            in_channels=in_channels,
            preprocessing=settings.preprocessing,
            dropout=settings.dropout,
            init=settings.init,
        )
    finally:
        keras.mixed_precision.set_global_policy(policy)
    model.compile(learning_rate=settings.learning_rate, loss=settings.loss)  # None: recipe's
    return model


def build_callbacks(
    settings: TrainSettings, val: PairedImageDataset, resuming: bool
) -> tuple[list[keras.callbacks.Callback], BestCheckpoint, NaNGuard, TrainingBackup]:
    """The run's callbacks, and the checkpoint, NaN guard and backup among them."""
    from tensorboard.plugins.hparams import api as hparams_api

    log_dir = Path(settings.log_dir)
    checkpoint = BestCheckpoint(settings.model_path, monitor="val_f1", resume=resuming)
    nan_guard = NaNGuard()
    stopper = None
    if settings.early_stopping is not None:
        stopper = keras.callbacks.EarlyStopping(
            "val_f1", mode="max", patience=settings.early_stopping
        )
    backup = TrainingBackup(
        settings.backup_dir, seed=settings.seed, checkpoint=checkpoint, early_stopping=stopper
    )
    callbacks = [
        checkpoint,
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
        MaskImageLogger(val, log_dir=log_dir, seed=settings.seed),
        # The session is written to the run folder itself, whose train, validation and test
        # runs hold the metrics, so plain runs compare in the dashboard like tuner trials.
        hparams_api.KerasCallback(str(log_dir), settings.hparams(), trial_id=log_dir.name),
        nan_guard,
        *([stopper] if stopper is not None else []),
        # Last: it saves what the others hold once they are done with the epoch, and
        # restores their state after they reset it at the start of training.
        backup,
    ]
    return callbacks, checkpoint, nan_guard, backup


def raise_if_diverged(nan_guard: NaNGuard, settings: TrainSettings) -> None:
    """Raise `TrainingError` if the loss became NaN, dropping the backup (useless now).

    Raises:
        TrainingError: naming the epoch and batch, and where the best checkpoint is.
    """
    if nan_guard.stopped_at is None:
        return
    shutil.rmtree(settings.backup_dir, ignore_errors=True)
    epoch, batch = nan_guard.stopped_at
    out = settings.model_path
    kept = f" The best checkpoint so far is {out}." if out.is_file() else ""
    rate = settings.hparams()["lr"]
    raise TrainingError(
        f"the training loss became NaN at epoch {epoch + 1}, batch {batch + 1}, so training "
        f"stopped. Try a lower learning rate (now {rate:g}), or check the data for "
        f"empty or corrupt masks.{kept}"
    )


def score_test(
    model: keras.Model, test: PairedImageDataset, log_dir: Path, step: int
) -> dict[str, float]:
    """Score `model` on the test split, log the scores at `step` and print them."""
    scores = model.evaluate(test, return_dict=True, verbose=0)
    write_scores(Path(log_dir) / "test", scores, step=step)
    print(
        f"Test split ({len(test.pairs)} pairs, whole images, threshold {model.threshold:g}): "
        + format_scores(scores)
    )
    return scores


# Over 60 lines: the steps of a run in order, each a call, with the resume and NaN handling.
def train_on_folder(
    data_dir: str | Path, settings: TrainSettings | None = None, **options
) -> TrainResult:
    """Train on ``DATA/train``, validate on ``DATA/val`` and score ``DATA/test`` if present.

    Logs go to ``settings.log_dir`` (``train/``, ``validation/``, ``images/``, ``test/`` runs
    and an HParams session). The checkpoint with the best ``val_f1`` is written to
    ``settings.out`` and scored on the test split. Training is crash-safe: the state after
    every epoch is kept in ``<log_dir>/backup`` until training completes, and running the
    same call again after an interruption resumes from the last finished epoch.
    ``settings.distribute`` trains on several devices or machines (see
    `siamese_cd.distributed_training`).

    Args:
        data_dir: folder holding ``train/``, ``val/`` and optionally ``test/`` splits, or an
            OSCD or AirChange download (`siamese_cd.data.splits` says how it is split).
        settings: how to train; or give its fields as keyword `options` instead.
        **options: fields of `TrainSettings`, e.g. ``epochs=10, depth=3``.

    Returns:
        The best model, the training history, and the test scores (None without a test split).

    Raises:
        DatasetError: if a split is missing or its files do not pair.
        TrainingError: if the loss becomes NaN.
    """
    if settings is None:
        settings = TrainSettings(**options)
    elif options:
        raise ConfigError(f"give settings or keyword options, not both: {sorted(options)}")
    out = settings.model_path
    if out.suffix != ".keras":
        raise DatasetError(f"{out}: the model file must end in .keras")
    mode = resolve_mode(settings.distribute)
    if mode == "multi-worker":
        return train_multi_worker(data_dir, settings)
    verbose = settings.verbose
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    keras.utils.set_random_seed(settings.seed)
    splits = load_splits(data_dir, settings)
    print(
        splits.note
        or f"Training on {len(splits.train.pairs)} pairs, validating on "
        f"{len(splits.val.pairs)} pairs."
    )
    resuming = settings.backup_dir.is_dir()
    if resuming:
        print(f"Resuming from the last finished epoch saved in {settings.backup_dir}")
    if mode == "mirrored":
        _, model = mirrored_model(settings, splits.train.channels)
    else:
        model = build_model(settings, splits.train.channels)
    out.parent.mkdir(parents=True, exist_ok=True)
    callbacks, checkpoint, nan_guard, backup = build_callbacks(settings, splits.val, resuming)
    backup.restore_data([splits.train])
    try:
        history = model.fit(
            splits.train,
            validation_data=splits.val,
            epochs=settings.epochs,
            callbacks=callbacks,
            verbose=verbose,
            # The dataset shuffles its samples from its seed and generation, which a resumed
            # run restores; Keras's own batch shuffle draws from Python's global generator.
            shuffle=False,
        )
    except TrainingError:
        raise_if_diverged(nan_guard, settings)
        raise
    shutil.rmtree(settings.backup_dir, ignore_errors=True)
    best = keras.saving.load_model(out)
    print(f"Best checkpoint (val_f1, epoch {checkpoint.best_epoch + 1}) saved to {out}")
    if settings.choose_threshold:
        threshold, f1 = choose_threshold(best, splits.val, progress=verbose == 1)
        with atomic_path(out) as temporary:
            best.save(temporary)
        print(f"Decision threshold {threshold:.3f} (val_f1 {f1:.4f} there) saved with the model")
    test_scores = None
    if splits.test is not None:
        # Drawn at the best epoch, the one whose checkpoint was scored.
        test_scores = score_test(best, splits.test, settings.log_dir, checkpoint.best_epoch or 0)
    return TrainResult(best, history.history, test_scores)
