"""Callbacks that show a change-detection run in TensorBoard, guard it and keep its best state.

Example:
    >>> import numpy as np
    >>> masks = np.zeros((2, 32, 32, 1), np.float32)
    >>> masks[0, :8] = 1
    >>> images = np.zeros((2, 32, 32, 3), np.uint8)  # raw pixels, as stored
    >>> logger = MaskImageLogger((images, images, masks), max_samples=1)
    >>> logger.t1.dtype, logger.masks.shape  # held as given; the model scales them
    (dtype('uint8'), (1, 32, 32, 1))
    >>> board = keras.callbacks.TensorBoard("logs/run1")
    >>> logger.attach_to([board, logger])
    >>> str(logger.target_dir())
    'logs/run1'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from siamese_cd.atomic import atomic_path, write_text
from siamese_cd.errors import ConfigError, DatasetError
from siamese_cd.models.guards import NaNGuard  # noqa: F401 - re-exported
from siamese_cd.models.losses import change_probability
from siamese_cd.training.panels import DESCRIPTION, make_panels, to_rgb_uint8
from siamese_cd.training.settings import MONITOR


def select_samples(data, max_samples: int, seed: int = 0, scan_limit: int = 20):
    """Pick a fixed set of samples, preferring ones that contain change.

    Args:
        data: a `PairedImageDataset`, or a tuple ``(t1, t2, masks)`` of NumPy arrays with
            images (N, H, W, C) as stored (the model scales them) and masks (N, H, W, 1).
        max_samples: how many samples to keep.
        seed: seed of the order in which candidates are looked at.
        scan_limit: at most ``scan_limit * max_samples`` samples of a dataset are decoded
            while looking for changed ones, so start-up stays quick on large splits.

    Returns:
        ``(t1, t2, masks)``: the images' raw pixels as given, the masks float32.
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
    t1, t2, masks = (np.stack([s[k] for s in chosen]) for k in range(3))
    return t1, t2, masks.astype(np.float32, copy=False)


class MaskImageLogger(keras.callbacks.Callback):
    """Writes change-detection panels and a PR curve of fixed samples to TensorBoard.

    Every `every_n_epochs`-th epoch the model predicts the same samples, and for each one a
    panel ``t1 | t2 | truth | prediction | errors | probability`` (see `siamese_cd.training.panels`
    for the colours) is written under the tag ``masks/sample_<k>``, with the epoch as step so
    that it lines up with Keras' ``epoch_*`` scalars. A precision-recall curve of the change
    class over the same samples is written under ``pr_curve/change/pr_curves``. Both go to the run
    ``<log_dir>/images``, beside the ``train`` and ``validation`` runs of
    `keras.callbacks.TensorBoard`.

    Samples are chosen once, deterministically, preferring ones that contain change, and held
    as NumPy arrays of raw pixels, which the model is given as they are (its preprocessing
    layer scales them); `siamese_cd.training.panels` converts them for display. The summary writer
    is opened in `on_train_begin` and closed in `on_train_end`. So the callback survives
    `copy.deepcopy`, as Keras Tuner copies callbacks for every trial.

    Args:
        data: a labelled `PairedImageDataset`, or ``(t1, t2, masks)`` NumPy arrays.
        log_dir: the run folder. None writes beside the `keras.callbacks.TensorBoard` of the
            same `SiameseChangeModel.fit` call (which calls `attach_to`), under Keras Tuner
            each trial's own folder.
        every_n_epochs: write every this many epochs.
        max_samples: how many samples to show.
        threshold: probability at or above which a pixel is shown as change.
        seed: seed of the choice of samples.
        rgb_bands: bands shown as red, green and blue, e.g. (3, 2, 1) for Sentinel-2.
        stretch: percentile-stretch images for display (for dark multispectral data).
        pr_curve: also write the precision-recall curve.

    Example: see the module docstring; in training,
    ``model.fit(train, validation_data=val, callbacks=[tensorboard, logger])``.
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

    def attach_to(self, callbacks) -> None:
        """Take the log folder of the `keras.callbacks.TensorBoard` among `callbacks`.

        `SiameseChangeModel.fit` calls it with the callbacks of the coming fit; it matters
        when `log_dir` is None. Without a TensorBoard callback the folder is forgotten.
        """
        boards = [c for c in callbacks or [] if isinstance(c, keras.callbacks.TensorBoard)]
        self._tensorboard_dir = Path(boards[0].log_dir) if boards else None

    def target_dir(self) -> Path:
        """The run folder written to: `log_dir`, or the attached TensorBoard callback's.

        Raises:
            ConfigError: if there is neither.
        """
        root = self.log_dir or self._tensorboard_dir
        if root is None:
            raise ConfigError(
                "MaskImageLogger(log_dir=None) writes beside a keras.callbacks.TensorBoard "
                "in the same SiameseChangeModel.fit; add one, or give log_dir"
            )
        return root

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self.run_dir = self.target_dir() / "images"
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


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever `monitor` improves, and records the best value beside it.

    The model and the record, ``<model>.best.json``, are written atomically (see
    `siamese_cd.atomic`): a crash or a full disk leaves the previous best model loadable. The
    record lets a resumed run start from the best value so far instead of overwriting a better
    checkpoint with a worse one.

    Args:
        filepath: the ``.keras`` file to write.
        monitor: the logged value to follow.
        resume: start from the recorded best value, if a record exists.
        mode: ``"max"`` (the default, for scores such as ``val_f1``) or ``"min"`` (for a
            loss such as ``val_loss``).
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = MONITOR,
        resume: bool = False,
        mode: str = "max",
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ConfigError(f"BestCheckpoint mode must be 'max' or 'min', got {mode!r}")
        self.filepath = Path(filepath)
        self.monitor = monitor
        self.mode = mode
        self.record = self.filepath.with_suffix(".best.json")
        self.best = self._worst()
        self.best_epoch: int | None = None  # zero-based
        if resume and self.record.is_file():
            self.restore(json.loads(self.record.read_text()))

    def _worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    def state(self) -> dict:
        """The best value and its (one-based) epoch, as the record holds them."""
        epoch = None if self.best_epoch is None else self.best_epoch + 1
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best, "epoch": epoch}

    def restore(self, state: dict) -> None:
        """Continue from a `state` (a record, or a training backup's copy of one).

        A record of another monitored value is not comparable, so it is ignored.
        """
        if state.get("monitor", self.monitor) != self.monitor:
            return
        self.best = self._worst() if state.get("best") is None else float(state["best"])
        self.best_epoch = None if state.get("epoch") is None else int(state["epoch"]) - 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(float(logs.get("loss", 0.0))):
            return  # a diverged model is never the best one
        if self.monitor not in logs:
            raise ConfigError(
                f"BestCheckpoint monitors {self.monitor!r}, which this fit does not log "
                f"(it logs {sorted(logs)}); give validation_data"
            )
        value = float(logs[self.monitor])
        better = value > self.best if self.mode == "max" else value < self.best
        if not better:  # NaN never improves
            return
        with atomic_path(self.filepath) as temporary:
            self.model.save(temporary)
        self.best, self.best_epoch = value, epoch
        write_text(self.record, json.dumps(self.state()) + "\n")


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
