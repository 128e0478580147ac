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
import warnings
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
from siamese_cd.hints import option_hint
from siamese_cd.metrics import SCORE_NAMES
from siamese_cd.models.siamese import SiameseChangeModel
from siamese_cd.models.threshold import choose_threshold
from siamese_cd.precision import set_precision
from siamese_cd.resume import TrainingBackup, holds_progress, interruption_reported
from siamese_cd.run_folder import check_outputs, check_run_folder, start_run

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
        early_stopping: stop after this many epochs without a better ``val_f1`` (``val_loss``
            when the validation split holds no change); None never.
        choose_threshold: after training, set the best model's decision threshold to the one
            with the best F1 on the validation split (`siamese_cd.models.threshold`) and save
            it with the model (the default: the recipe ablation found it the largest gain);
            False keeps 0.5, as does a validation split without change.
        overwrite: replace a finished run in `log_dir` (its event files, model and record)
            and any backup; without it such a folder is refused (`siamese_cd.run_folder`).
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
    overwrite: bool = False

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


def validation_monitor(splits: DatasetSplits, progress: bool = False) -> str:
    """What the best checkpoint and early stopping follow: ``"val_f1"``, or ``"val_loss"``.

    A validation split without a single change pixel scores ``val_f1`` 0 at every epoch, so
    the first epoch would stay "best" and the threshold 0.5 would be kept silently. Then the
    validation loss is followed instead, with a warning naming the split, and no threshold
    is chosen (`choose_and_save_threshold`).
    """
    val = splits.val
    if not val.labelled or val.change_fraction(progress=progress) > 0:
        return "val_f1"
    where = str(val.root)
    if splits.note:  # OSCD or AirChange: scenes held out of the training split
        where += f" (validation scenes {', '.join(pair.stem for pair in val.pairs)})"
    warnings.warn(
        f"{where}: the validation split holds no change pixel, so val_f1 is 0 at every "
        "epoch. The best checkpoint and early stopping follow val_loss instead, and the "
        "decision threshold stays 0.5 (there is no change to choose it on). Add validation "
        "pairs with change for an F1 to select by.",
        stacklevel=2,
    )
    return "val_loss"


def checkpoint_and_stopper(
    settings: TrainSettings, monitor: str, resuming: bool, model_path: Path | None = None
) -> tuple[BestCheckpoint, keras.callbacks.EarlyStopping | None]:
    """The best checkpoint and the early stopping (None without it) that follow `monitor`."""
    mode = "max" if monitor == "val_f1" else "min"
    checkpoint = BestCheckpoint(
        model_path or settings.model_path, monitor=monitor, resume=resuming, mode=mode
    )
    stopper = None
    if settings.early_stopping is not None:
        stopper = keras.callbacks.EarlyStopping(
            monitor, mode=mode, patience=settings.early_stopping
        )
    return checkpoint, stopper


def build_callbacks(
    settings: TrainSettings, val: PairedImageDataset, resuming: bool, monitor: str = "val_f1"
) -> tuple[list[keras.callbacks.Callback], BestCheckpoint, NaNGuard, TrainingBackup]:
    """The run's callbacks, and the checkpoint, NaN guard and backup among them."""
    from tensorboard.plugins.hparams import api as hparams_api

    log_dir = Path(settings.log_dir)
    checkpoint, stopper = checkpoint_and_stopper(settings, monitor, resuming)
    nan_guard = NaNGuard()
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
    # The logs (and checkpoint) stay for a look; a rerun in the same folder must replace them.
    again = option_hint("overwrite=True", "--overwrite")
    raise TrainingError(
        f"the training loss became NaN at epoch {epoch + 1}, batch {batch + 1}, so training "
        f"stopped. Try a lower learning rate (now {rate:g}), or check the data for "
        f"empty or corrupt masks.{kept} Rerun with {again} to replace this run in "
        f"{settings.log_dir}."
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


def choose_and_save_threshold(
    best: keras.Model, val: PairedImageDataset, out: Path, monitor: str, progress: bool
) -> None:
    """Choose the best model's decision threshold on `val` and save it into `out`.

    Skipped (0.5 kept, and said) when `monitor` is not ``val_f1``: the validation split then
    holds no change, and every threshold scores F1 0 on it.
    """
    if monitor != "val_f1":
        print("Decision threshold kept at 0.5: the validation split holds no change pixel")
        return
    threshold, f1 = choose_threshold(best, val, progress=progress)
    with atomic_path(out) as temporary:
        best.save(temporary)
    print(f"Decision threshold {threshold:.3f} (val_f1 {f1:.4f} there) saved with the model")


def finish_run(
    settings: TrainSettings, splits: DatasetSplits, checkpoint: BestCheckpoint, verbose: int
) -> tuple[keras.Model, dict[str, float] | None]:
    """Load the best checkpoint, choose its threshold and score the test split.

    Returns:
        The best model and its test scores (None without a test split).
    """
    out = settings.model_path
    best = keras.saving.load_model(out)
    epoch = checkpoint.best_epoch or 0
    print(f"Best checkpoint ({checkpoint.monitor}, epoch {epoch + 1}) saved to {out}")
    if settings.choose_threshold:
        choose_and_save_threshold(best, splits.val, out, checkpoint.monitor, verbose == 1)
    test_scores = None
    if splits.test is not None:
        # Drawn at the best epoch, the one whose checkpoint was scored.
        test_scores = score_test(best, splits.test, settings.log_dir, epoch)
    return best, test_scores


def verbosity(settings: TrainSettings) -> int:
    """Keras verbosity: the settings' own, else a bar on a terminal and a line per epoch."""
    if settings.verbose is not None:
        return settings.verbose
    return 1 if sys.stdout.isatty() else 2


def train_on_folder(
    data_dir: str | Path, settings: TrainSettings | None = None, **options
) -> TrainResult:
    """Train on ``DATA/train``, validate on ``DATA/val`` and score ``DATA/test`` if present.

    Logs go to ``settings.log_dir`` (``train/``, ``validation/``, ``images/``, ``test/`` runs
    and an HParams session). The checkpoint with the best ``val_f1`` is written to
    ``settings.out`` and scored on the test split; a validation split without any change
    pixel is warned about, and ``val_loss`` chooses the checkpoint instead
    (`validation_monitor`). Training is crash-safe: the state after every epoch is kept in
    ``<log_dir>/backup`` until training completes, and running the same call again after an
    interruption resumes from the last finished epoch (with the same settings: see
    `siamese_cd.run_folder`). A log folder holding a finished run is refused unless
    ``settings.overwrite``. ``settings.distribute`` trains on several devices or machines
    (see `siamese_cd.distributed_training`).

    Args:
        data_dir: folder holding ``train/``, ``val/`` and optionally ``test/`` splits, or an
            OSCD or AirChange download (`siamese_cd.data.splits` says how it is split).
        settings: how to train; or give its fields as keyword `options` instead.
        **options: fields of `TrainSettings`, e.g. ``epochs=10, depth=3``.

    Returns:
        The best model, the training history, and the test scores (None without a test split).

    Raises:
        DatasetError: if a split is missing or its files do not pair.
        FileWriteError: if the log folder or the model file cannot be written (before
            anything is read).
        RunFolderError: if the log folder holds a finished run (without ``overwrite``), or a
            backup made with other settings.
        TrainingError: if the loss becomes NaN.
        TrainingInterrupted: on Ctrl-C, saying what was kept and how to resume.
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
    # Before any data is read: a run that cannot be written, or would spoil another, stops.
    check_outputs(settings)
    check_run_folder(settings, mode)
    with interruption_reported(settings.backup_dir, out):
        return _train(data_dir, settings, mode)


def _train(data_dir: str | Path, settings: TrainSettings, mode: str) -> TrainResult:
    """The steps of a run in order, on one device or mirrored; see `train_on_folder`."""
    verbose = verbosity(settings)
    keras.utils.set_random_seed(settings.seed)
    splits = load_splits(data_dir, settings)
    print(
        splits.note
        or f"Training on {len(splits.train.pairs)} pairs, validating on "
        f"{len(splits.val.pairs)} pairs."
    )
    monitor = validation_monitor(splits, progress=verbose == 1)
    resuming = holds_progress(settings.backup_dir)
    if resuming:
        print(f"Resuming from the last finished epoch saved in {settings.backup_dir}")
    if mode == "mirrored":
        _, model = mirrored_model(settings, splits.train.channels)
    else:
        model = build_model(settings, splits.train.channels)
    start_run(settings, mode)
    callbacks, checkpoint, nan_guard, backup = build_callbacks(
        settings, splits.val, resuming, monitor
    )
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
    best, test_scores = finish_run(settings, splits, checkpoint, verbose)
    return TrainResult(best, history.history, test_scores)
