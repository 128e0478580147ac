"""Train a model on a dataset folder with the published recipe, log it, and score the test split."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras

from siamese_cd.callbacks import MaskImageLogger
from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError
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
    filters: int = 16,
    learning_rate: float = LEARNING_RATE,
    augment: bool = True,
    seed: int = 0,
    verbose: int | None = None,
) -> TrainResult:
    """Train on ``DATA/train``, validate on ``DATA/val`` and score ``DATA/test`` if present.

    Logs go to `log_dir` (``train/``, ``validation/`` and ``images/`` runs for TensorBoard).
    The checkpoint with the best ``val_f1`` is written to `out` (default
    ``<log_dir>/model.keras``), and that checkpoint is the one scored on the test split.

    Returns:
        The best model, the training history, and the test scores (None without a test split).
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
    )
    val = PairedImageDataset(val_dir, batch_size=batch_size)
    # Paired now, so a broken test split fails before training rather than after it.
    test = PairedImageDataset(test_dir, batch_size=batch_size) if test_dir else None
    print(f"Training on {len(train.pairs)} pairs, validating on {len(val.pairs)} pairs.")

    model = SiameseChangeModel(variant=variant, depth=depth, filters=filters)
    model.compile(optimizer=paper_optimizer(len(train), learning_rate))
    out.parent.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
        MaskImageLogger(val, log_dir=log_dir, seed=seed),
        keras.callbacks.ModelCheckpoint(
            str(out), monitor="val_f1", mode="max", save_best_only=True
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    history = model.fit(
        train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose
    )
    best = keras.saving.load_model(out)
    print(f"Best checkpoint (by val_f1) saved to {out}")

    test_scores = None
    if test is not None:
        test_scores = best.evaluate(test, return_dict=True, verbose=0)
        print(
            f"Test split ({len(test.pairs)} pairs, whole images, threshold {best.threshold}): "
            + format_scores(test_scores)
        )
    return TrainResult(best, history.history, test_scores)
