"""Numeric precision of training and inference, chosen for the hardware.

``"auto"`` picks mixed bfloat16 where the hardware computes it natively (CPUs with
AVX512_BF16 or AMX, GPUs of compute capability 8.0 and newer), mixed float16 on older GPUs
with tensor cores (compute capability 7.x), and float32 otherwise, and says why. Under every
mixed policy the model keeps its preprocessing, head, probabilities, loss and metrics in
float32; only the convolutions compute in the lower precision.

A model gets its precision as a dtype policy of its own, as keras-hub's models do:
``SiameseChangeModel(..., dtype=dtype_policy("bfloat16"))``. Keras's global policy is left
alone, so models of other precisions can live in the same process; only the commands that
load saved models (``evaluate``, ``predict``) set it, once, with `set_precision`.

Example:
    >>> choose_precision(cpu_flags={"avx2", "avx512_bf16"}, gpu_capabilities=[])[0]
    'bfloat16'
    >>> choose_precision(cpu_flags={"avx2"}, gpu_capabilities=[(7, 5)])[0]
    'float16'
    >>> choose_precision(cpu_flags={"avx2"}, gpu_capabilities=[])
    ('float32', 'the CPU has neither AVX512_BF16 nor AMX, and no GPU is visible')
    >>> dtype_policy("bfloat16").name
    'mixed_bfloat16'
"""

from __future__ import annotations

import argparse
from pathlib import Path

from siamese_cd.errors import ConfigError

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# Precision name -> Keras dtype policy.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU listed in `cpuinfo` (empty if unknown)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the visible GPUs, e.g. ``[(8, 0)]``; empty without GPUs."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def choose_precision(
    cpu_flags: set[str] | None = None, gpu_capabilities: list[tuple[int, int]] | None = None
) -> tuple[str, str]:
    """The precision ``"auto"`` stands for on this hardware, and the reason.

    Args:
        cpu_flags: CPU instruction flags; read from ``/proc/cpuinfo`` when None.
        gpu_capabilities: compute capabilities of the GPUs that will train; read from
            TensorFlow when None.

    Returns:
        ``(precision, reason)``, precision one of ``"float32"``, ``"bfloat16"``,
        ``"float16"``.
    """
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    gpus = _gpu_capabilities() if gpu_capabilities is None else gpu_capabilities
    if gpus:
        oldest = min(gpus)
        name = f"GPU compute capability {oldest[0]}.{oldest[1]}"
        if oldest >= (8, 0):
            return "bfloat16", f"{name} computes bfloat16 natively"
        if oldest >= (7, 0):
            return "float16", f"{name} has float16 tensor cores but no bfloat16"
        return "float32", f"{name} has no tensor cores"
    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16")):
        if flag in flags:
            return "bfloat16", f"the CPU has {name}, which computes bfloat16 natively"
    return "float32", "the CPU has neither AVX512_BF16 nor AMX, and no GPU is visible"


def resolve_precision(precision: str = "auto", verbose: bool = False) -> str:
    """`precision` made concrete: ``"auto"`` chosen for this hardware; printed with the
    reason (``Precision: bfloat16 (...)``) when `verbose`.

    Raises:
        ConfigError: for an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    reason = "as asked"
    if precision == "auto":
        precision, reason = choose_precision()
    if verbose:
        print(f"Precision: {precision} ({reason})")
    return precision


def dtype_policy(precision: str = "auto", verbose: bool = False):
    """The Keras dtype policy of a model built in `precision` (see `resolve_precision`).

    Give it as ``dtype=`` to `SiameseChangeModel`: that model computes in it, and nothing
    else in the process changes.

    Raises:
        ConfigError: for an unknown precision.
    """
    import keras

    return keras.DTypePolicy(POLICIES[resolve_precision(precision, verbose)])


def set_precision(precision: str = "auto", verbose: bool = True) -> str:
    """Set Keras's global dtype policy for `precision`; returns the precision chosen.

    Models loaded (or built without ``dtype=``) afterwards compute in it: what ``evaluate``
    and ``predict`` do for ``--precision``, since a saved model does not record a precision
    (it is the machine's choice, not the file's). Training builds its models with
    `dtype_policy` instead.

    Raises:
        ConfigError: for an unknown precision.
    """
    import keras

    precision = resolve_precision(precision, verbose)
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    return precision


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision`` (and its old alias ``--mixed-precision``) of every command that runs
    a model; `dtype_policy` (training) or `set_precision` (loading) applies it."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="compute precision; auto: bfloat16 on CPUs with AVX512_BF16 or AMX and on GPUs "
        "of compute capability 8+, float16 on older tensor-core GPUs, else float32",
    )
    parser.add_argument(
        "--mixed-precision",
        dest="precision",
        action="store_const",
        const="float16",
        help="the same as --precision float16 (kept for existing scripts)",
    )


# Module-level names for the defaults, so tests can patch the hardware probes.
def _cpu_flags() -> set[str]:
    return cpu_flags()


def _gpu_capabilities() -> list[tuple[int, int]]:
    return gpu_capabilities()
