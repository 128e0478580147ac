"""Train a model on a dataset folder with the paper's recipe, log it, and score the test split.

`train_on_folder` checks the run folder, then runs the steps of the one training pipeline
(`siamese_cd.training.pipeline`): it pairs the splits, builds the model in its precision,
sets up the callbacks, trains, and finishes the run (the best checkpoint, its decision
threshold, the test scores). With ``distribute="multi-worker"`` it hands the run to
`siamese_cd.distributed.multi_worker`, which uses the same steps.

Example:
    >>> import tempfile
    >>> from siamese_cd.data.synthetic.generate import make_synthetic_dataset
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
from pathlib import Path

import keras

from siamese_cd.distributed.multi_worker import mirrored_model, train_multi_worker
from siamese_cd.distributed.strategy import resolve_mode
from siamese_cd.errors import ConfigError, DatasetError, TrainingError
from siamese_cd.training.pipeline import (
    build_callbacks,
    build_model,
    finish_training,
    load_splits,
    raise_if_diverged,
    validation_monitor,
    verbosity,
)
from siamese_cd.training.resume import holds_progress, interruption_reported
from siamese_cd.training.run_folder import check_outputs, check_run_folder, start_run
from siamese_cd.training.settings import TrainResult, TrainSettings

__all__ = ["TrainResult", "TrainSettings", "train_on_folder"]


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
    `siamese_cd.training.run_folder`). A log folder holding a finished run is refused unless
    ``settings.overwrite``. ``settings.distribute`` trains on several devices or machines
    (see `siamese_cd.distributed.multi_worker`).

    Args:
        data_dir: folder holding ``train/``, ``val/`` and optionally ``test/`` splits, or an
            OSCD or AirChange download (`siamese_cd.data.layouts.splits` says how it is split).
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
    monitor = validation_monitor(splits.val, splits.note, progress=verbose == 1)
    resuming = holds_progress(settings.backup_dir)
    if resuming:
        print(f"Resuming from the last finished epoch saved in {settings.backup_dir}")
    if mode == "mirrored":
        _, model = mirrored_model(settings, splits.train.channels)
    else:
        model = build_model(settings, splits.train.channels)
    start_run(settings, mode)
    run = build_callbacks(settings, splits.val, resuming, monitor)
    run.backup.restore_data([splits.train])
    try:
        history = model.fit(
            splits.train,
            validation_data=splits.val,
            epochs=settings.epochs,
            callbacks=run.callbacks,
            verbose=verbose,
            # The dataset shuffles its samples from its seed and generation, which a resumed
            # run restores; Keras's own batch shuffle draws from Python's global generator.
            shuffle=False,
        )
    except TrainingError:
        raise_if_diverged(run.nan_guard, settings)
        raise
    shutil.rmtree(settings.backup_dir, ignore_errors=True)
    best, test_scores = finish_training(settings, splits, run.checkpoint, verbose)
    return TrainResult(best, history.history, test_scores)
