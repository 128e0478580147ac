"""Inference speed of an exported SiameseChangeModel in each runtime, beside Keras.

    .venv/bin/python benchmarks/export_speed.py [--size 256] [--batch-size 16] [--steps 8]

The default FC-Siam-diff (depth 4, 16 filters, uint8 RGB, "unit" scaling) is exported with
`siamese_cd.evaluation.export.export_model` as a SavedModel, an ONNX file and a LiteRT file,
and each is run on the same batch of uint8 pairs by its own runtime: Keras
(``predict_on_batch``, float32 and, on CPUs with native bfloat16, mixed bfloat16 for
reference), TensorFlow (the SavedModel's ``serve``), onnxruntime and the LiteRT interpreter
(XNNPACK), the last two through the runners of ``siamese-cd predict``
(`siamese_cd.evaluation.runtimes`) with every core. Every export computes in float32. The
batches come from memory, so only the model is measured; each runtime is timed in
alternating rounds and its best round kept. ``make bench`` runs it after
``benchmarks/train_step.py``; the ONNX and LiteRT rows need ``pip install
'siamese_cd[export]'`` and are left out without it.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from siamese_cd import SiameseChangeModel  # noqa: E402
from siamese_cd.evaluation.export import REQUIRED_MODULES, export_model  # noqa: E402
from siamese_cd.evaluation.runtimes import installed, load_exported_model  # noqa: E402
from siamese_cd.models.preprocessing import preprocessing_config  # noqa: E402
from siamese_cd.training.precision import choose_precision, cpu_flags  # noqa: E402

FILES = {"saved_model": "served", "onnx": "model.onnx", "litert": "model.tflite"}
LABELS = {
    "keras": "Keras `predict_on_batch`, float32",
    "keras_bfloat16": "Keras `predict_on_batch`, mixed bfloat16",
    "saved_model": "SavedModel, TensorFlow `serve`",
    "onnx": "ONNX, onnxruntime (CPU)",
    "litert": "LiteRT, interpreter (XNNPACK)",
}


def build(pixels: tuple[np.ndarray, np.ndarray], dtype: str = "float32") -> SiameseChangeModel:
    keras.utils.set_random_seed(0)
    config = preprocessing_config(pixels, "unit", progress=False)
    return SiameseChangeModel(variant="diff", preprocessing=config, dtype=dtype)


def rate(predict, inputs, steps: int) -> float:
    """Pairs per second of `predict(inputs)` over `steps` calls, after one warm-up call."""
    predict(inputs)
    start = time.perf_counter()
    for _ in range(steps):
        predict(inputs)
    return steps * len(inputs[0]) / (time.perf_counter() - start)


def runners(model: SiameseChangeModel, folder: Path, bfloat16: bool) -> dict:
    """Name -> a function of a ``(t1, t2)`` batch returning its change probability."""
    found = {"keras": model.predict_on_batch}
    if bfloat16:
        found["keras_bfloat16"] = build_like(model, "mixed_bfloat16").predict_on_batch
    for format, name in FILES.items():
        if not all(installed(module) for module in REQUIRED_MODULES[format]):
            print(f"{format}: not timed ({', '.join(REQUIRED_MODULES[format])} not installed)")
            continue
        export_model(model, folder / name, format)
        if format == "saved_model":
            served = tf.saved_model.load(str(folder / name))
            found[format] = lambda batch, served=served: served.serve(*batch)["probability"].numpy()
        else:
            found[format] = load_exported_model(folder / name).predict_on_batch
    return found


def build_like(model: SiameseChangeModel, dtype: str) -> SiameseChangeModel:
    """The same network and weights computing in `dtype`."""
    copy = SiameseChangeModel.from_config({**model.get_config(), "dtype": dtype})
    copy.set_weights(model.get_weights())
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternate rounds; best kept")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.size, args.size, 3)
    pixels = tuple(rng.integers(0, 256, shape).astype(np.uint8) for _ in range(2))
    model = build(pixels)
    bfloat16 = choose_precision()[0] == "bfloat16"
    with tempfile.TemporaryDirectory() as folder:
        found = runners(model, Path(folder), bfloat16)
        rates = {name: [] for name in found}
        for _ in range(args.rounds):
            for name, predict in found.items():
                rates[name].append(rate(predict, pixels, args.steps))
    best = {name: max(values) for name, values in rates.items()}

    cpu = platform.processor() or platform.machine()
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}) or ["no bfloat16 instructions"]
    print(
        f"\nFC-Siam-diff (depth 4, 16 filters), uint8 RGB {args.size}x{args.size}, batch "
        f"{args.batch_size}, {args.steps} calls x best of {args.rounds}; CPU {cpu} "
        f"({', '.join(flags)}), {os.cpu_count()} cores; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}\n"
    )
    print("| runtime | pairs/s | vs Keras float32 |")
    print("|---|---:|---:|")
    for name, value in best.items():
        print(f"| {LABELS[name]} | {value:.1f} | {value / best['keras']:.2f}x |")


if __name__ == "__main__":
    main()
