"""The one training pipeline: the steps every run is assembled from, in order.

`train_on_folder` (one device or mirrored), the multi-worker run
(`siamese_cd.distributed.multi_worker`), `siamese_cd.training.reproduce` and the tuner
(`siamese_cd.tuning`) build their runs from these steps, so that they cannot drift apart:

1. `load_splits` pairs the files of the training, validation and test splits;
2. `validation_monitor` chooses what the run selects by: `MONITOR`, or `FALLBACK_MONITOR`
   (with a warning) when the validation split holds no change;
3. `build_model` (`compiled_model` for the tuner's search space) makes a `SiameseChangeModel`
   computing in the run's precision, as its own dtype policy, compiled with the recipe;
4. `build_callbacks` sets up the best checkpoint, early stopping, TensorBoard, the mask
   panels, the HParams session, the NaN guard and the per-epoch backup;
5. `finish_run` loads the best checkpoint, chooses its decision threshold on the validation
   split and scores the test split.

Example:
    >>> import tempfile
    >>> from siamese_cd.data.synthetic.generate import make_synthetic_dataset
    >>> folder = tempfile.mkdtemp()
    >>> data = make_synthetic_dataset(folder + "/data", train=4, val=2, test=0, size=32,
    ...                               progress=False)
    >>> settings = TrainSettings(epochs=1, batch_size=2, log_dir=folder + "/run", depth=2,
    ...                          filters=2, precision="bfloat16")
    >>> splits = load_splits(data, settings)
    >>> model = build_model(settings, splits.train.channels)
    Precision: bfloat16 (as asked)
    >>> model.dtype_policy.name, model.preprocessor.compute_dtype
    ('mixed_bfloat16', 'float32')
    >>> run = build_callbacks(settings, splits.val)
    >>> [type(c).__name__ for c in run.callbacks]  # the HParams session is a "Callback"
    ['BestCheckpoint', 'TensorBoard', 'MaskImageLogger', 'Callback', 'NaNGuard', 'TrainingBackup']
"""

from __future__ import annotations

import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from siamese_cd.atomic import atomic_path
from siamese_cd.callbacks import BestCheckpoint, MaskImageLogger, NaNGuard, write_scores
from siamese_cd.data.layouts.splits import DatasetSplits, training_splits
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import TrainingError
from siamese_cd.evaluation.threshold import choose_threshold
from siamese_cd.hints import option_hint
from siamese_cd.models.metrics import SCORE_NAMES
from siamese_cd.models.siamese import SiameseChangeModel
from siamese_cd.training.precision import dtype_policy
from siamese_cd.training.resume import TrainingBackup
from siamese_cd.training.settings import (
    FALLBACK_MONITOR,
    MONITOR,
    MONITOR_MODES,
    TrainSettings,
)

#: How a run's test split is scored: ``score(best_model, test, step)`` -> scores.
Scorer = Callable[[keras.Model, PairedImageDataset, int], dict]


def load_splits(data_dir: str | Path, settings: TrainSettings) -> DatasetSplits:
    """The training, validation and test splits of `data_dir`, raw pixels as stored.

    Split folders, or OSCD and AirChange with their own split
    (`siamese_cd.data.layouts.splits.training_splits`). The test split is paired now, so a broken
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


def compiled_model(
    precision: str,
    *,
    learning_rate: float | None = None,
    loss: str | keras.losses.Loss = "auto",
    recipe: str = "auto",
    verbose: bool = False,
    **config,
) -> SiameseChangeModel:
    """A `SiameseChangeModel` of `config` computing in `precision`, compiled with the recipe.

    The precision is the model's own dtype policy (`siamese_cd.training.precision.dtype_policy`,
    printed when `verbose`); Keras's global policy is not touched. `learning_rate` None and
    `loss` ``"auto"`` are the recipe's (`SiameseChangeModel.compile`).
    """
    model = SiameseChangeModel(**config, dtype=dtype_policy(precision, verbose))
    model.compile(learning_rate=learning_rate, loss=loss, recipe=recipe)
    return model


def build_model(settings: TrainSettings, in_channels: int) -> SiameseChangeModel:
    """The run's model, compiled with the recipe, in the precision asked for (said)."""
    return compiled_model(
        settings.precision,
        learning_rate=settings.learning_rate,
        loss=settings.loss,
        recipe=settings.recipe,
        verbose=True,
        variant=settings.variant,
        depth=settings.depth,
        filters=settings.filters,
        in_channels=in_channels,
        dropout=settings.dropout,
        init=settings.init,
        **settings.model_arguments,
    )


def validation_monitor(val: PairedImageDataset, note: str = "", progress: bool = False) -> str:
    """What the run selects by: `MONITOR` (``val_f1``), or `FALLBACK_MONITOR` (``val_loss``).

    A validation split without a single change pixel scores ``val_f1`` 0 at every epoch, so
    the first epoch would stay "best" and the threshold 0.5 would be kept silently. Then the
    validation loss is followed instead, with a warning naming the split, and no threshold
    is chosen (`finish_run`). `note` is the splits' note of a dataset with its own split
    (OSCD, AirChange): the warning then names the held-out validation scenes.
    """
    if not val.labelled or val.change_fraction(progress=progress) > 0:
        return MONITOR
    where = str(val.root)
    if note:
        where += f" (validation scenes {', '.join(pair.stem for pair in val.pairs)})"
    warnings.warn(
        f"{where}: the validation split holds no change pixel, so {MONITOR} is 0 at every "
        f"epoch. The best checkpoint and early stopping follow {FALLBACK_MONITOR} instead, and "
        "the decision threshold stays 0.5 (there is no change to choose it on). Add validation "
        "pairs with change for an F1 to select by.",
        stacklevel=2,
    )
    return FALLBACK_MONITOR


def checkpoint_and_stopper(
    settings: TrainSettings, monitor: str, resuming: bool
) -> tuple[BestCheckpoint, keras.callbacks.EarlyStopping | None]:
    """The best checkpoint and the early stopping (None without it) that follow `monitor`."""
    mode = MONITOR_MODES[monitor]
    checkpoint = BestCheckpoint(settings.model_path, monitor=monitor, resume=resuming, mode=mode)
    stopper = None
    if settings.early_stopping is not None:
        stopper = keras.callbacks.EarlyStopping(
            monitor, mode=mode, patience=settings.early_stopping
        )
    return checkpoint, stopper


@dataclass
class RunCallbacks:
    """The callbacks of a run, in order, and those the run reads again after `fit`."""

    callbacks: list[keras.callbacks.Callback]
    checkpoint: BestCheckpoint | None
    nan_guard: NaNGuard
    backup: TrainingBackup | None


def build_callbacks(
    settings: TrainSettings,
    val: PairedImageDataset | None,
    resuming: bool = False,
    monitor: str = MONITOR,
    *,
    chief: bool = True,
    backup: bool = True,
) -> RunCallbacks:
    """The run's callbacks: the one builder of every path that trains.

    In order: the best checkpoint (following `monitor`), TensorBoard into
    ``settings.log_dir``, the mask panels, the HParams session of `TrainSettings.hparams`,
    the NaN guard, early stopping, and last the per-epoch `TrainingBackup`.

    Args:
        settings: the run's settings.
        val: the validation split; None (a run without one, e.g. `reproduce`) leaves out
            what needs it: the checkpoint, early stopping and the panels.
        resuming: continue the checkpoint's best value from its record.
        monitor: what the checkpoint and early stopping follow (`validation_monitor`).
        chief: False on the workers of a cluster other than the chief, which write neither
            panels nor an HParams session.
        backup: with the `TrainingBackup` (False under `fit_distributed`, which keeps its own).
    """
    from tensorboard.plugins.hparams import api as hparams_api

    log_dir = Path(settings.log_dir)
    checkpoint, stopper = None, None
    if val is not None:
        checkpoint, stopper = checkpoint_and_stopper(settings, monitor, resuming)
    nan_guard = NaNGuard()
    callbacks = [
        *([checkpoint] if checkpoint is not None else []),
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
    ]
    if chief:
        if val is not None:
            callbacks.append(MaskImageLogger(val, log_dir=log_dir, seed=settings.seed))
        # The session is written to the run folder itself, whose train, validation and test
        # runs hold the metrics, so plain runs compare in the dashboard like tuner trials.
        callbacks.append(
            hparams_api.KerasCallback(str(log_dir), settings.hparams(), trial_id=log_dir.name)
        )
    callbacks += [nan_guard, *([stopper] if stopper is not None else [])]
    keeper = None
    if backup:
        # Last: it saves what the others hold once they are done with the epoch, and
        # restores their state after they reset it at the start of training.
        keeper = TrainingBackup(
            settings.backup_dir, seed=settings.seed, checkpoint=checkpoint, early_stopping=stopper
        )
        callbacks.append(keeper)
    return RunCallbacks(callbacks, checkpoint, nan_guard, keeper)


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


def format_scores(scores: dict[str, float]) -> str:
    """``"precision 0.9000  recall ..."`` in the order of `SCORE_NAMES`."""
    return "  ".join(f"{name} {scores[name]:.4f}" for name in SCORE_NAMES if name in scores)


def score_test(
    model: keras.Model, test: PairedImageDataset, log_dir: str | Path, step: int
) -> dict[str, float]:
    """Score `model` on the test split, log the scores at `step` and print them."""
    scores = model.evaluate(test, return_dict=True, verbose=0)
    write_scores(Path(log_dir) / "test", scores, step=step)
    print(
        f"Test split ({len(test.pairs)} pairs, whole images, threshold {model.threshold:g}): "
        + format_scores(scores)
    )
    return scores


def set_best_threshold(
    model: keras.Model, val: PairedImageDataset, monitor: str, progress: bool
) -> bool:
    """Set `model`'s decision threshold to the best F1 on `val`; whether it was set.

    Not when `monitor` is not `MONITOR`: the validation split then holds no change, every
    threshold scores F1 0 on it, and 0.5 is kept (and said).
    """
    if monitor != MONITOR:
        print("Decision threshold kept at 0.5: the validation split holds no change pixel")
        return False
    threshold, f1 = choose_threshold(model, val, progress=progress)
    print(f"Decision threshold {threshold:.3f} ({MONITOR} {f1:.4f} there) saved with the model")
    return True


def finish_run(
    out: str | Path,
    val: PairedImageDataset | None,
    test: PairedImageDataset | None,
    *,
    checkpoint: BestCheckpoint | None = None,
    model: keras.Model | None = None,
    monitor: str = MONITOR,
    choose: bool = True,
    log_dir: str | Path | None = None,
    progress: bool = False,
    score: Scorer | None = None,
) -> tuple[keras.Model, dict[str, float] | None]:
    """The end of every run: the best model, its decision threshold, its test scores.

    1. The best model: with a `checkpoint`, the one it saved to `out`, loaded (its monitored
       value and epoch are said); without one, `model` as it is (the last epoch of
       `reproduce`, the tuner's best trial), saved to `out`.
    2. Its decision threshold, with `choose` and a validation split: the one with the best F1
       on `val` (`set_best_threshold`), saved into `out`; 0.5 stays when the split holds no
       change (`monitor`, the checkpoint's own, is then `FALLBACK_MONITOR`).
    3. With a test split, its scores: `score(best, test, epoch)`, by default `score_test`
       (logged in ``<log_dir>/test`` at the best epoch, and printed).

    Returns:
        The best model and its test scores (None without a test split).
    """
    out = Path(out)
    if checkpoint is not None:
        best = keras.saving.load_model(out)
        epoch, monitor = checkpoint.best_epoch or 0, checkpoint.monitor
        print(f"Best checkpoint ({monitor}, epoch {epoch + 1}) saved to {out}")
    else:
        best, epoch = model, (getattr(getattr(model, "history", None), "epoch", None) or [0])[-1]
    changed = choose and val is not None and set_best_threshold(best, val, monitor, progress)
    if changed or checkpoint is None:
        with atomic_path(out) as temporary:
            best.save(temporary)
    scores = None
    if test is not None:
        if score is None:
            scores = score_test(best, test, log_dir or out.parent, epoch)
        else:
            scores = score(best, test, epoch)
    return best, scores


def finish_training(
    settings: TrainSettings, splits: DatasetSplits, checkpoint: BestCheckpoint, verbose: int
) -> tuple[keras.Model, dict[str, float] | None]:
    """`finish_run` of a `train_on_folder` run: one device, mirrored, or a cluster's chief."""
    return finish_run(
        settings.model_path,
        splits.val,
        splits.test,
        checkpoint=checkpoint,
        choose=settings.choose_threshold,
        log_dir=settings.log_dir,
        progress=verbose == 1,
    )


def verbosity(settings: TrainSettings) -> int:
    """Keras verbosity: the settings' own, else a bar on a terminal and a line per epoch."""
    if settings.verbose is not None:
        return settings.verbose
    return 1 if sys.stdout.isatty() else 2
