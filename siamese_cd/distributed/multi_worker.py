"""`train_on_folder` under a strategy: mirrored over local devices, or over a cluster.

``distribute="mirrored"`` keeps Keras's ``fit`` (it runs under `MirroredStrategy`), with the
model built in the strategy's scope. ``distribute="multi-worker"`` runs
`siamese_cd.distributed.loop.fit_distributed` on every worker of the ``TF_CONFIG`` cluster:
worker 0, the chief, writes the model, the best checkpoint, the logs and the mask panels and
scores the test split once; the other workers write their copies to temporary folders that
are removed at the end. Both run the steps of the one training pipeline
(`siamese_cd.training.pipeline`), as one device does.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import keras

from siamese_cd.distributed.strategy import (
    all_sum,
    predict_locally,
    strategy_for,
    synchronize_batch_norm,
    worker_role,
)
from siamese_cd.training.pipeline import (
    build_callbacks,
    build_model,
    finish_training,
    load_splits,
    raise_if_diverged,
    validation_monitor,
    verbosity,
)
from siamese_cd.training.settings import TrainResult, TrainSettings


def mirrored_model(settings: TrainSettings, in_channels: int):
    """``(strategy, model)``: a `MirroredStrategy` and the run's model built in its scope.

    The strategy mirrors over the visible GPUs; without a GPU, over the logical CPU devices
    (one unless configured with `tf.config.set_logical_device_configuration`).
    """
    import tensorflow as tf

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


def _prepare_folder(settings, strategy, chief: bool) -> None:
    """`check_run_folder` on every worker (the chief alone clears with ``overwrite``).

    Every worker reads the same shared folder, so all refuse together rather than leave the
    others waiting in a collective. After the chief has cleared an old run, a collective
    holds every worker until it is gone, so none reads the old backup.
    """
    from siamese_cd.training.run_folder import check_run_folder

    check_run_folder(settings, "multi-worker", clear=chief)
    if settings.overwrite:
        all_sum(strategy, [0.0])


# Over 60 lines: the chief's and the other workers' steps side by side, in one try/finally
# that removes a worker's scratch folder whatever happens.
def train_multi_worker(data_dir, settings: TrainSettings) -> TrainResult:
    """Train on every worker of the ``TF_CONFIG`` cluster; see `train_on_folder`.

    The chief (worker 0) writes the model, logs and backup, and finishes the run as one
    device does (`siamese_cd.training.pipeline.finish_run`: the best checkpoint, its
    decision threshold on the validation split, the test scores).

    Returns:
        A `TrainResult`; on workers other than the chief its test scores are None.
    """
    from siamese_cd.distributed.loop import fit_distributed
    from siamese_cd.training.resume import holds_progress, interruption_reported
    from siamese_cd.training.run_folder import check_outputs, start_run

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
            progress = role.is_chief and verbose == 1
            monitor = validation_monitor(splits.val, splits.note, progress=progress)
            resuming = holds_progress(settings.backup_dir)
            with strategy.scope():
                model = build_model(settings, splits.train.channels)
                synchronize_batch_norm(model)
            own.model_path.parent.mkdir(parents=True, exist_ok=True)
            if role.is_chief:
                start_run(settings, "multi-worker")
            # fit_distributed keeps its own per-epoch backup (a TensorFlow checkpoint).
            run = build_callbacks(
                own, splits.val, resuming, monitor, chief=role.is_chief, backup=False
            )
            history = fit_distributed(
                model,
                splits.train,
                splits.val,
                epochs=settings.epochs,
                strategy=strategy,
                callbacks=run.callbacks,
                backup_dir=settings.backup_dir,
                verbose=verbose if role.is_chief else 0,
            )
            raise_if_diverged(run.nan_guard, own)
            if not role.is_chief:
                return TrainResult(model, history.history, None)
            best, scores = finish_training(own, splits, run.checkpoint, verbose)
            return TrainResult(best, history.history, scores)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
