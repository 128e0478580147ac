"""Input pipeline speed and memory: pairs/s of a warm epoch and peak RSS, per method.

    .venv/bin/python benchmarks/input_pipeline.py                      # 2,000 and 20,000 pairs
    .venv/bin/python benchmarks/input_pipeline.py --pairs 200 --large 0   # a quick run

Data: synthetic 256 x 256 PNG pairs (`siamese_cd.data.synthetic.generate`) written once under
``--data`` (default ``/tmp/siamese_cd_bench``, outside the repository) and reused by later runs.
The large
split holds hard links to the small one's files under new names, so it costs no disk space
but is 10x as many files for the loaders.

Methods, all yielding batches of 16 ``((t1, t2), mask)``, masks float32, images as a model
takes them: float32 in [0, 1] for a plain Keras model in (a) and (b); the files' uint8 pixels
from `PairedImageDataset` (c, d, e), which `SiameseChangeModel` scales in its first step:

- (a) seed-style: Pillow decode in a Python generator -> ``tf.data.Dataset.from_generator``
  -> in-memory ``.cache()`` -> ``shuffle(1000)`` -> batch. Epoch 1 fills the cache.
- (b) tf.data baseline: path triples -> shuffle paths -> ``map(read_file + decode_png +
  scale to float32, AUTOTUNE, deterministic=False)`` -> batch -> prefetch. A diagnostic row
  leaves images uint8 (no scaling), the like-for-like counterpart of (c) and (d).
- (c) ``PairedImageDataset(shuffle=True)`` driven by Keras's own ``TFEpochIterator`` exactly
  as ``Model.fit`` drives it (one ``next(iterator)`` per step): ``PyDatasetAdapter`` with the
  dataset's worker threads (``OrderedEnqueuer``) feeding ``tf.data.Dataset.from_generator``.
  No model runs, so only the input pipeline is timed. A diagnostic row repeats it with
  radiometric augmentation (``Augment(brightness=0.1)``: float32 images in raw units).
- (d) ``PairedImageDataset(shuffle=True).as_tf_dataset()``.
- (e) ``PairedImageDataset(shuffle=True, cache_dir=...)``: the decoded cache, built once
  beforehand (build time and memory are reported separately), read the ``fit`` way as in (c)
  and through ``as_tf_dataset()``.

Every method runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. Each runs
six epochs: the first warms up (files in the page cache, tf.data autotuning, caches filled),
and the fastest of the other five is reported, with their median and the process's CPU time
per pair, which other work on the machine inflates less than wall time. Then the loaders
run on the large split for two epochs, and on the small one for as many batches (10x the
epochs), to show how peak RSS grows with the number of pairs at equal work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

METHODS = {
    "a": "(a) seed: from_generator + .cache() + shuffle(1000)",
    "b": "(b) tf.data: decode_png, parallel map",
    "b-u8": "(b) diagnostic: same, images left uint8",
    "c": "(c) PairedImageDataset, fit path (threads)",
    "c-jit": "(c) diagnostic: same with brightness jitter (float32)",
    "d": "(d) PairedImageDataset.as_tf_dataset()",
    "e": "(e) decoded cache, fit path (threads)",
    "e-tf": "(e) decoded cache, as_tf_dataset()",
}
LARGE_METHODS = ("b", "c", "d", "e", "e-tf")
MIB = 1024 * 1024


def cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB  # KiB on Linux


# -- data ----------------------------------------------------------------------------------------


def make_data(root: Path, pairs: int, size: int) -> Path:
    """``root/pairs-<N>-<size>/train`` in the SYSU-CD layout, generated once."""
    from siamese_cd.data.synthetic.generate import MANIFEST_NAME, make_synthetic_dataset

    out = root / f"pairs-{pairs}-{size}"
    if not (out / MANIFEST_NAME).is_file():
        print(f"Generating {pairs} synthetic pairs of {size}x{size} in {out} ...", flush=True)
        make_synthetic_dataset(out, train=pairs, val=0, test=0, size=size, seed=0)
    return out / "train"


def make_large(small: Path, root: Path, copies: int) -> Path:
    """A split of `copies` x the small one: hard links under new names."""
    out = root / f"{small.parent.name}-x{copies}" / "train"
    done = out.parent / "complete"
    if done.is_file():
        return out
    shutil.rmtree(out.parent, ignore_errors=True)
    for folder in ("time1", "time2", "label"):
        (out / folder).mkdir(parents=True)
        for path in sorted((small / folder).iterdir()):
            for k in range(copies):
                os.link(path, out / folder / f"c{k:02d}_{path.name}")
    done.write_text("ok\n")
    return out


# -- methods (each run in its own subprocess) ---------------------------------------------------


def _tf_signature(tf, size):
    image = tf.TensorSpec((size, size, 3), tf.float32)
    return (image, image, tf.TensorSpec((size, size, 1), tf.float32))


def build_seed_style(split: Path, batch_size: int):
    """(a): decode everything in Python, keep it all in memory, shuffle decoded pixels."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from siamese_cd.data.layouts.registry import pair_split

    pairs = pair_split(split)
    size = Image.open(pairs[0].t1).size[0]

    def generator():
        for pair in pairs:
            t1 = np.asarray(Image.open(pair.t1), np.float32) / 255.0
            t2 = np.asarray(Image.open(pair.t2), np.float32) / 255.0
            mask = (np.asarray(Image.open(pair.label)) >= 128).astype(np.float32)[..., None]
            yield t1, t2, mask

    ds = tf.data.Dataset.from_generator(generator, output_signature=_tf_signature(tf, size))
    ds = ds.cache().shuffle(1000).batch(batch_size)
    return ds.map(lambda t1, t2, mask: ((t1, t2), mask))


def build_tf_baseline(split: Path, batch_size: int, scale: bool = True):
    """(b): the fast tf.data shape: shuffle paths, decode in a parallel map."""
    import tensorflow as tf

    from siamese_cd.data.layouts.registry import pair_split

    pairs = pair_split(split)
    paths = tuple([str(getattr(p, role)) for p in pairs] for role in ("t1", "t2", "label"))

    def load(t1, t2, label):
        def image(path):
            decoded = tf.io.decode_png(tf.io.read_file(path), channels=3)
            return tf.cast(decoded, tf.float32) / 255.0 if scale else decoded

        mask = tf.io.decode_png(tf.io.read_file(label), channels=1)
        return (image(t1), image(t2)), tf.cast(mask >= 128, tf.float32)

    ds = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(pairs), seed=0)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_method(method: str, split: Path, batch_size: int, epochs: int, cache_dir: Path) -> dict:
    import tensorflow as tf

    from siamese_cd.data.pipeline.dataset import PairedImageDataset

    def dataset(cls=PairedImageDataset, **kwargs):
        return cls(split, batch_size=batch_size, shuffle=True, seed=0, **kwargs)

    if method == "e-build":
        start = time.perf_counter()
        data = dataset(cache_dir=cache_dir, progress=False)
        seconds = time.perf_counter() - start
        return {
            "pairs_per_s": len(data.pairs) / seconds,
            "seconds": seconds,
            "store_mib": data.cache.meta["bytes"] / MIB,
            "peak_rss_mib": peak_rss_mib(),
            "pairs": len(data.pairs),
        }

    fit_path = method in ("c", "c-jit", "e")
    if method == "a":
        ds = build_seed_style(split, batch_size)
    elif method == "b":
        ds = build_tf_baseline(split, batch_size)
    elif method == "b-u8":
        ds = build_tf_baseline(split, batch_size, scale=False)
    elif method == "c":
        ds = dataset()
    elif method == "c-jit":
        from siamese_cd.data.sampling.augment import Augment

        ds = dataset(augment=Augment(flip=False, rotate=False, brightness=0.1))
    elif method == "d":
        ds = dataset().as_tf_dataset()
    elif method == "e":
        ds = dataset(cache_dir=cache_dir, progress=False)
    elif method == "e-tf":
        ds = dataset(cache_dir=cache_dir, progress=False).as_tf_dataset()
    else:
        raise SystemExit(f"unknown method {method}")

    if fit_path:
        from keras.src.backend.tensorflow.trainer import TFEpochIterator

        iterator = TFEpochIterator(
            x=ds, shuffle=True, distribute_strategy=tf.distribute.get_strategy()
        )
        iterator.reset()

        def epoch() -> int:
            # As Model.fit does: one next(iterator) per step, inside catch_stop_iteration.
            count = 0
            with iterator.catch_stop_iteration():
                for _, _, batches in iterator:
                    (t1, _), _ = next(batches)
                    count += int(t1.shape[0])
            return count

    else:

        def epoch() -> int:
            return sum(int(batch[0][0].shape[0]) for batch in ds)

    # Epoch 1 warms up (page cache, tf.data autotuning, the seed-style in-memory cache); the
    # others are timed. Other work on the machine only slows epochs down, so the fastest warm
    # epoch is reported, with CPU time per pair over all warm epochs.
    seconds = []
    pairs = epoch()
    cpu_start = cpu_seconds()
    for _ in range(max(1, epochs - 1)):
        start = time.perf_counter()
        pairs = epoch()
        seconds.append(time.perf_counter() - start)
    cpu = cpu_seconds() - cpu_start
    return {
        "pairs_per_s": pairs / min(seconds),
        "median_pairs_per_s": pairs / sorted(seconds)[len(seconds) // 2],
        "cpu_ms_per_pair": 1000 * cpu / (pairs * len(seconds)),
        "warm_epochs_s": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "pairs": pairs,
    }


# -- driver --------------------------------------------------------------------------------------


def in_subprocess(method: str, split: Path, epochs: int, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--run",
        method,
        "--split",
        str(split),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(epochs),
        "--cache-dir",
        str(Path(args.data) / "cache"),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"method {method} failed on {split}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def build_cache(split: Path, count: int, args, results: dict) -> None:
    """Build the decoded cache of `split` in its own process (timed and measured apart)."""
    shutil.rmtree(Path(args.data) / "cache", ignore_errors=True)
    build = in_subprocess("e-build", split, 1, args)
    results.setdefault(("e-build", count), build)
    print(
        f"  cache build, {count} pairs: {build['seconds']:.1f} s "
        f"({build['pairs_per_s']:.0f} pairs/s), store {build['store_mib']:.0f} MiB, "
        f"peak RSS {build['peak_rss_mib']:.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs of the main run")
    parser.add_argument(
        "--large", type=int, default=20000, help="pairs of the memory run (0 to skip)"
    )
    parser.add_argument("--size", type=int, default=256, help="image side (default 256)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--epochs", type=int, default=6, help="epochs per method; all but the first are timed"
    )
    parser.add_argument("--data", default="/tmp/siamese_cd_bench", help="data folder")
    parser.add_argument("--methods", default=",".join(METHODS), help="e.g. b,c,d")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--split", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:
        result = run_method(
            args.run, Path(args.split), args.batch_size, args.epochs, Path(args.cache_dir)
        )
        print(json.dumps(result))
        return

    root = Path(args.data)
    methods = [m for m in args.methods.split(",") if m]
    small = make_data(root, args.pairs, args.size)
    large = None
    if args.large:
        if args.large % args.pairs:
            raise SystemExit("--large must be a multiple of --pairs")
        large = make_large(small, root, args.large // args.pairs)

    import numpy as np
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{platform.processor() or platform.machine()}, {cores} cores, Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, NumPy {np.__version__}"
    )
    print(
        f"{args.pairs} pairs of {args.size}x{args.size} PNG, batch {args.batch_size}, "
        f"{args.epochs} epochs per method (1 warm-up, the fastest of the others reported); "
        f"load average before: {load_average()}",
        flush=True,
    )

    results: dict[tuple, dict] = {}
    cached: list[Path] = []  # the split whose decoded cache is on disk

    def run(method: str, split: Path, count: int, epochs: int) -> dict:
        if method in ("e", "e-tf") and cached != [split]:
            build_cache(split, count, args, results)
            cached[:] = [split]
        return in_subprocess(method, split, epochs, args)

    for method in methods:
        r = results[(method, args.pairs)] = run(method, small, args.pairs, args.epochs)
        print(
            f"  {METHODS[method]}: {r['pairs_per_s']:.0f} pairs/s (median "
            f"{r['median_pairs_per_s']:.0f}), {r['cpu_ms_per_pair']:.2f} CPU ms/pair, "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB",
            flush=True,
        )

    # Memory against dataset size, at equal work: the small split for `copies` times the
    # epochs, the large one for `epochs`, so both runs read the same number of batches.
    copies = args.large // args.pairs if large is not None else 0
    memory_epochs = 2
    memory_methods = [m for m in methods if m in LARGE_METHODS]
    if large is not None:
        print(
            f"Memory: {args.pairs} pairs x {memory_epochs * copies} epochs against "
            f"{args.large} pairs x {memory_epochs} epochs",
            flush=True,
        )
        for split, count, epochs, key in (
            (large, args.large, memory_epochs, "large"),
            (small, args.pairs, memory_epochs * copies, "long"),
        ):
            for method in memory_methods:
                r = results[(method, key)] = run(method, split, count, epochs)
                print(
                    f"  {METHODS[method]}, {count} pairs x {epochs} epochs: "
                    f"peak RSS {r['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    shutil.rmtree(Path(args.data) / "cache", ignore_errors=True)
    print(f"load average after: {load_average()}\n")

    baseline = results.get(("b", args.pairs), {}).get("pairs_per_s")
    print(
        "| method | pairs/s (warm epoch) | vs (b) | median pairs/s | CPU ms/pair | "
        f"peak RSS, {args.pairs} pairs |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for method in methods:
        r = results[(method, args.pairs)]
        ratio = f"{r['pairs_per_s'] / baseline:.2f}x" if baseline else "-"
        print(
            f"| {METHODS[method]} | {r['pairs_per_s']:.0f} | {ratio} | "
            f"{r['median_pairs_per_s']:.0f} | {r['cpu_ms_per_pair']:.2f} | "
            f"{r['peak_rss_mib']:.0f} MiB |"
        )
    if large is not None:
        print(
            f"\n| method | peak RSS, {args.large} pairs x {memory_epochs} epochs | "
            f"{args.pairs} pairs x {memory_epochs * copies} epochs (same batches) | increase | "
            f"{args.pairs} pairs x {args.epochs} epochs (above) | increase |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for method in memory_methods:
            large_rss = results[(method, "large")]["peak_rss_mib"]
            long_rss = results[(method, "long")]["peak_rss_mib"]
            short_rss = results[(method, args.pairs)]["peak_rss_mib"]
            print(
                f"| {METHODS[method]} | {large_rss:.0f} MiB | {long_rss:.0f} MiB | "
                f"{large_rss - long_rss:+.0f} MiB | {short_rss:.0f} MiB | "
                f"{large_rss - short_rss:+.0f} MiB |"
            )
    for count in (args.pairs, args.large):
        build = results.get(("e-build", count))
        if build:
            print(
                f"\nCache build ({count} pairs, once): {build['seconds']:.1f} s, "
                f"{build['pairs_per_s']:.0f} pairs/s, store {build['store_mib']:.0f} MiB, "
                f"peak RSS {build['peak_rss_mib']:.0f} MiB."
            )


if __name__ == "__main__":
    main()
