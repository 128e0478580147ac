"""Training and inference speed of SiameseChangeModel per precision, and the machine's peak.

    .venv/bin/python benchmarks/train_step.py [--size 256] [--batch-size 16] [--steps 8]

In one run: the machine's measured peak (a large matmul in float32 and in bfloat16); then
the published network as users get it (`SiameseChangeModel.paper(variant, dtype=...)`,
``compile(recipe="paper")``: 2-class softmax, PyTorch's grid, per-image standardisation)
trained and run for inference in float32 and under mixed bfloat16, and, in float32, a plain
functional `keras.Model` over the same layers trained by Keras's built-in step, so the cost
of the model's own train step shows.
Batches come from memory, so only the model is measured; inference takes uint8 pixels, as
`predict` feeds them. FLOPs are counted from the convolutions (multiply-adds x 2); a training
step costs about 3x the forward pass. "of peak" divides a model's GFLOP/s by the matmul peak
of its compute precision.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from siamese_cd import ChangeMetrics, SiameseChangeModel  # noqa: E402
from siamese_cd.models.losses import ClassWeightedNLL  # noqa: E402
from siamese_cd.training.precision import POLICIES, choose_precision, cpu_flags  # noqa: E402

NAMES = {"diff": "FC-Siam-diff", "conc": "FC-Siam-conc", "ef": "FC-EF"}


def conv_flops_per_pair(model: SiameseChangeModel, height: int, width: int) -> int:
    """Forward FLOPs of every convolution for one pair, from layer names and kernel shapes.

    Layers named ``enc<L>_...`` and ``dec<L>_...`` run at 1/2**(L-1) of the input size (a
    strided transposed conv at its input's, a level deeper); the shared encoder runs once per
    date in the siamese variants.
    """
    flops = 0
    runs = 1 if model.variant == "ef" else 2
    layers = [(layer, runs) for layer in model.backbone.get_layer("encoder").layers]
    layers += [(layer, 1) for layer in model.backbone.layers]
    for layer, times in layers:
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            continue
        match = re.match(r"(?:enc|dec)(\d+)_", layer.name)
        scale = 2 ** (int(match.group(1)) - 1) if match else 1
        kh, kw, cin, cout = layer.kernel.shape
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw, cout, cin = layer.kernel.shape
            # A strided transposed conv multiplies each of its input pixels, a level deeper.
            scale *= layer.strides[0]
        pixels = (height // scale) * (width // scale)
        flops += times * 2 * kh * kw * cin * cout * pixels
    return flops


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def train_rate(model: keras.Model, batches: tf.data.Dataset, pairs: int) -> float:
    timer = EpochTimer()
    model.fit(batches, epochs=1, verbose=0, shuffle=False)  # trace and warm up
    model.fit(batches, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return pairs / timer.seconds


def infer_rate(model: keras.Model, inputs, repeats: int) -> float:
    model.predict_on_batch(inputs)  # trace
    start = time.perf_counter()
    for _ in range(repeats):
        model.predict_on_batch(inputs)
    return repeats * len(inputs[0]) / (time.perf_counter() - start)


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 10, trials: int = 5) -> float:
    """GFLOP/s of a square matmul in `dtype`: the most this machine computes in it, the
    best of `trials` timings (one bfloat16 timing of 0.1 s came out at half the best)."""
    a = tf.random.uniform((size, size), dtype=tf.float32)
    a = tf.cast(a, dtype)
    step = tf.function(lambda x: tf.linalg.matmul(x, x))
    step(a).numpy()  # trace, warm up
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            result = step(a)
        result.numpy()
        best = max(best, repeats * 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def build(variant: str, precision: str) -> SiameseChangeModel:
    """The published network in `precision`, compiled with the published training."""
    keras.utils.set_random_seed(0)
    model = SiameseChangeModel.paper(variant, dtype=POLICIES[precision])
    model.compile(recipe="paper")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(NAMES), default="diff")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternate measurements; best kept")
    parser.add_argument(
        "--bfloat16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time mixed bfloat16 (default: when the hardware computes it natively; "
        "emulated bfloat16 on other CPUs takes many times longer)",
    )
    args = parser.parse_args()
    if args.bfloat16 is None:
        args.bfloat16 = choose_precision()[0] == "bfloat16"

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.size, args.size, 3)
    t1, t2 = rng.random(shape, np.float32), rng.random(shape, np.float32)
    pixels = tuple((x * 255).astype(np.uint8) for x in (t1, t2))
    mask = (rng.random(shape[:-1] + (1,)) > 0.8).astype(np.float32)
    batches = tf.data.Dataset.from_tensors(((t1, t2), mask)).repeat(args.steps)
    pairs = args.steps * args.batch_size

    precisions = ("float32", "bfloat16") if args.bfloat16 else ("float32",)
    peaks = {name: matmul_peak(name) for name in precisions}
    models = {name: build(args.variant, name) for name in precisions}
    plain = keras.Model(models["float32"].inputs, models["float32"].outputs, name="plain")
    loss = ClassWeightedNLL(pos_weight=4.0)
    plain.compile(optimizer="adam", loss=loss, metrics=[ChangeMetrics()])
    runs = {**models, "plain": plain}
    rates = {key: [] for key in runs}
    for _ in range(args.rounds):
        for key, model in runs.items():
            rates[key].append(train_rate(model, batches, pairs))
    train = {key: max(values) for key, values in rates.items()}
    infer = {
        key: infer_rate(model, pixels if key != "plain" else (t1, t2), args.steps)
        for key, model in runs.items()
    }
    flops = conv_flops_per_pair(models["float32"], args.size, args.size)

    cpu = platform.processor() or platform.machine()
    bf16 = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}) or ["no bfloat16 instructions"]
    print(
        f"{NAMES[args.variant]}, {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.steps} steps x best of {args.rounds}; CPU {cpu} ({', '.join(bf16)}), "
        f"{os.cpu_count()} cores; TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )
    gflop = flops / 1e9
    print(f"forward FLOPs per pair: {gflop:.2f} GFLOP (training step ~3x: {3 * gflop:.2f})")
    print("matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()) + "\n")
    print("| run | train pairs/s | infer pairs/s | train GFLOP/s | of peak | infer GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {
        "float32": "SiameseChangeModel.paper, float32",
        "bfloat16": "SiameseChangeModel.paper, mixed bfloat16",
        "plain": "plain functional, built-in fit, float32",
    }
    for key, label in labels.items():
        if key not in runs:
            continue
        train_flops = train[key] * 3 * flops / 1e9
        peak = peaks["bfloat16" if key == "bfloat16" else "float32"]
        print(
            f"| {label} | {train[key]:.2f} | {infer[key]:.2f} | {train_flops:.1f} | "
            f"{train_flops / peak:.0%} | {infer[key] * flops / 1e9:.1f} |"
        )
    if "bfloat16" in runs:
        speed = train["bfloat16"] / train["float32"], infer["bfloat16"] / infer["float32"]
        print(f"\nbfloat16 / float32: training {speed[0]:.2f}x, inference {speed[1]:.2f}x")
    else:
        print("\nbfloat16 not timed: no native bfloat16 here (--bfloat16 to time it anyway)")
    overhead = train["plain"] / train["float32"] - 1
    print(f"own train step costs {overhead * 100:+.1f}% time per pair over built-in fit")


if __name__ == "__main__":
    main()
