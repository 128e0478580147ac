"""Which `tf.distribute` strategy trains a model, and the few collective helpers around it.

Training uses TensorFlow's own strategies only: `tf.distribute.MirroredStrategy` for the
devices of one machine and `tf.distribute.MultiWorkerMirroredStrategy`, configured from the
``TF_CONFIG`` variable, for several machines. ``"auto"`` picks multi-worker when ``TF_CONFIG``
names a cluster of workers, mirrored when more than one GPU is visible, and no strategy
otherwise.

Keras's ``Model.fit`` runs under `MirroredStrategy` (one machine) but not under
`MultiWorkerMirroredStrategy`; `siamese_cd.distributed.loop.fit_distributed` is the epoch
loop for that case. Both paths make BatchNorm statistics global (`synchronize_batch_norm`),
so a step on several replicas computes what one device computes on the whole batch.

Example:
    >>> config = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'
    >>> cluster_from_env({"TF_CONFIG": config})
    Cluster(workers=2, index=1)
    >>> resolve_mode("auto", {"TF_CONFIG": config}, gpus=0)
    'multi-worker'
    >>> resolve_mode("auto", {}, gpus=2), resolve_mode("auto", {}, gpus=1)
    ('mirrored', 'none')
    >>> strategy = strategy_for("none")
    >>> strategy.num_replicas_in_sync, worker_role(strategy).is_chief
    (1, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from siamese_cd.errors import ConfigError

MODES = ("auto", "none", "mirrored", "multi-worker")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster: `workers` in all, this one `index`."""

    workers: int
    index: int

    @property
    def is_chief(self) -> bool:
        """Worker 0 is the chief: it alone keeps the model, checkpoints and logs."""
        return self.index == 0


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes, or None when it is unset or names no workers.

    Raises:
        ConfigError: if ``TF_CONFIG`` is not JSON, uses roles other than ``worker`` (no
            parameter servers, no separate chief), or its task index is out of range.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        workers = config.get("cluster", {}).get("worker", [])
        task = config.get("task", {})
    except (ValueError, AttributeError) as error:
        raise ConfigError(f"TF_CONFIG is not a JSON object: {text[:200]!r}") from error
    roles = set(config.get("cluster", {})) - {"worker"}
    if roles:
        raise ConfigError(
            f"TF_CONFIG: only 'worker' tasks are used (worker 0 is the chief), got {sorted(roles)}"
        )
    if not workers:
        return None
    index = task.get("index")
    if task.get("type") != "worker" or not isinstance(index, int) or not 0 <= index < len(workers):
        raise ConfigError(
            f"TF_CONFIG: task must be {{'type': 'worker', 'index': 0..{len(workers) - 1}}}, "
            f"got {task!r}"
        )
    return Cluster(len(workers), index)


def resolve_mode(mode: str, environ: Mapping[str, str] | None = None, gpus: int | None = None):
    """``"none"``, ``"mirrored"`` or ``"multi-worker"`` for `mode` (``"auto"`` decided here).

    Args:
        mode: one of `MODES`.
        environ: the variables to read ``TF_CONFIG`` from; default `os.environ`.
        gpus: visible GPUs; None asks TensorFlow.

    Raises:
        ConfigError: for an unknown mode, or ``"multi-worker"`` without a ``TF_CONFIG`` cluster.
    """
    if mode not in MODES:
        raise ConfigError(f"distribute must be one of {', '.join(MODES)}, got {mode!r}")
    cluster = cluster_from_env(environ)
    if mode == "multi-worker" and cluster is None:
        raise ConfigError(
            "--distribute multi-worker needs TF_CONFIG naming the cluster, e.g. "
            '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    if mode != "auto":
        return mode
    if cluster is not None:
        return "multi-worker"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if gpus > 1 else "none"


def strategy_for(mode: str = "auto", devices: Sequence[str] | None = None):
    """The `tf.distribute.Strategy` for `mode`; TensorFlow's default strategy for ``"none"``.

    Create the model, optimizer, loss and metrics inside ``strategy.scope()``. Under
    ``"mirrored"`` train with ``model.fit``; under ``"multi-worker"`` with
    `siamese_cd.distributed.loop.fit_distributed`. Call it before TensorFlow runs anything
    (multi-worker sets up its collectives at construction).

    Args:
        mode: ``"auto"``, ``"none"``, ``"mirrored"`` or ``"multi-worker"``.
        devices: devices for ``"mirrored"``, e.g. ``["/cpu:0", "/cpu:1"]``; None is every
            local GPU (or the CPU without one).
    """
    import tensorflow as tf

    mode = resolve_mode(mode)
    if mode == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if mode == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) if devices else None)
    return tf.distribute.get_strategy()


def worker_role(strategy) -> Cluster:
    """This process's `Cluster` place under `strategy` (one worker, the chief, without one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return Cluster(1, 0)
    workers = len(resolver.cluster_spec().as_dict().get("worker", []))
    return Cluster(max(workers, 1), int(resolver.task_id or 0))


def synchronize_batch_norm(model) -> int:
    """Make every BatchNormalization layer of `model` use global batch statistics.

    Under several replicas each one would otherwise normalise by the statistics of its own
    slice of the batch; synchronised, a step equals a one-device step on the whole batch (at
    the cost of one small all-reduce per layer). Not saved: a loaded model is a plain one.

    Returns:
        The number of layers changed.
    """
    import keras

    changed = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            changed += 1
    return changed


def all_sum(strategy, values) -> np.ndarray:
    """`values` (a float64 vector, one per worker) summed over every worker of `strategy`.

    Every worker must call it at the same point (it is a collective operation). Without a
    strategy, or with one worker, the values come back as they are.
    """
    import tensorflow as tf

    values = np.asarray(values, np.float64)
    if worker_role(strategy).workers == 1:
        return values
    local = strategy.extended.worker_devices

    # Each worker's first local replica carries its values; the others carry zeros.
    def values_fn(context):
        return values if context.replica_id_in_sync_group % len(local) == 0 else values * 0

    per_replica = strategy.experimental_distribute_values_from_function(values_fn)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return np.asarray(total, np.float64)


def predict_locally(model) -> None:
    """Make ``model.predict_on_batch`` call the model on this worker alone.

    Under a strategy Keras's ``predict_on_batch`` hands every replica the whole batch and
    returns the copies concatenated (twice the rows on two replicas); callbacks such as
    `MaskImageLogger` need the plain prediction. `compile` undoes it.
    """
    import tensorflow as tf

    model.predict_function = tf.function(lambda data: model(data[0][0], training=False))
