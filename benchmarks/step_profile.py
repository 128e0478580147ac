"""Where the time of one training step goes: the published network's step, op by op.

    .venv/bin/python benchmarks/step_profile.py [--precision bfloat16] [--size 256]
        [--batch-size 16] [--steps 2] [--infer] [--jit] [--ablations all] [--rounds 2]

The model is the published FC-Siam-diff as users get it (``SiameseChangeModel.paper(variant,
dtype=...)``, ``compile(recipe="paper")``), on one in-memory batch of uint8 pixels. Its
train step (`SiameseChangeModel.train_step`, the function `fit` runs per batch) is traced
with `tf.profiler` for `--steps` steps and the trace (the ``.xplane.pb`` file) is read here:
every TensorFlow op the executor ran, by part of the network or step (convolutions,
BatchNorm, dropout, the loss, the metric update, the optimizer, ...), by the type it
computes in (from the traced graph), and the type conversions and transposes on their own.
Op times are summed over both inter-op threads, so they add up to more than the wall time
of the step when two ops run at once. `--infer` profiles the predict step too.

`--ablations` times the step with one piece changed at a time (`fit` over repeated batches,
the second epoch timed, alternating rounds, the best kept): metrics off, dropout 0, no
BatchNorm, plain SGD or Keras's Adam instead of the recipe's, XLA (``jit_compile=True``),
no per-image standardisation, Keras's pixel grid, a 1-channel sigmoid head, Keras's
softmax instead of the head's two sigmoids (`siamese_cd.models.blocks.TwoClassSoftmax`),
float32. What a
piece costs is the difference to the model as built; inference (`predict_on_batch`) is timed
beside.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from siamese_cd import SiameseChangeModel  # noqa: E402
from siamese_cd.models.losses import ClassWeightedNLL, WeightedBinaryCrossentropy  # noqa: E402
from siamese_cd.training.precision import POLICIES  # noqa: E402

# An executor op's trace event is named "<node name>:<op type>"; wrappers such as
# "ExecutorState::Process" are not ops.
OP_EVENT = re.compile(r"^(?P<node>[^:]+):(?P<type>[A-Z_][A-Za-z0-9_]*)$")
CONVERSIONS = ("Cast", "Transpose", "_MklTranspose", "_MklToTf", "_MklInputConversion")


# -- the model and its step ---------------------------------------------------------------------


def make_batch(args) -> tuple:
    """``((t1, t2), mask)``: uint8 pixel batches (B, H, W, 3), a float32 mask (B, H, W, 1)."""
    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.size, args.size, 3)
    t1, t2 = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    mask = (rng.random(shape[:-1] + (1,)) > 0.8).astype(np.float32)
    return (t1, t2), mask


def build(args, precision: str | None = None, jit: bool = False, **overrides):
    """The published network, compiled with the published training (or `overrides`)."""
    keras.utils.set_random_seed(0)
    compile_with = overrides.pop("compile_with", None)
    head = overrides.pop("head", None)
    policy = POLICIES[precision or args.precision]
    model = SiameseChangeModel.paper(args.variant, dtype=policy, **overrides)
    if head is not None:  # before the first trace, so the compiled steps use it
        model.get_layer("probability").call = head
    if compile_with is None:
        model.compile(recipe="paper", jit_compile=jit)
    else:  # another optimizer or loss than the recipe's, past the recipe's checks
        optimizer, loss = compile_with()
        keras.Model.compile(model, optimizer=optimizer, loss=loss, jit_compile=jit)
    return model


def ready_step(model, data, infer: bool = False):
    """The model's train (or predict) step as one `tf.function`, traced and warmed up, and
    the type of every op of its graph, by node name."""
    fit_data = tf.data.Dataset.from_tensors(data)
    model.fit(fit_data, epochs=1, verbose=0)  # builds the optimizer, sets the loss weight
    for metric in model.metrics:  # Keras names their ops at the top level: scope them
        metric.update_state = in_scope("metrics", metric.update_state)
    step = model.predict_step if infer else model.train_step
    function = tf.function(step, jit_compile=bool(model.jit_compile))
    inputs = (data[0],) if infer else data
    graph = function.get_concrete_function(inputs).graph
    types = {
        op.name: (op.outputs[0].dtype.name if op.outputs else "-") for op in graph.get_operations()
    }
    for _ in range(2):
        function(inputs)
    return (lambda: function(inputs)), types


def in_scope(scope: str, function):
    """`function` with its ops named under `scope` (names only; the computation is the same)."""

    def scoped(*args, **kwargs):
        with tf.name_scope(scope):
            return function(*args, **kwargs)

    return scoped


# -- the trace ----------------------------------------------------------------------------------


def trace_ops(run, steps: int) -> tuple[list[tuple[str, str, float]], float]:
    """``[(node, op type, ms)]`` of every op run in `steps` calls of `run`, and the wall
    milliseconds per call."""
    folder = tempfile.mkdtemp(prefix="step_profile_")
    try:
        tf.profiler.experimental.start(folder)
        start = time.perf_counter()
        for _ in range(steps):
            result = run()
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
        wall = (time.perf_counter() - start) * 1000 / steps
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        path = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
        with open(path, "rb") as file:
            space.ParseFromString(file.read())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ops = []
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                match = OP_EVENT.match(names[event.metadata_id].name)
                if match:
                    node = match["node"].removeprefix("StatefulPartitionedCall/")
                    ops.append((node, match["type"], event.duration_ps / 1e9))
    return ops, wall


def part_of(node: str, op_type: str, optimizer: str) -> str:
    """The part of the network or step an op belongs to, from its node name and type."""
    scope = node.removeprefix("gradient_tape/")
    rules = (
        ("optimizer", scope.split("/")[0] == optimizer),
        ("metrics", scope.startswith("metrics")),
        ("loss", "compile_loss" in scope),
        ("preprocessing", "preprocessor" in scope),
        ("head softmax", "probability" in scope),
        ("BatchNorm (+ ReLU)", "BatchNorm" in op_type or "_bn" in scope),
        ("convolutions", "Conv2D" in op_type or "BiasAdd" in op_type),
        ("weight casts", op_type == "Cast" and re.search(r"_(conv|up)(_\d+)?/|/head", scope)),
        ("ReLU", "_relu" in scope),
        ("dropout", "_drop" in scope),
        ("pooling", "_pool" in scope or "MaxPool" in op_type),
        ("PyTorch grid (align)", "_align" in scope),
        ("skips (|t1 - t2|, concat)", re.search(r"_diff|_concat|/Abs", scope)),
        ("gradient sums", op_type == "AddN"),
    )
    return next((part for part, matches in rules if matches), "other")


def summarise(ops, types: dict, steps: int, optimizer: str) -> dict:
    """Per-step op milliseconds and counts by part, by (op type, type), and by type."""
    tables = {key: collections.defaultdict(lambda: [0, 0.0]) for key in ("part", "op", "dtype")}
    for node, op_type, ms in ops:
        dtype = types.get(node.removeprefix("gradient_tape/"), types.get(node, "?"))
        direction = "backward" if node.startswith("gradient_tape/") else "forward"
        keys = {
            "part": (part_of(node, op_type, optimizer), direction),
            "op": (op_type, dtype),
            "dtype": (dtype,),
        }
        for table, key in keys.items():
            tables[table][key][0] += 1 / steps
            tables[table][key][1] += ms / steps
    return tables


def print_tables(title: str, tables: dict, wall: float, top: int) -> None:
    total = sum(ms for _, ms in tables["dtype"].values())
    print(f"\n### {title}\n")
    print(f"wall {wall:.0f} ms per step; op time {total:.0f} ms (summed over the threads)\n")
    print("| part | direction | ops | ms | share of op time |")
    print("|---|---|---:|---:|---:|")
    for (part, direction), (count, ms) in sorted(tables["part"].items(), key=lambda i: -i[1][1]):
        print(f"| {part} | {direction} | {count:.0f} | {ms:.1f} | {ms / total:.1%} |")
    print("\n| computes in | ops | ms | share |")
    print("|---|---:|---:|---:|")
    for (dtype,), (count, ms) in sorted(tables["dtype"].items(), key=lambda i: -i[1][1]):
        print(f"| {dtype} | {count:.0f} | {ms:.1f} | {ms / total:.1%} |")
    print(f"\n| op type | computes in | ops | ms | share |  (top {top})")
    print("|---|---|---:|---:|---:|")
    ranked = sorted(tables["op"].items(), key=lambda i: -i[1][1])
    for (op_type, dtype), (count, ms) in ranked[:top]:
        print(f"| {op_type} | {dtype} | {count:.0f} | {ms:.1f} | {ms / total:.1%} |")
    converting = [(k, v) for k, v in ranked if k[0] in CONVERSIONS]
    count = sum(v[0] for _, v in converting)
    ms = sum(v[1] for _, v in converting)
    detail = ", ".join(
        f"{op} to {dtype} {n:.0f} ({t:.1f} ms)" for (op, dtype), (n, t) in converting
    )
    print(
        f"\nconversions (casts, transposes, layout): {count:.0f} ops, {ms:.1f} ms, {ms / total:.1%}"
    )
    print(f"  {detail or 'none'}")


# -- ablations ----------------------------------------------------------------------------------


def adam_and_loss():
    return keras.optimizers.Adam(1e-3), ClassWeightedNLL(pos_weight=4.0)


def sgd_and_loss():
    return keras.optimizers.SGD(1e-3), ClassWeightedNLL(pos_weight=4.0)


def sigmoid_loss():
    from siamese_cd.models.recipe import CoupledAdam

    return CoupledAdam(1e-3), WeightedBinaryCrossentropy(pos_weight=4.0, normalize="weights")


def keras_grid_loss():
    from siamese_cd.models.recipe import CoupledAdam

    return CoupledAdam(1e-3), ClassWeightedNLL(pos_weight=4.0)


#: label -> build arguments; "metrics off" also drops the metric update from the step.
ABLATIONS = {
    "as built": {},
    "metrics off": {},
    "dropout 0": {"dropout": 0.0},
    "no BatchNorm": {"batch_norm": False},
    "SGD instead of the recipe's Adam": {"compile_with": sgd_and_loss},
    "Keras's Adam instead of the recipe's": {"compile_with": adam_and_loss},
    "XLA (jit_compile=True)": {"jit": True},
    "no per-image standardisation": {"preprocessing": "unit"},
    "Keras's pixel grid": {"alignment": "keras", "compile_with": keras_grid_loss},
    "1-channel sigmoid head": {"num_classes": 1, "compile_with": sigmoid_loss},
    "Keras's softmax head": {"head": keras.activations.softmax},
    "float32": {"precision": "float32"},
}


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def run_ablations(args, data) -> None:
    labels = list(ABLATIONS) if args.ablations == "all" else args.ablations.split(",")
    unknown = [label for label in labels if label not in ABLATIONS]
    if unknown:
        raise SystemExit(f"unknown ablations {unknown}; choose from {list(ABLATIONS)}")
    batches = tf.data.Dataset.from_tensors(data).repeat(args.fit_steps)
    models = {}
    for label in ["as built"] + [label for label in labels if label != "as built"]:
        model = build(args, **ABLATIONS[label])
        if label == "metrics off":
            model.change_metrics.update_state = lambda *a, **k: None
        model.fit(batches, epochs=1, verbose=0)  # trace, warm up
        models[label] = model
    rates = {label: [] for label in models}
    infer = {label: [] for label in models}
    for _ in range(args.rounds):
        for label, model in models.items():
            timer = EpochTimer()
            model.fit(batches, epochs=1, verbose=0, callbacks=[timer])
            rates[label].append(args.fit_steps * args.batch_size / timer.seconds)
            model.predict_on_batch(data[0])  # traced once, before the timing
            start = time.perf_counter()
            for _ in range(args.fit_steps):
                model.predict_on_batch(data[0])
            infer[label].append(args.fit_steps * args.batch_size / (time.perf_counter() - start))
    base, base_infer = max(rates["as built"]), max(infer["as built"])
    print(f"\n### Ablations ({args.precision} unless said; best of {args.rounds} rounds)\n")
    print(
        "| step | train pairs/s | rounds | vs as built | ms per step saved | infer pairs/s | vs |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for label, values in rates.items():
        best, best_infer = max(values), max(infer[label])
        saved = (1 / base - 1 / best) * args.batch_size * 1000
        shown = " ".join(f"{v:.2f}" for v in values)
        print(
            f"| {label} | {best:.2f} | {shown} | {best / base:.2f}x | {saved:+.0f} | "
            f"{best_infer:.1f} | {best_infer / base_infer:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("diff", "conc", "ef"), default="diff")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps")
    parser.add_argument("--top", type=int, default=25, help="op types listed")
    parser.add_argument("--infer", action="store_true", help="also profile the predict step")
    parser.add_argument("--jit", action="store_true", help="profile with jit_compile=True")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument(
        "--ablations", help="'all' or labels joined by commas: " + ", ".join(ABLATIONS)
    )
    parser.add_argument("--rounds", type=int, default=2, help="ablation rounds; best kept")
    parser.add_argument("--fit-steps", type=int, default=4, help="timed steps per ablation")
    args = parser.parse_args()

    data = make_batch(args)
    print(
        f"FC-Siam-{args.variant} (published network and training), {args.precision}, "
        f"{args.size}x{args.size}, batch {args.batch_size}, {args.steps} steps profiled; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} cores"
    )
    if args.profile:
        model = build(args, jit=args.jit)
        modes = (False, True) if args.infer else (False,)
        for infer in modes:
            run, types = ready_step(model, data, infer=infer)
            ops, wall = trace_ops(run, args.steps)
            tables = summarise(ops, types, args.steps, model.optimizer.name)
            print_tables("predict step" if infer else "train step", tables, wall, args.top)
    if args.ablations:
        run_ablations(args, data)


if __name__ == "__main__":
    main()
