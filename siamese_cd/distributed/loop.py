"""`fit_distributed`: the epoch loop that trains under any `tf.distribute` strategy.

Keras's ``Model.fit`` does not run under `tf.distribute.MultiWorkerMirroredStrategy` (it
fails at the first step), so this loop drives the model's own ``train_step`` with
``strategy.run`` over a distributed dataset, inside a `tf.function`, and still drives Keras
callbacks (TensorBoard, `MaskImageLogger`, checkpoints, early stopping) through
`keras.callbacks.CallbackList`. It works with one device too, which is how the tests compare a
cluster with a single process.

What it guarantees on every worker:

- the same global batches, whatever the number of workers (`siamese_cd.distributed.sharding`),
  each worker decoding only its share of the scenes;
- the class weight and the standardisation statistics measured once over the whole split
  (each worker reads its share's masks, the counts are summed over workers);
- global logs: the loss and the confusion counts are summed over replicas and workers, so
  every worker sees the same numbers and stops at the same epoch;
- resumption: after every epoch a `tf.train.CheckpointManager` keeps the model, the
  optimizer and the epoch in ``backup_dir`` (the chief's; the other workers write to a
  temporary folder, as TensorFlow requires every worker to save). Running again restores it
  on every worker and goes on from the last finished epoch.

Example:
    >>> import tempfile
    >>> from siamese_cd.data.pipeline.dataset import PairedImageDataset
    >>> from siamese_cd.data.synthetic.generate import make_synthetic_dataset
    >>> from siamese_cd.models.siamese import SiameseChangeModel
    >>> root = make_synthetic_dataset(tempfile.mkdtemp(), train=4, val=2, test=0, size=32,
    ...                               progress=False)
    >>> train = PairedImageDataset(root / "train", batch_size=2, seed=0)
    >>> val = PairedImageDataset(root / "val", batch_size=2)
    >>> model = SiameseChangeModel(depth=2, filters=2)
    >>> model.compile()
    >>> history = fit_distributed(model, train, val, epochs=1, verbose=0)
    >>> sorted(history.history)[:3]
    ['f1', 'iou', 'kappa']
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from siamese_cd.data.readers.undecodable import naming_undecodable
from siamese_cd.distributed import sharding as plan
from siamese_cd.distributed.strategy import all_sum, predict_locally, worker_role
from siamese_cd.errors import ConfigError
from siamese_cd.models import recipe
from siamese_cd.models.losses import pending_weight_losses, weigh_pending
from siamese_cd.models.metrics import ChangeMetrics, scores_from_counts


def resolve_training(model, train, strategy, progress: bool) -> None:
    """What `SiameseChangeModel.fit` resolves, once, identically on every worker.

    Each worker reads its share's masks (and images, to standardise); the sums are added
    over workers, so the class weight and the statistics are those of the whole split.
    """
    from siamese_cd.models.preprocessing import resolve_scaling

    role = worker_role(strategy)
    preprocessor = getattr(model, "preprocessor", None)
    adapt = preprocessor is not None and preprocessor.pending
    standardize = adapt and resolve_scaling(preprocessor.scaling, train.source.dtype) == (
        "standardize"
    )
    pending = pending_weight_losses(getattr(model, "loss", None))
    if adapt or pending:
        scenes = plan.scenes_of_worker(
            len(train.pairs), train.batch_size, train.seed, role.index, role.workers
        )
        sums = plan.shard_sums(train.source, scenes, standardize, progress=progress)
        sums = all_sum(strategy, sums)
        fraction, config = plan.resolve_from_sums(
            sums,
            preprocessor.scaling if preprocessor else "unit",
            train.source.dtype,
            train.channels,
        )
        if adapt:
            preprocessor.scaling, preprocessor.pixel_dtype = (
                config["scaling"],
                config["pixel_dtype"],
            )
            if config["scaling"] == "standardize":
                preprocessor._set_statistics(config["mean"], config["variance"])
        weigh_pending(model.loss, lambda: fraction, progress)
    if preprocessor is not None and preprocessor.pixel_dtype is None:
        # Recorded (and saved) so that serving another pixel type warns, as after `fit`.
        preprocessor.pixel_dtype = np.dtype(train.source.dtype).name


def _train_function(model, strategy):
    import tensorflow as tf

    @tf.function
    def step(iterator):
        strategy.run(model.train_step, args=(next(iterator),))
        # Read in cross-replica context: the metric variables are summed over every replica
        # of every worker, so the logs are global and the same on each worker.
        return model.get_metrics_result()

    return step


def _validate(model, validation, role, strategy) -> dict[str, float]:
    """``val_*`` logs: each worker scores its share locally, the counts are summed."""
    import tensorflow as tf

    metrics = ChangeMetrics(threshold=getattr(model, "threshold", 0.5))
    loss = model.loss if callable(model.loss) else keras.losses.get(model.loss)

    @tf.function
    def batch(x, y):
        y_pred = model(x, training=False)
        metrics.update_state(y, y_pred)
        return loss(y, y_pred)

    sums = np.zeros(2, np.float64)
    shard = validation.as_tf_dataset(shard=(role.workers, role.index), deterministic=True)
    for x, y in shard:
        sums += [float(batch(x, y)) * len(y), len(y)]
    counts = [metrics.counts[k] for k in ("tp", "fp", "fn", "tn")]
    total = all_sum(strategy, np.concatenate([sums, [float(c.numpy()) for c in counts]]))
    scores = scores_from_counts(*total[2:])
    logs = {"val_loss": total[0] / max(total[1], 1)}
    logs.update({f"val_{name}": float(value) for name, value in scores.items()})
    return logs


class _Backup:
    """The chief's per-epoch `tf.train.CheckpointManager`; other workers write to a temp dir."""

    def __init__(self, model, backup_dir: Path | None, chief: bool):
        import tensorflow as tf

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.dir = backup_dir
        self.scratch = None if chief or backup_dir is None else Path(tempfile.mkdtemp())
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epoch=self.epoch
        )
        write_dir = self.scratch or backup_dir
        self.manager = (
            tf.train.CheckpointManager(self.checkpoint, str(write_dir), max_to_keep=1)
            if write_dir is not None
            else None
        )

    def restore(self, strategy) -> int:
        """Restore the chief's last epoch on every worker; the epoch to start from."""
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(str(self.dir)) if self.dir else None
        if latest:
            self.checkpoint.restore(latest).expect_partial()
        start = int(self.epoch.numpy())
        agreed = all_sum(strategy, [start, 1.0])
        if agreed[0] != start * agreed[1]:
            raise ConfigError(
                f"{self.dir}: the workers found different backups (this one resumes at epoch "
                f"{start + 1}); the log folder must be on storage every worker sees"
            )
        return start

    def save(self, epoch: int) -> None:
        if self.manager is not None:
            self.epoch.assign(epoch + 1)
            self.manager.save()

    def finish(self, completed: bool) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        elif completed and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


# Over 60 lines with its 25-line docstring: set-up, then the epoch loop with its backup and
# callbacks in one try/finally, which reads best whole.
def fit_distributed(
    model: keras.Model,
    train,
    validation_data=None,
    *,
    epochs: int,
    strategy=None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    backup_dir: str | Path | None = None,
    verbose: int = 1,
) -> keras.callbacks.History:
    """Train `model` for `epochs` under `strategy`, as ``model.fit`` would on one device.

    Args:
        model: a compiled model created inside ``strategy.scope()``.
        train: the training `PairedImageDataset`; its ``batch_size`` is the global batch,
            split evenly over the replicas (it must be a multiple of their number). Its
            ``seed`` orders the scenes (`siamese_cd.distributed.sharding`); ``shuffle`` is
            not used (the order is reshuffled every epoch anyway).
        validation_data: a `PairedImageDataset` scored after every epoch, or None.
        epochs: epochs to train in all (a resumed run trains the rest).
        strategy: a `tf.distribute` strategy, e.g. `siamese_cd.distributed.strategy.strategy_for`;
            None is the current one.
        callbacks: Keras callbacks; give other workers than the chief folders of their own.
        backup_dir: the chief's folder for the per-epoch backup that resumption reads; every
            worker must see it. Removed when training completes. None keeps no backup.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns:
        The `keras.callbacks.History` of the run.

    Raises:
        ConfigError: if the batch does not split over the replicas, or workers disagree on
            the backup.
        DatasetError: if the training split holds fewer scenes than one global batch.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    role = worker_role(strategy)
    replicas = strategy.num_replicas_in_sync
    scenes, batch = len(train.pairs), train.batch_size
    plan.check_batch(batch, replicas, role.workers, scenes)
    steps = scenes // batch
    resolve_training(model, train, strategy, progress=verbose != 0)
    schedule = recipe.epoch_schedule(model.optimizer)
    if schedule is not None and schedule.steps_per_epoch is None:
        schedule.steps_per_epoch = steps
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    backup = _Backup(model, Path(backup_dir) if backup_dir else None, role.is_chief)
    start = backup.restore(strategy)
    if start:
        print(f"Resuming from epoch {start + 1}, after the backup in {backup_dir}")
    local = copy.copy(train)
    local.batch_size, local.shuffle = batch // replicas, False
    callback_list = _callback_list(model, callbacks, verbose, epochs, steps)
    step = _train_function(model, strategy)
    predict_locally(model)
    model.stop_training, completed, logs = False, False, {}
    try:
        callback_list.on_train_begin()
        with naming_undecodable(train, validation_data, progress=verbose != 0):
            for epoch in range(start, epochs):
                order = plan.worker_order(
                    plan.epoch_order(scenes, batch, train.seed, epoch), role.index, role.workers
                )
                dataset = strategy.distribute_datasets_from_function(
                    lambda context, order=order: _scenes_dataset(local, order)
                )
                logs = _epoch(model, step, iter(dataset), steps, epoch, callback_list)
                if validation_data is not None and not model.stop_training:
                    logs.update(_validate(model, validation_data, role, strategy))
                callback_list.on_epoch_end(epoch, logs)
                if model.stop_training:
                    break
                backup.save(epoch)
        callback_list.on_train_end(logs)
        completed = True
    finally:
        model.predict_function = None
        backup.finish(completed)
    return model.history


def _callback_list(model, callbacks, verbose: int, epochs: int, steps: int):
    """The callbacks as `fit` would run them, with History and the progress bar."""
    callbacks = list(callbacks or [])
    for callback in callbacks:
        if hasattr(callback, "attach_to"):
            callback.attach_to(callbacks)
    return keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=steps,
    )


def _epoch(model, step, iterator, steps: int, epoch: int, callback_list) -> dict:
    """Run one epoch's training steps; the last (global) logs."""
    for metric in model.metrics:
        metric.reset_state()
    callback_list.on_epoch_begin(epoch)
    logs = {}
    for index in range(steps):
        callback_list.on_train_batch_begin(index)
        logs = {k: float(v) for k, v in step(iterator).items()}
        callback_list.on_train_batch_end(index, logs)
        if model.stop_training:
            break
    return logs


def _scenes_dataset(data, order):
    from siamese_cd.data.pipeline import tf_pipeline

    return tf_pipeline.build(data, deterministic=True, scenes=order)
