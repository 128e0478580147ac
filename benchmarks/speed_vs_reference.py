"""Training and inference speed of the library against the PyTorch reference, side by side.

    make bench     # builds .venv-torch if needed and runs this after train_step.py
    .venv-torch/bin/python benchmarks/speed_vs_reference.py [--size 256] [--batch-size 16]
        [--steps 4] [--rounds 2] [--same-process] [--no-channels-last]

One run, alternating rounds, the best of each kept. Each round starts one process per side
(PyTorch, then the library; the next round in the other order), so neither framework's
thread pools run beside the other's; ``--same-process`` runs both in this process instead,
to see whether they interfere. Both sides use as many threads as there are cores.

- The reference: the published network (`torch_reference.ReferenceNet`, FC-Siam-diff by
  default) trained as `torch_reference.TorchSide` trains it (Adam with weight decay 1e-4,
  NLLLoss with the class weights [2p, 2(1 - p)]), each image standardised in the step as the
  notebook does, in float32 and under bfloat16 autocast; inference in eval mode under
  ``no_grad``, both precisions. The goal's reference is the faster of these (NCHW, as the
  authors' code). Rows in ``channels_last`` memory format are PyTorch beyond the authors'
  code (one more line), shown for what PyTorch itself reaches on this CPU.
- The library: ``SiameseChangeModel.paper(variant, dtype=...)`` with
  ``compile(recipe="paper")``, the same network and training, trained by `fit` over an
  in-memory `tf.data` of repeated batches (the second epoch timed, as `train_step.py`
  does), inference by `predict_on_batch` on uint8 pixels; float32 and mixed bfloat16.

"of peak" divides GFLOP/s (the convolutions' FLOPs, a training step about 3x the forward
pass) by the matmul peak of the compute precision, measured by TensorFlow in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

NAMES = {"diff": "FC-Siam-diff", "conc": "FC-Siam-conc", "ef": "FC-EF"}
# Reference configurations: (precision, memory format); the authors' code is NCHW.
TORCH_RUNS = (("float32", "nchw"), ("bfloat16", "nchw"))
CHANNELS_LAST_RUNS = (("float32", "channels_last"), ("bfloat16", "channels_last"))


def batch(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark's pair of uint8 image batches (B, H, W, 3) and its mask (B, H, W, 1)."""
    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.size, args.size, 3)
    t1, t2 = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    mask = (rng.random(shape[:-1] + (1,)) > 0.8).astype(np.float32)
    return t1, t2, mask


def timed(step, repeats: int) -> float:
    """Seconds per call of `step`, after one call to warm up."""
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


# -- PyTorch ------------------------------------------------------------------------------------


def torch_rates(args) -> dict[str, list[float]]:
    """``{"torch <precision> <format>": [train, infer]}`` pairs/s of the reference."""
    import torch

    torch.set_num_threads(args.threads)
    runs = TORCH_RUNS + (CHANNELS_LAST_RUNS if args.channels_last else ())
    return {
        f"torch {precision} {layout}": torch_run(args, precision, layout)
        for precision, layout in runs
    }


def torch_run(args, precision: str, layout: str) -> list[float]:
    """Train and inference pairs/s of the reference in `precision` and memory `layout`."""
    import torch
    from torch_reference import ReferenceNet, TorchSide

    t1, t2, mask = batch(args)
    torch.manual_seed(0)
    memory = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    net = ReferenceNet(args.variant, 3).to(memory_format=memory)
    side = TorchSide(net, float(mask.mean()), steps_per_epoch=args.steps)
    images = [
        torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=memory) for x in (t1, t2)
    ]
    target = torch.from_numpy(mask[..., 0].astype(np.int64))
    autocast = {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": precision == "bfloat16"}

    def inputs():
        # The notebook's (I - mean) / std of each image, in the step as the library does.
        out = []
        for x in images:
            x = x.float()
            mean = x.mean((1, 2, 3), keepdim=True)
            out.append((x - mean) / x.std((1, 2, 3), keepdim=True, unbiased=False))
        return out

    def train():
        net.train()
        side.optimizer.zero_grad()
        with torch.autocast(**autocast):
            log_p = net(*inputs())
        loss = side.criterion(log_p.float(), target)
        loss.backward()
        side.optimizer.step()

    def infer():
        net.eval()
        with torch.no_grad(), torch.autocast(**autocast):
            net(*inputs()).float().exp()

    pairs = args.batch_size
    return [pairs / timed(train, args.steps), pairs / timed(infer, args.steps)]


# -- the library --------------------------------------------------------------------------------


def library_rates(args) -> dict[str, list[float]]:
    """``{"library <precision>": [train, infer]}`` pairs/s, plus ``"peak <precision>"``
    (GFLOP/s of a large matmul) and ``"flops"`` (forward FLOPs per pair)."""
    import keras
    import tensorflow as tf
    from train_step import conv_flops_per_pair, infer_rate, matmul_peak, train_rate

    from siamese_cd import SiameseChangeModel

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    t1, t2, mask = batch(args)
    batches = tf.data.Dataset.from_tensors(((t1, t2), mask)).repeat(args.steps)
    rates = {}
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        keras.utils.set_random_seed(0)
        model = SiameseChangeModel.paper(args.variant, dtype=policy)
        model.compile(recipe="paper")
        rates[f"library {precision}"] = [
            train_rate(model, batches, args.steps * args.batch_size),
            infer_rate(model, (t1, t2), args.steps),
        ]
        rates[f"peak {precision}"] = [matmul_peak(precision)]
        if precision == "float32":
            rates["flops"] = [conv_flops_per_pair(model, args.size, args.size)]
    return rates


# -- the run ------------------------------------------------------------------------------------


def one_side(side: str, args) -> dict[str, list[float]]:
    """One side's rates, in a process of its own unless ``--same-process``."""
    if args.same_process:
        return (torch_rates if side == "torch" else library_rates)(args)
    command = [sys.executable, __file__, "--worker", side, *args.forwarded]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the {side} side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of_rounds(args) -> dict[str, list[float]]:
    """Every measurement's best over the rounds; the sides alternate their order."""
    best: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        sides = ("torch", "library") if round_ % 2 == 0 else ("library", "torch")
        for side in sides:
            for key, values in one_side(side, args).items():
                best[key] = [max(pair) for pair in zip(best.get(key, values), values)]
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    return best


def report(best: dict[str, list[float]], args) -> None:
    """The markdown table and the ratios."""
    from siamese_cd.training.precision import cpu_flags

    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}) or ["no bfloat16 instructions"]
    gflop = best["flops"][0] / 1e9
    print(
        f"{NAMES[args.variant]}, {args.size}x{args.size}, batch {args.batch_size}; "
        f"{args.steps} steps, best of {args.rounds} alternating rounds, "
        f"{'one process for both sides' if args.same_process else 'one process per side'}; "
        f"{platform.machine()}, {os.cpu_count()} cores ({', '.join(flags)}), "
        f"{args.threads} threads per framework"
    )
    peaks = {p: best[f"peak {p}"][0] for p in ("float32", "bfloat16")}
    print(
        f"forward {gflop:.2f} GFLOP per pair; matmul peak float32 {peaks['float32']:.0f}, "
        f"bfloat16 {peaks['bfloat16']:.0f} GFLOP/s\n"
    )
    print("| run | train pairs/s | infer pairs/s | train of peak | infer of peak |")
    print("|---|---:|---:|---:|---:|")
    rows = [k for k in best if k.startswith(("torch", "library"))]
    for key in rows:
        train, infer = best[key]
        peak = peaks["bfloat16" if "bfloat16" in key else "float32"]
        print(
            f"| {key} | {train:.2f} | {infer:.2f} | {train * 3 * gflop / peak:.0%} | "
            f"{infer * gflop / peak:.0%} |"
        )
    ours = best["library bfloat16"]
    for label, keys in (
        ("the reference's best (NCHW, as published)", [k for k in rows if k.endswith("nchw")]),
        ("PyTorch channels_last", [k for k in rows if k.endswith("channels_last")]),
    ):
        if not keys:
            continue
        train = max(keys, key=lambda k: best[k][0])
        infer = max(keys, key=lambda k: best[k][1])
        print(
            f"\nlibrary bfloat16 / {label}: training {ours[0] / best[train][0]:.2f}x "
            f"(against {train}), inference {ours[1] / best[infer][1]:.2f}x (against {infer})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(NAMES), default="diff")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="per framework")
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time PyTorch in channels_last memory format (beyond the authors' code)",
    )
    parser.add_argument(
        "--same-process", action="store_true", help="both frameworks in this one process"
    )
    parser.add_argument("--worker", choices=("torch", "library"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    # What a worker process needs to measure the same thing.
    args.forwarded = [
        f"--variant={args.variant}",
        f"--size={args.size}",
        f"--batch-size={args.batch_size}",
        f"--steps={args.steps}",
        f"--threads={args.threads}",
        "--channels-last" if args.channels_last else "--no-channels-last",
    ]
    if args.worker:
        rates = (torch_rates if args.worker == "torch" else library_rates)(args)
        print(json.dumps(rates))
        return
    report(best_of_rounds(args), args)


if __name__ == "__main__":
    main()
