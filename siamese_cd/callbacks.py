"""Callbacks that show a change-detection run in TensorBoard."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import numpy as np

from siamese_cd.errors import DatasetError
from siamese_cd.losses import change_probability

PANELS = ("t1", "t2", "truth", "prediction")
_DESCRIPTION = " | ".join(PANELS) + " (white = change)"


def select_samples(data, max_samples: int, seed: int = 0, scan_limit: int = 20):
    """Pick a fixed set of samples, preferring ones that contain change.

    Args:
        data: a `PairedImageDataset`, or a tuple ``(t1, t2, masks)`` of NumPy arrays with
            images (N, H, W, C) and masks (N, H, W, 1).
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
            t1, t2, masks = (np.asarray(a, dtype=np.float32) for a in data)
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


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Show (N, H, W, C) images as RGB: the first three bands, or one band as gray."""
    if images.shape[-1] >= 3:
        return images[..., :3]
    return np.repeat(images[..., :1], 3, axis=-1)


def make_panels(t1, t2, truth, prediction) -> np.ndarray:
    """Side-by-side panels ``t1 | t2 | truth | prediction``, float32 in [0, 1].

    Args:
        t1: (N, H, W, C) images in [0, 1].
        t2: (N, H, W, C) images in [0, 1].
        truth: (N, H, W, 1) 0/1 masks.
        prediction: (N, H, W, 1) 0/1 masks.

    Returns:
        (N, H, 4 * W, 3) float32.
    """
    tiles = [to_rgb(t1), to_rgb(t2), to_rgb(truth), to_rgb(prediction)]
    return np.clip(np.concatenate(tiles, axis=2), 0.0, 1.0).astype(np.float32)


class MaskImageLogger(keras.callbacks.Callback):
    """Writes ``t1 | t2 | truth | prediction`` panels of fixed samples to TensorBoard.

    At the end of every `every_n_epochs`-th epoch the model predicts the same samples, and
    one image per sample is written under the tag ``masks/sample_<k>`` with the epoch as its
    step, in the run ``<log_dir>/images`` beside the ``train`` and ``validation`` runs of
    `keras.callbacks.TensorBoard`. Samples are held as NumPy arrays and the summary writer is
    opened in `on_train_begin`, so the callback can be deep-copied (Keras Tuner does).

    Args:
        data: a labelled `PairedImageDataset`, or ``(t1, t2, masks)`` NumPy arrays.
        log_dir: the run folder, the same as the TensorBoard callback's.
        every_n_epochs: write every this many epochs.
        max_samples: how many samples to show; ones that contain change are preferred.
        threshold: probability at or above which a pixel is shown as change.
        seed: seed of the choice of samples.

    Example:
        >>> logger = MaskImageLogger(val, log_dir="logs/run1")  # doctest: +SKIP
        >>> tensorboard = keras.callbacks.TensorBoard("logs/run1")
        >>> model.fit(train, validation_data=val, epochs=5,
        ...           callbacks=[tensorboard, logger])  # doctest: +SKIP
    """

    def __init__(
        self,
        data,
        log_dir: str | os.PathLike,
        every_n_epochs: int = 1,
        max_samples: int = 6,
        threshold: float = 0.5,
        seed: int = 0,
    ):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}")
        self.log_dir = Path(log_dir)
        self.every_n_epochs = every_n_epochs
        self.threshold = threshold
        self.t1, self.t2, self.masks = select_samples(data, max_samples, seed=seed)
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(str(self.log_dir / "images"))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs or self._writer is None:
            return
        import tensorflow as tf

        scores = self.model.predict_on_batch((self.t1, self.t2))
        predicted = (change_probability(np.asarray(scores)) >= self.threshold).astype(np.float32)
        panels = make_panels(self.t1, self.t2, self.masks, predicted)
        with self._writer.as_default():
            for k, panel in enumerate(panels):
                tf.summary.image(
                    f"masks/sample_{k}", panel[None], step=epoch, description=_DESCRIPTION
                )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return  # a diverged model is never the best one
        before = self.best
        super().on_epoch_end(epoch, logs)
        if self.best != before:
            record = {"monitor": self.monitor, "best": float(self.best), "epoch": epoch + 1}
            self.record.write_text(json.dumps(record) + "\n")
