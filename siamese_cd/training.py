"""Train a model on a dataset folder with the published recipe, log it, and score the test split."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras

from siamese_cd.callbacks import (
    BestCheckpoint,
    HParamsLogger,
    MaskImageLogger,
    NaNGuard,
    write_scores,
)
from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError, TrainingError
from siamese_cd.metrics import SCORE_NAMES
from siamese_cd.models.siamese import SiameseChangeModel

# Published recipe (Daudt et al. 2018): Adam 1e-3, weight decay 1e-4, lr x 0.95 per epoch.
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4
LR_DECAY_PER_EPOCH = 0.95


@dataclass
class TrainResult:
    """What `train_on_folder` produced."""

    model: keras.Model
    history: dict
    test_scores: dict[str, float] | None = field(default=None)


def paper_optimizer(steps_per_epoch: int, learning_rate: float = LEARNING_RATE):
    """Adam with the paper's weight decay and a learning rate multiplied by 0.95 each epoch."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate,
        decay_steps=steps_per_epoch,
        decay_rate=LR_DECAY_PER_EPOCH,
        staircase=True,
    )
    return keras.optimizers.Adam(learning_rate=schedule, weight_decay=WEIGHT_DECAY)


def split_folder(data_dir: Path, split: str, required: bool = True) -> Path | None:
    folder = data_dir / split
    if folder.is_dir():
        return folder
    if required:
        raise DatasetError(f"{data_dir}: no {split}/ folder (expected train/, val/, test/)")
    return None


def format_scores(scores: dict[str, float]) -> str:
    return "  ".join(f"{name} {scores[name]:.4f}" for name in SCORE_NAMES if name in scores)


def train_on_folder(
    data_dir: str | Path,
    *,
    epochs: int,
    batch_size: int = 16,
    log_dir: str | Path = "logs/run",
    out: str | Path | None = None,
    variant: str = "diff",
    depth: int = 4,
    filters: int | list[int] = 16,
    loss: str = "bce",
    learning_rate: float = LEARNING_RATE,
    augment: bool = True,
    crop_size: int | None = None,
    mixed_precision: bool = False,
    early_stopping: int | None = None,
    seed: int = 0,
    verbose: int | None = None,
) -> TrainResult:
    """Train on ``DATA/train``, validate on ``DATA/val`` and score ``DATA/test`` if present.

    Logs go to `log_dir` (``train/``, ``validation/`` and ``images/`` runs for TensorBoard).
    The checkpoint with the best ``val_f1`` is written to `out` (default
    ``<log_dir>/model.keras``), and that checkpoint is the one scored on the test split.

    Training is crash-safe: the state after every epoch is kept in ``<log_dir>/backup``, and
    running the same call again after an interruption resumes from the last finished epoch.
    The backup is removed when training completes.

    Args:
        data_dir: folder holding ``train/``, ``val/`` and optionally ``test/`` splits.
        epochs: epochs to train.
        batch_size: pairs per batch.
        log_dir: TensorBoard run folder; also holds the backup while training.
        out: the best model's ``.keras`` file.
        variant: ``"diff"``, ``"conc"`` or ``"ef"``.
        depth: encoder levels.
        filters: first-level width, or one width per level.
        loss: a name for `siamese_cd.losses.get_loss`, e.g. ``"bce"`` or ``"bce+dice"``.
        learning_rate: Adam's initial learning rate, multiplied by 0.95 each epoch.
        augment: random flips and rotations of training samples.
        crop_size: train on one random crop of this side per scene and epoch (large scenes);
            validation and test use whole images.
        mixed_precision: compute in float16 with float32 weights and head (fast on GPUs).
        early_stopping: stop after this many epochs without a better ``val_f1``; None never.
        seed: seed of weights, shuffling and augmentation.
        verbose: Keras verbosity; one line per epoch when output is not a terminal.

    Returns:
        The best model, the training history, and the test scores (None without a test split).

    Raises:
        DatasetError: if a split is missing or its files do not pair.
        TrainingError: if the loss becomes NaN.
    """
    data_dir = Path(data_dir)
    log_dir = Path(log_dir)
    out = Path(out) if out is not None else log_dir / "model.keras"
    if out.suffix != ".keras":
        raise DatasetError(f"{out}: the model file must end in .keras")
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    keras.utils.set_random_seed(seed)
    train_dir, val_dir = split_folder(data_dir, "train"), split_folder(data_dir, "val")
    test_dir = split_folder(data_dir, "test", required=False)

    train = PairedImageDataset(
        train_dir,
        batch_size=batch_size,
        augment=augment,
        shuffle=True,
        seed=seed,
        crop_size=crop_size,
    )
    val = PairedImageDataset(val_dir, batch_size=batch_size)
    # Paired now, so a broken test split fails before training rather than after it.
    test = PairedImageDataset(test_dir, batch_size=batch_size) if test_dir else None
    print(f"Training on {len(train.pairs)} pairs, validating on {len(val.pairs)} pairs.")

    backup_dir = log_dir / "backup"
    resuming = backup_dir.is_dir()
    if resuming:
        print(f"Resuming from the last finished epoch saved in {backup_dir}")
    policy = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = SiameseChangeModel(
            variant=variant, depth=depth, filters=filters, in_channels=train.channels
        )
    finally:
        keras.mixed_precision.set_global_policy(policy)
    model.compile(optimizer=paper_optimizer(len(train), learning_rate), loss=loss)
    out.parent.mkdir(parents=True, exist_ok=True)
    nan_guard = NaNGuard()
    checkpoint = BestCheckpoint(out, monitor="val_f1", resume=resuming)
    callbacks = [
        # Before the backup, so a kill between the two never leaves the best record behind
        # an epoch the backup already counts as finished.
        checkpoint,
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True),
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
        MaskImageLogger(val, log_dir=log_dir, seed=seed),
        HParamsLogger(
            log_dir,
            {
                "variant": variant,
                "depth": depth,
                "filters": filters,
                "loss": loss,
                "lr": learning_rate,
                "batch_size": batch_size,
            },
        ),
        nan_guard,
    ]
    if early_stopping is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping("val_f1", mode="max", patience=early_stopping)
        )
    history = model.fit(
        train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose
    )
    if nan_guard.stopped_at is not None:
        shutil.rmtree(backup_dir, ignore_errors=True)  # resuming a diverged state is no use
        epoch, batch = nan_guard.stopped_at
        kept = f" The best checkpoint so far is {out}." if out.is_file() else ""
        raise TrainingError(
            f"the training loss became NaN at epoch {epoch + 1}, batch {batch + 1}, so training "
            f"stopped. Try a lower learning rate (now {learning_rate:g}), or check the data for "
            f"empty or corrupt masks.{kept}"
        )
    best = keras.saving.load_model(out)
    print(f"Best checkpoint (val_f1, epoch {checkpoint.best_epoch + 1}) saved to {out}")

    test_scores = None
    if test is not None:
        test_scores = best.evaluate(test, return_dict=True, verbose=0)
        # Drawn at the best epoch, the one whose checkpoint was scored.
        write_scores(log_dir / "test", test_scores, step=checkpoint.best_epoch or 0)
        print(
            f"Test split ({len(test.pairs)} pairs, whole images, threshold {best.threshold}): "
            + format_scores(test_scores)
        )
    return TrainResult(best, history.history, test_scores)
