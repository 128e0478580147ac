"""Callbacks that show a change-detection run in TensorBoard."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from siamese_cd.data.decoding import as_float_pixels
from siamese_cd.errors import ConfigError, DatasetError
from siamese_cd.losses import change_probability
from siamese_cd.panels import DESCRIPTION, make_panels, to_rgb_uint8


def select_samples(data, max_samples: int, seed: int = 0, scan_limit: int = 20):
    """Pick a fixed set of samples, preferring ones that contain change.

    Args:
        data: a `PairedImageDataset`, or a tuple ``(t1, t2, masks)`` of NumPy arrays with
            images (N, H, W, C), float in [0, 1] or integer pixels (scaled by their type's
            maximum, as the model does), and masks (N, H, W, 1).
        max_samples: how many samples to keep.
        seed: seed of the order in which candidates are looked at.
        scan_limit: at most ``scan_limit * max_samples`` samples of a dataset are decoded
            while looking for changed ones, so start-up stays quick on large splits.

    Returns:
        ``(t1, t2, masks)`` as float32 NumPy arrays.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    if hasattr(data, "sample"):
        if not data.labelled:
            raise DatasetError("MaskImageLogger needs a labelled dataset to show the truth")
        count = len(data.pairs)

        def load(i):
            return data.sample(i)
    else:
        try:
            t1, t2, masks = (np.asarray(a) for a in data)
            # Integer images are raw pixels: scale them as the model does.
            t1, t2 = (as_float_pixels(a).astype(np.float32, copy=False) for a in (t1, t2))
            masks = masks.astype(np.float32)
        except (TypeError, ValueError) as error:
            raise DatasetError(
                "MaskImageLogger data must be a PairedImageDataset or (t1, t2, masks) arrays"
            ) from error
        count = len(t1)

        def load(i):
            return t1[i], t2[i], masks[i]

    order = np.random.default_rng(seed).permutation(count)[: scan_limit * max_samples]
    changed, unchanged = [], []
    for i in order:
        sample = load(int(i))
        (changed if sample[2].any() else unchanged).append(sample)
        if len(changed) == max_samples:
            break
    chosen = (changed + unchanged)[:max_samples]
    return tuple(np.stack([s[k] for s in chosen]) for k in range(3))


class MaskImageLogger(keras.callbacks.Callback):
    """Writes change-detection panels and a PR curve of fixed samples to TensorBoard.

    Every `every_n_epochs`-th epoch the model predicts the same samples, and for each one a
    panel ``t1 | t2 | truth | prediction | errors | probability`` (see `siamese_cd.panels`
    for the colours) is written under the tag ``masks/sample_<k>``, with the epoch as step so
    that it lines up with Keras' ``epoch_*`` scalars. A precision-recall curve of the change
    class over the same samples is written under ``pr_curve/change/pr_curves``. Both go to the run
    ``<log_dir>/images``, beside the ``train`` and ``validation`` runs of
    `keras.callbacks.TensorBoard`.

    Samples are chosen once, deterministically, preferring ones that contain change, and held
    as NumPy arrays; the summary writer is opened in `on_train_begin` and closed in
    `on_train_end`. So the callback survives `copy.deepcopy`, as Keras Tuner copies callbacks
    for every trial.

    Args:
        data: a labelled `PairedImageDataset`, or ``(t1, t2, masks)`` NumPy arrays.
        log_dir: the run folder. None writes beside the `keras.callbacks.TensorBoard` of the
            same `SiameseChangeModel.fit` call, which under Keras Tuner is each trial's own
            folder.
        every_n_epochs: write every this many epochs.
        max_samples: how many samples to show.
        threshold: probability at or above which a pixel is shown as change.
        seed: seed of the choice of samples.
        rgb_bands: bands shown as red, green and blue, e.g. (3, 2, 1) for Sentinel-2.
        stretch: percentile-stretch images for display (for dark multispectral data).
        pr_curve: also write the precision-recall curve.

    Example:
        >>> logger = MaskImageLogger(val)  # doctest: +SKIP
        >>> tensorboard = keras.callbacks.TensorBoard("logs/run1")
        >>> model.fit(train, validation_data=val, epochs=5,
        ...           callbacks=[tensorboard, logger])  # doctest: +SKIP
    """

    def __init__(
        self,
        data,
        log_dir: str | os.PathLike | None = None,
        every_n_epochs: int = 1,
        max_samples: int = 6,
        threshold: float = 0.5,
        seed: int = 0,
        rgb_bands: Sequence[int] = (0, 1, 2),
        stretch: bool = False,
        pr_curve: bool = True,
    ):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}")
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.every_n_epochs = every_n_epochs
        self.threshold = threshold
        self.rgb_bands = tuple(rgb_bands)
        self.stretch = stretch
        self.pr_curve = pr_curve
        self.t1, self.t2, self.masks = select_samples(data, max_samples, seed=seed)
        to_rgb_uint8(self.t1[:1], self.rgb_bands)  # fail now on bands that do not exist
        self.run_dir: Path | None = None  # where this fit writes; set by on_train_begin
        self._tensorboard_dir: Path | None = None
        self._writer = None

    def attach(self, tensorboard_log_dir: str | os.PathLike | None) -> None:
        """Take the log folder of the TensorBoard callback of the coming `fit`.

        Used when `log_dir` is None; `SiameseChangeModel.fit` calls it.
        """
        self._tensorboard_dir = None if tensorboard_log_dir is None else Path(tensorboard_log_dir)

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        root = self.log_dir or self._tensorboard_dir
        if root is None:
            raise ConfigError(
                "MaskImageLogger(log_dir=None) writes beside a keras.callbacks.TensorBoard "
                "in the same SiameseChangeModel.fit; add one, or give log_dir"
            )
        self.run_dir = root / "images"
        self._writer = tf.summary.create_file_writer(str(self.run_dir))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs or self._writer is None:
            return
        import tensorflow as tf
        from tensorboard.plugins.pr_curve import summary as pr_summary

        scores = np.asarray(self.model.predict_on_batch((self.t1, self.t2)))
        probability = change_probability(scores).astype(np.float32)
        panels = make_panels(
            self.t1, self.t2, self.masks, probability, self.threshold, self.rgb_bands, self.stretch
        )
        with self._writer.as_default():
            for k, panel in enumerate(panels):
                tf.summary.image(
                    f"masks/sample_{k}", panel[None], step=epoch, description=DESCRIPTION
                )
            if self.pr_curve:
                curve = pr_summary.pb(
                    "pr_curve/change",
                    labels=self.masks.reshape(-1) > 0.5,
                    predictions=probability.reshape(-1),
                    num_thresholds=101,
                    display_name="change class",
                    description="Precision-recall of the change class on the logged samples",
                )
                tf.summary.experimental.write_raw_pb(curve.SerializeToString(), step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def attach_loggers(callbacks) -> None:
    """Point every `MaskImageLogger` at the log folder of the fit's TensorBoard callback."""
    callbacks = list(callbacks or [])
    boards = [c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)]
    for callback in callbacks:
        if isinstance(callback, MaskImageLogger):
            callback.attach(boards[0].log_dir if boards else None)


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite, and remembers where.

    Unlike `keras.callbacks.TerminateOnNaN` it keeps ``(epoch, batch)`` in `stopped_at`, so the
    caller can raise a clear error instead of carrying on with a broken model.
    """

    def __init__(self):
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_at = (self._epoch, batch)
            self.model.stop_training = True


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Saves the model whenever `monitor` improves, and records the best value beside it.

    The record, ``<model>.best.json``, lets a resumed run (see `BackupAndRestore`) start from
    the best value so far instead of overwriting a better checkpoint with a worse one.

    Args:
        filepath: the ``.keras`` file to write.
        monitor: the logged value to maximise.
        resume: start from the recorded best value, if a record exists.
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_f1", resume: bool = False):
        self.record = Path(filepath).with_suffix(".best.json")
        initial = None
        if resume and self.record.is_file():
            initial = json.loads(self.record.read_text())["best"]
        super().__init__(
            str(filepath),
            monitor=monitor,
            mode="max",
            save_best_only=True,
            initial_value_threshold=initial,
        )

    @property
    def best_epoch(self) -> int | None:
        """Zero-based epoch of the best checkpoint so far, from the record; None before one."""
        if not self.record.is_file():
            return None
        return json.loads(self.record.read_text())["epoch"] - 1

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return  # a diverged model is never the best one
        before = self.best
        super().on_epoch_end(epoch, logs)
        if self.best != before:
            record = {"monitor": self.monitor, "best": float(self.best), "epoch": epoch + 1}
            self.record.write_text(json.dumps(record) + "\n")


class HParamsLogger(keras.callbacks.Callback):
    """Records a run's hyperparameters for TensorBoard's HParams dashboard.

    The session is written to `log_dir` itself, whose ``train``, ``validation`` (and
    ``test``) runs hold the metrics, so runs of plain training compare in the dashboard like
    Keras Tuner trials.

    Args:
        log_dir: the run folder, the same as the TensorBoard callback's.
        hparams: name to value; values are str, bool, int or float (lists are joined by
            commas).
        trial_id: the session's name in the dashboard; defaults to the folder name.
    """

    def __init__(self, log_dir: str | os.PathLike, hparams: dict, trial_id: str | None = None):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.hparams = {
            name: ",".join(map(str, value)) if isinstance(value, list | tuple) else value
            for name, value in hparams.items()
        }
        self.trial_id = trial_id or self.log_dir.name

    def on_train_begin(self, logs=None):
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hparams_api

        writer = tf.summary.create_file_writer(str(self.log_dir))
        with writer.as_default():
            hparams_api.hparams(self.hparams, trial_id=self.trial_id)
        writer.close()


def write_scores(run_dir: str | os.PathLike, scores: dict[str, float], step: int) -> None:
    """Write final scores as ``epoch_<name>`` scalars of their own run (e.g. ``<log>/test``).

    With the same tags as Keras' per-epoch scalars, TensorBoard draws the test score as a
    point on the train and validation curves.
    """
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for name, value in scores.items():
            tf.summary.scalar(f"epoch_{name}", float(value), step=step)
    writer.close()
