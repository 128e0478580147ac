"""`TrainingBackup`: keep a training's whole state after every epoch, and resume it exactly.

A training killed at any moment (even ``kill -9``) and started again with the same settings
ends with the same weights as one that was never interrupted. Everything that decides the
coming epochs is restored:

- the weights and the optimizer's state (moments and step count, which also drives the
  per-epoch learning-rate decay), saved with ``model.save_weights``;
- the data order, crops and augmentation: `PairedImageDataset` draws them from its seed and
  its `generation` (one per `on_epoch_end`), which the resumed run sets back;
- the dropout masks: every `keras.random.SeedGenerator` of the model is reseeded from
  ``(seed, epoch)`` at the start of each epoch, interrupted or not;
- the best-score record of `BestCheckpoint`, and the patience of `EarlyStopping`.

Files: ``<backup_dir>/epoch-NNNN.weights.h5`` then ``training_metadata.json`` naming it,
each written atomically (`siamese_cd.atomic`) and in that order, so the state file always
names complete weights; older weights are removed after. A failed write (a full disk) raises
`FileWriteError` and leaves the previous backup whole.

``<backup_dir>/settings.json`` records the settings the backup was made with
(`record_settings`, written as training starts); `check_settings` refuses to resume it with
others, naming each difference, because weights of another shape, data or recipe cannot
continue it (and would fail deep in Keras). `interruption_message` says what an interrupted
run kept.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from siamese_cd import SiameseChangeModel
    >>> folder = tempfile.mkdtemp()
    >>> x = np.zeros((4, 16, 16, 3), np.uint8)
    >>> y = np.zeros((4, 16, 16, 1), np.float32); y[:, :4] = 1
    >>> model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    >>> model.compile()
    >>> backup = TrainingBackup(folder, seed=0)
    >>> _ = model.fit((x, x), y, epochs=2, batch_size=2, callbacks=[backup], verbose=0)
    >>> backup.finished_epochs(), sorted(p.name for p in Path(folder).iterdir())
    (2, ['epoch-0002.weights.h5', 'training_metadata.json'])
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from siamese_cd.atomic import atomic_path, write_text
from siamese_cd.errors import RunFolderError, TrainingError, TrainingInterrupted
from siamese_cd.hints import option_hint

STATE_NAME = "training_metadata.json"
SETTINGS_NAME = "settings.json"
# The file `tf.train.CheckpointManager` writes beside its checkpoints: the backup of
# `siamese_cd.distributed.loop.fit_distributed` holds a finished epoch when it exists.
TF_CHECKPOINT_INDEX = "checkpoint"
# Test hook: "EPOCH:BATCH" (epoch counted from 1, batch from 0) makes the process kill itself
# with SIGKILL as that batch starts, so tests interrupt training at an exact point.
KILL_VARIABLE = "SIAMESE_CD_KILL_AT"


def _seed_generators(model: keras.Model) -> list:
    generators = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        generators += getattr(layer, "_seed_generators", [])
    return generators


def reseed_dropout(model: keras.Model, seed: int, epoch: int) -> None:
    """Set every random-number generator of `model` (dropout) to a state of (seed, epoch).

    Keras keeps these states out of saved weights; reseeding per epoch makes an epoch's
    dropout masks the same whether or not training was interrupted before it.
    """
    for index, generator in enumerate(_seed_generators(model)):
        words = np.random.SeedSequence([seed, epoch, index]).generate_state(2)
        state = generator.state
        state.assign(np.asarray([words[0], 0], dtype=keras.backend.standardize_dtype(state.dtype)))


class TrainingBackup(keras.callbacks.Callback):
    """Saves the training state after every epoch and restores it when training starts.

    Put it after the callbacks whose state it keeps (`BestCheckpoint`, `EarlyStopping`), so
    an epoch's backup is written once they are done with it. Before ``fit``, call
    `restore_data` with the training dataset so its order continues where it stopped.

    Args:
        backup_dir: folder of the backup; created on the first save.
        seed: seed of the dropout masks (see `reseed_dropout`).
        checkpoint: a `BestCheckpoint` whose best record is part of the state.
        early_stopping: a `keras.callbacks.EarlyStopping` whose patience is part of the state.
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        seed: int = 0,
        checkpoint=None,
        early_stopping: keras.callbacks.EarlyStopping | None = None,
    ):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.seed = int(seed)
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping
        self._kill_at = _kill_point()
        self._epoch = 0

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> dict | None:
        """The last saved state, or None without a backup."""
        path = self.backup_dir / STATE_NAME
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TrainingError(
                f"{path}: the training backup cannot be read ({error}); delete "
                f"{self.backup_dir} to start the training again from the first epoch"
            ) from error

    def finished_epochs(self) -> int:
        """Epochs finished according to the backup (0 without one)."""
        state = self.state()
        return 0 if state is None else int(state["epoch"])

    def restore_data(self, datasets: Sequence) -> None:
        """Set each dataset's `generation` as it was when the backup was saved.

        Keras calls ``on_epoch_end`` once before the first epoch, so epoch ``e`` of an
        uninterrupted run draws from generation ``e + 1``; a run resumed at epoch ``e``
        starts from generation ``e`` and that extra call brings it to ``e + 1``.
        """
        finished = self.finished_epochs()
        for dataset in datasets:
            dataset.generation = finished

    # -- callback --------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        state = self.state()
        if state is None:
            return
        weights = self.backup_dir / state["weights"]
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its variables must exist to load
        self.model.load_weights(weights)
        self.model._initial_epoch = int(state["epoch"])  # as BackupAndRestore does
        if self.checkpoint is not None and state.get("best") is not None:
            self.checkpoint.restore(state["best"])
        if self.early_stopping is not None and state.get("early_stopping") is not None:
            saved = state["early_stopping"]
            self.early_stopping.wait = int(saved["wait"])
            self.early_stopping.best = saved["best"]
            self.early_stopping.best_epoch = int(saved["best_epoch"])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        reseed_dropout(self.model, self.seed, epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self._kill_at == (self._epoch + 1, batch):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            return  # a diverged state is not worth resuming
        self.save(epoch + 1)

    def save(self, finished: int) -> None:
        """Write the weights, then the state naming them; then drop older weights.

        Raises:
            FileWriteError: if a file cannot be written; the previous backup stays whole.
        """
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{finished:04d}.weights.h5"
        with atomic_path(self.backup_dir / name) as temporary:
            self.model.save_weights(temporary)
        state = {"epoch": finished, "weights": name, "seed": self.seed}
        if self.checkpoint is not None:
            state["best"] = self.checkpoint.state()
        if self.early_stopping is not None:
            stopper = self.early_stopping
            best = None if stopper.best is None else float(stopper.best)
            state["early_stopping"] = {
                "wait": int(stopper.wait),
                "best": best,
                "best_epoch": int(stopper.best_epoch),
            }
        write_text(self.backup_dir / STATE_NAME, json.dumps(state, indent=2) + "\n")
        for old in self.backup_dir.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


def holds_progress(backup_dir: str | os.PathLike) -> bool:
    """Whether `backup_dir` holds a finished epoch to resume from (of either training loop)."""
    folder = Path(backup_dir)
    return (folder / STATE_NAME).is_file() or (folder / TF_CHECKPOINT_INDEX).is_file()


def settings_differences(saved: dict, now: dict) -> list[tuple[str, object, object]]:
    """``(name, saved value, value now)`` of every setting that differs, in name order.

    Values are compared as JSON holds them (a tuple equals the list it was saved as), and a
    name missing on one side counts as None. The training backup (`check_settings`) and a
    resumed tuning search (`siamese_cd.tuning.search`) both refuse on these.

    Example:
        >>> settings_differences({"filters": [8, 16], "depth": 4}, {"filters": (8, 16), "depth": 3})
        [('depth', 4, 3)]
    """
    saved, now = _as_json(saved), _as_json(now)
    return [
        (name, saved.get(name), now.get(name))
        for name in sorted(set(saved) | set(now))
        if saved.get(name) != now.get(name)
    ]


def _as_json(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str))


def record_settings(backup_dir: str | os.PathLike, settings: dict) -> None:
    """Write `settings` (JSON-able) as those `backup_dir` is made with; creates the folder.

    Raises:
        FileWriteError: if the file cannot be written.
    """
    folder = Path(backup_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / SETTINGS_NAME, json.dumps(_as_json(settings), indent=2) + "\n")


def check_settings(
    backup_dir: str | os.PathLike, settings: dict, labels: dict[str, str] | None = None
) -> None:
    """Refuse to resume a backup that holds progress made with other `settings`.

    A backup without a finished epoch, or without recorded settings (made before they were
    recorded), is not checked: there is nothing to mismatch, or nothing to compare with.

    Args:
        backup_dir: the backup folder.
        settings: the settings of the run about to start, as `record_settings` takes them.
        labels: how to name each setting in the message, e.g. ``{"filters": "--filters"}``.

    Raises:
        RunFolderError: naming every difference (``--filters: backup 16, now 8``), the
            folder, and what to do.
    """
    folder = Path(backup_dir)
    path = folder / SETTINGS_NAME
    if not holds_progress(folder) or not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TrainingError(
            f"{path}: the training backup's settings cannot be read ({error}); delete "
            f"{folder} to start the training again from the first epoch"
        ) from error
    labels = labels or {}
    changed = [
        f"{labels.get(name, name)}: backup {_shown(old)}, now {_shown(new)}"
        for name, old, new in settings_differences(saved, settings)
    ]
    if changed:
        raise RunFolderError(
            f"{folder} holds a training backup made with other settings ("
            + "; ".join(changed)
            + "), which cannot be resumed with these. Rerun with the original settings to "
            f"resume it, or delete {folder} (or pass "
            + option_hint("overwrite=True", "--overwrite")
            + ") to start the training again from the first epoch."
        )


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "not set" if value is None else str(value)


def interruption_message(backup_dir: str | os.PathLike, model_path: str | os.PathLike) -> str:
    """What an interrupted training kept, and how to go on, for the message of Ctrl-C."""
    folder, model = Path(backup_dir), Path(model_path)
    if (folder / STATE_NAME).is_file():
        epoch = TrainingBackup(folder).finished_epochs()
        return (
            f"training interrupted; the last finished epoch ({epoch}) is kept in {folder}: "
            "run the same command again to resume from it"
        )
    if holds_progress(folder):
        return (
            f"training interrupted; the last finished epoch is kept in {folder}: run the "
            "same command again to resume from it"
        )
    if folder.is_dir():
        return (
            "training interrupted before its first epoch finished; run the same command "
            "again to start it over"
        )
    if model.is_file():
        return (
            f"interrupted after training completed; the best model is {model} (its decision "
            "threshold or test scores may not have been written)"
        )
    return "interrupted before training started; run the same command again to start it"


@contextlib.contextmanager
def interruption_reported(
    backup_dir: str | os.PathLike, model_path: str | os.PathLike
) -> Iterator[None]:
    """Within the block, Ctrl-C raises `TrainingInterrupted` with `interruption_message`.

    The message replaces Python's traceback of wherever the interrupt landed (often deep in
    Keras or TensorFlow), which says nothing about what was kept.
    """
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        raise TrainingInterrupted(interruption_message(backup_dir, model_path)) from None


def _kill_point() -> tuple[int, int] | None:
    text = os.environ.get(KILL_VARIABLE)
    if not text:
        return None
    epoch, batch = text.split(":")
    return int(epoch), int(batch)
