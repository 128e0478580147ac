"""`train_on_folder` under a strategy: mirrored over local devices, or over a cluster.

``distribute="mirrored"`` keeps Keras's ``fit`` (it runs under `MirroredStrategy`), with the
model built in the strategy's scope. ``distribute="multi-worker"`` runs
`siamese_cd.distributed_loop.fit_distributed` on every worker of the ``TF_CONFIG`` cluster:
worker 0, the chief, writes the model, the best checkpoint, the logs and the mask panels and
scores the test split once; the other workers write their copies to temporary folders that
are removed at the end.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import keras

from siamese_cd.callbacks import MaskImageLogger, NaNGuard
from siamese_cd.distribute import (
    all_sum,
    predict_locally,
    strategy_for,
    synchronize_batch_norm,
    worker_role,
)


def mirrored_model(settings, in_channels: int):
    """``(strategy, model)``: a `MirroredStrategy` and the run's model built in its scope.

    The strategy mirrors over the visible GPUs; without a GPU, over the logical CPU devices
    (one unless configured with `tf.config.set_logical_device_configuration`).
    """
    import tensorflow as tf

    from siamese_cd.training import build_model

    devices = None
    if not tf.config.list_logical_devices("GPU"):
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = strategy_for("mirrored", devices)
    with strategy.scope():
        model = build_model(settings, in_channels)
        synchronize_batch_norm(model)
    predict_locally(model)
    print(f"MirroredStrategy: {strategy.num_replicas_in_sync} replica(s)")
    return strategy, model


def _callbacks(settings, val, resuming: bool, chief: bool, monitor: str = "val_f1"):
    """The run's callbacks; panels and the HParams session only on the chief."""
    from tensorboard.plugins.hparams import api as hparams_api

    from siamese_cd.training import checkpoint_and_stopper

    log_dir = Path(settings.log_dir)
    checkpoint, stopper = checkpoint_and_stopper(settings, monitor, resuming)
    nan_guard = NaNGuard()
    callbacks = [checkpoint, keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]
    if chief:
        callbacks.append(MaskImageLogger(val, log_dir=log_dir, seed=settings.seed))
        callbacks.append(
            hparams_api.KerasCallback(str(log_dir), settings.hparams(), trial_id=log_dir.name)
        )
    callbacks.append(nan_guard)
    if stopper is not None:
        callbacks.append(stopper)
    return callbacks, checkpoint, nan_guard


def _prepare_folder(settings, strategy, chief: bool) -> None:
    """`check_run_folder` on every worker (the chief alone clears with ``overwrite``).

    Every worker reads the same shared folder, so all refuse together rather than leave the
    others waiting in a collective. After the chief has cleared an old run, a collective
    holds every worker until it is gone, so none reads the old backup.
    """
    from siamese_cd.run_folder import check_run_folder

    check_run_folder(settings, "multi-worker", clear=chief)
    if settings.overwrite:
        all_sum(strategy, [0.0])


# Over 60 lines: the chief's and the other workers' steps side by side, in one try/finally
# that removes a worker's scratch folder whatever happens.
def train_multi_worker(data_dir, settings):
    """Train on every worker of the ``TF_CONFIG`` cluster; see `train_on_folder`.

    The chief (worker 0) writes the model, logs and backup, chooses the decision threshold on
    the validation split (`siamese_cd.training.choose_and_save_threshold`, as one device
    does) and scores the test split.

    Returns:
        A `TrainResult`; on workers other than the chief its test scores are None.
    """
    from siamese_cd.distributed_loop import fit_distributed
    from siamese_cd.resume import holds_progress, interruption_reported
    from siamese_cd.run_folder import check_outputs, start_run
    from siamese_cd.training import (
        TrainResult,
        build_model,
        finish_run,
        load_splits,
        raise_if_diverged,
        validation_monitor,
        verbosity,
    )

    # File checks only: they need no TensorFlow, and fail before the cluster forms.
    check_outputs(settings)
    # Then the strategy sets up collectives before TensorFlow runs anything else.
    strategy = strategy_for("multi-worker")
    role = worker_role(strategy)
    _prepare_folder(settings, strategy, role.is_chief)
    keras.utils.set_random_seed(settings.seed)
    scratch = None if role.is_chief else Path(tempfile.mkdtemp(prefix="siamese_cd_worker"))
    own = settings
    if scratch is not None:
        own = dataclasses.replace(settings, log_dir=scratch / "logs", out=scratch / "model.keras")
    verbose = verbosity(settings)
    print(
        f"Worker {role.index} of {role.workers} ({'chief' if role.is_chief else 'worker'}), "
        f"{strategy.num_replicas_in_sync} replica(s) in all"
    )
    try:
        with interruption_reported(settings.backup_dir, settings.model_path):
            splits = load_splits(data_dir, settings)
            monitor = validation_monitor(splits, progress=role.is_chief and verbose == 1)
            resuming = holds_progress(settings.backup_dir)
            with strategy.scope():
                model = build_model(settings, splits.train.channels)
                synchronize_batch_norm(model)
            own.model_path.parent.mkdir(parents=True, exist_ok=True)
            if role.is_chief:
                start_run(settings, "multi-worker")
            callbacks, checkpoint, nan_guard = _callbacks(
                own, splits.val, resuming, role.is_chief, monitor
            )
            history = fit_distributed(
                model,
                splits.train,
                splits.val,
                epochs=settings.epochs,
                strategy=strategy,
                callbacks=callbacks,
                backup_dir=settings.backup_dir,
                verbose=verbose if role.is_chief else 0,
            )
            raise_if_diverged(nan_guard, own)
            if not role.is_chief:
                return TrainResult(model, history.history, None)
            best, scores = finish_run(own, splits, checkpoint, verbose)
            return TrainResult(best, history.history, scores)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
