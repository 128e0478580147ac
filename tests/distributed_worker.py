"""Runs ``siamese-cd`` in a test's subprocess, with hooks the distributed tests need.

Usage: ``python tests/distributed_worker.py ARGS...`` with, in the environment:

- ``READ_LOG``: file to which every path the tf.data pipeline reads is appended;
- ``LOGICAL_CPUS``: split the CPU into this many logical devices first;
- ``KILL_AT``: ``"EPOCH,BATCH"`` (zero-based): the process sends itself SIGKILL after that
  training batch, as a crashed machine would stop.
"""

from __future__ import annotations

import os
import signal
import sys


def _log_reads(path: str) -> None:
    import numpy as np
    import tensorflow as tf

    original = tf.io.read_file
    handle = open(path, "a")  # noqa: SIM115 - kept open for the life of the process

    def record(filename):
        handle.write(filename.decode() + "\n")
        handle.flush()
        return np.int64(0)

    def read_file(filename, name=None):
        done = tf.numpy_function(record, [filename], tf.int64, stateful=True)
        with tf.control_dependencies([done]):
            return original(filename, name=name)

    tf.io.read_file = read_file


def _kill_at(epoch: int, batch: int) -> None:
    from siamese_cd.callbacks import NaNGuard

    original = NaNGuard.on_train_batch_end

    def on_train_batch_end(self, index, logs=None):
        original(self, index, logs)
        if self._epoch == epoch and index == batch:
            os.kill(os.getpid(), signal.SIGKILL)

    NaNGuard.on_train_batch_end = on_train_batch_end


def main() -> int:
    if os.environ.get("LOGICAL_CPUS"):
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        count = int(os.environ["LOGICAL_CPUS"])
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    if os.environ.get("READ_LOG"):
        _log_reads(os.environ["READ_LOG"])
    if os.environ.get("KILL_AT"):
        _kill_at(*map(int, os.environ["KILL_AT"].split(",")))
    from siamese_cd.cli import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
