"""Where a search runs: its role in a distributed search, and the devices each trial uses.

A distributed search is the same command started once per process with Keras Tuner's
``KERASTUNER_TUNER_ID`` (``chief``, then ``tuner0``, ``tuner1``, ...), ``KERASTUNER_ORACLE_IP``
and ``KERASTUNER_ORACLE_PORT`` variables, all processes sharing one directory.

Example:
    >>> oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}
    >>> distributed_role({**oracle, "KERASTUNER_TUNER_ID": "chief"})
    'chief'
    >>> distributed_role({**oracle, "KERASTUNER_TUNER_ID": "tuner1"})
    'worker'
    >>> distributed_role({}) is None  # one process
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from siamese_cd.errors import ConfigError


def distributed_role(environ: Mapping[str, str] | None = None) -> str | None:
    """``"chief"``, ``"worker"`` or None, from Keras Tuner's ``KERASTUNER_*`` variables.

    Args:
        environ: the variables; default `os.environ`.

    Raises:
        ConfigError: if the variables are set only in part.
    """
    environ = os.environ if environ is None else environ
    names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    present = [name for name in names if environ.get(name)]
    if not present or present == ["KERASTUNER_TUNER_ID"]:
        return None  # a tuner id alone only names the tuner of a one-process search
    if missing := [name for name in names if name not in present]:
        raise ConfigError(f"distributed search needs {', '.join(names)}; missing {missing}")
    return "chief" if "chief" in environ["KERASTUNER_TUNER_ID"] else "worker"


def configure_devices(gpus: int | None = None, *, chief: bool = False):
    """Choose devices, enable GPU memory growth, print what will be used.

    Must run before TensorFlow touches a device.

    Args:
        gpus: GPUs to use (the first ones visible); None for all, 0 for the CPU only.
        chief: the chief of a distributed search, which only runs the oracle: GPUs are hidden
            from it so that its start-up builds do not hold GPU memory the workers need.

    Returns:
        A `tf.distribute.MirroredStrategy` over the GPUs when more than one is used, else None.

    Raises:
        ConfigError: if more GPUs are asked for than are visible, or devices were already
            initialised.
    """
    import tensorflow as tf

    visible = tf.config.list_physical_devices("GPU")
    cpus = os.cpu_count() or 1
    try:
        if chief:
            tf.config.set_visible_devices([], "GPU")
            print(f"Devices: chief (runs the oracle, trains nothing); CPU ({cpus} cores)")
            return None
        if gpus is not None and gpus > len(visible):
            raise ConfigError(f"--gpus {gpus}: only {len(visible)} GPU(s) visible")
        chosen = visible if gpus is None else visible[:gpus]
        tf.config.set_visible_devices(chosen, "GPU")
        for gpu in chosen:
            # Without it TensorFlow maps nearly all GPU memory at start, which starves other
            # processes sharing the GPU (e.g. two tuner workers).
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as error:
        raise ConfigError(
            f"devices must be configured before TensorFlow uses them: {error}"
        ) from error
    if not chosen:
        print(f"Devices: CPU ({cpus} cores), no GPU" + (" visible" if not visible else " used"))
        return None
    lines = [f"Devices: {len(chosen)} of {len(visible)} GPU(s), memory growth on"]
    for index, gpu in enumerate(chosen):
        details = tf.config.experimental.get_device_details(gpu)
        name = details.get("device_name", gpu.name)
        capability = details.get("compute_capability")
        suffix = f", compute capability {capability[0]}.{capability[1]}" if capability else ""
        lines.append(f"  GPU {index}: {name}{suffix}")
    print("\n".join(lines))
    if len(chosen) == 1:
        return None
    strategy = tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(chosen))])
    print(f"MirroredStrategy: every trial trains on {len(chosen)} GPUs")
    return strategy
