"""Training and inference speed of SiameseChangeModel on CPU, against built-in `fit`.

    .venv/bin/python benchmarks/train_step.py [--size 256] [--batch-size 16] [--steps 8]

The same network is timed twice in one run: as `SiameseChangeModel`, whose own train step
adds the change metrics and the replica-aware loss, and as a plain functional `keras.Model`
over the same layers, compiled with the same loss and metrics and trained by the built-in
step. Batches come from memory, so only the model is measured. FLOPs are counted from the
convolutions (multiply-adds x 2); a training step costs about 3x the forward pass.
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

from siamese_cd import ChangeMetrics, SiameseChangeModel, WeightedBinaryCrossentropy  # noqa: E402

NAMES = {"diff": "FC-Siam-diff", "conc": "FC-Siam-conc", "ef": "FC-EF"}


def conv_flops_per_pair(model: SiameseChangeModel, height: int, width: int) -> int:
    """Forward FLOPs of every convolution for one pair, from layer names and kernel shapes.

    Layers named ``enc<L>_...`` and ``dec<L>_...`` run at 1/2**(L-1) of the input size; the
    shared encoder runs once per date in the siamese variants.
    """
    flops = 0
    runs = 1 if model.variant == "ef" else 2
    layers = [(layer, runs) for layer in model.get_layer("encoder").layers]
    layers += [(layer, 1) for layer in model.layers]
    for layer, times in layers:
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            continue
        match = re.match(r"(?:enc|dec)(\d+)_", layer.name)
        scale = 2 ** (int(match.group(1)) - 1) if match else 1
        kh, kw, cin, cout = layer.kernel.shape
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw, cout, cin = layer.kernel.shape
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(NAMES), default="diff")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternate measurements; best kept")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.size, args.size, 3)
    t1, t2 = rng.random(shape, np.float32), rng.random(shape, np.float32)
    mask = (rng.random(shape[:-1] + (1,)) > 0.8).astype(np.float32)
    batches = tf.data.Dataset.from_tensors(((t1, t2), mask)).repeat(args.steps)
    pairs = args.steps * args.batch_size

    keras.utils.set_random_seed(0)
    ours = SiameseChangeModel(variant=args.variant)
    ours.compile(optimizer="adam", loss=WeightedBinaryCrossentropy(pos_weight=4.0))
    plain = keras.Model(ours.inputs, ours.outputs, name="plain_functional")
    plain.compile(
        optimizer="adam", loss=WeightedBinaryCrossentropy(pos_weight=4.0), metrics=[ChangeMetrics()]
    )

    results = {"ours": [], "plain": []}
    for _ in range(args.rounds):
        for key, model in (("ours", ours), ("plain", plain)):
            results[key].append(train_rate(model, batches, pairs))
    train = {key: max(rates) for key, rates in results.items()}
    infer = {
        key: infer_rate(m, (t1, t2), args.steps) for key, m in (("ours", ours), ("plain", plain))
    }
    flops = conv_flops_per_pair(ours, args.size, args.size)

    cpu = platform.processor() or platform.machine()
    print(
        f"{NAMES[args.variant]}, {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.steps} steps x best of {args.rounds}; CPU {cpu}, {os.cpu_count()} cores; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )
    gflop = flops / 1e9
    print(f"forward FLOPs per pair: {gflop:.2f} GFLOP (training step ~3x: {3 * gflop:.2f})")
    print()
    print(f"{'':34} {'train pairs/s':>14} {'infer pairs/s':>14} {'train GFLOP/s':>14}")
    labels = {"ours": "SiameseChangeModel (own step)", "plain": "plain functional, built-in fit"}
    for key, label in labels.items():
        print(
            f"{label:34} {train[key]:14.2f} {infer[key]:14.2f} {train[key] * 3 * flops / 1e9:14.1f}"
        )
    overhead = train["plain"] / train["ours"] - 1
    print(f"\nown train step costs {overhead * 100:+.1f}% time per pair over built-in fit")


if __name__ == "__main__":
    main()
