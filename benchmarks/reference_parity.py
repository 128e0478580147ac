"""Parity with the published PyTorch code: forward pass, one training step, 200 steps.

    make parity        # builds .venv-torch (PyTorch 2.13 CPU + this package) and runs this
    .venv-torch/bin/python benchmarks/reference_parity.py [--steps 200] [--quick]

PyTorch is needed here only; the library never imports it. This script writes its own
PyTorch networks from the published facts (Daudt et al., ICIP 2018, and the authors' code:
`ReferenceNet` below, with the authors' parameter names), then checks against them:

1. Layer by layer, each weight mapping of `siamese_cd.models.torch_weights` (Conv2d,
   the decoder's stride-1 ConvTranspose2d as a flipped conv, the stride-2 ConvTranspose2d
   with replication padding at an odd size, BatchNorm2d in training and evaluation).
2. Forward: FC-EF, FC-Siam-diff and FC-Siam-conc at the published widths, 3 and 13 bands,
   64x64 and 45x37, random BatchNorm statistics: the converted model
   (`SiameseChangeModel.from_torch_state_dict`, ``preprocessing="per_image"``) on raw
   pixels against ``exp(log_softmax[:, 1])`` of the PyTorch network on the notebook's
   standardised pixels ((I - mean) / std of each image).
3. One step: the same batch, the same initial weights (ported), dropout 0 on both sides,
   ``compile(recipe="paper")`` against ``torch.optim.Adam(weight_decay=1e-4)`` and
   ``NLLLoss(weight=[2p, 2(1 - p)])``: the gradient and the move of every variable.
4. 200 steps: the same batch sequence (16 synthetic 64x64 scenes, batch 4, so 4 steps per
   epoch and the learning rate x 0.95 every 4 steps on both sides): the loss curves, and
   change-F1 (threshold 0.5 / argmax) on the training scenes and on 16 held-out ones, with
   a control: PyTorch against PyTorch, every initial weight moved by one rounding.
5. Parts 3 and 4 again with both sides in float64 (`parity_float64`): float32 rounding,
   amplified over 200 steps, is what separates the float32 curves; in float64 it is about
   1e-9 as large, so a difference of the training itself would remain and rounding would not.

Dropout masks cannot be matched between frameworks, so dropout is 0 in parts 3 to 5. Parts 3
to 5 are in `parity_training`.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as functional  # noqa: E402
from parity_training import (  # noqa: E402
    CONDITIONED,
    make_scenes,
    one_step,
    state_of,
    training_curves,
)
from torch import nn  # noqa: E402
from torch_reference import ReferenceNet, notebook_standardise  # noqa: E402

from siamese_cd import SiameseChangeModel  # noqa: E402
from siamese_cd.models.blocks import TorchBatchNormalization, TorchUpsampleAlign  # noqa: E402
from siamese_cd.models.torch_weights import keras_value  # noqa: E402

# -- helpers ------------------------------------------------------------------------------------


def randomise_batch_norm(net: nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, so evaluation mode is tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)


# -- 1. layer mappings --------------------------------------------------------------------------


def layer_checks(rng: np.random.Generator) -> dict[str, float]:
    """Max |Keras - PyTorch| of each mapped layer kind on random inputs."""
    results = {}
    x = rng.normal(size=(2, 11, 13, 5)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    def compare(name, keras_out, torch_out):
        torch_np = torch_out.detach().numpy().transpose(0, 2, 3, 1)
        results[name] = float(np.max(np.abs(np.asarray(keras_out) - torch_np)))

    conv = nn.Conv2d(5, 7, 3, padding=1)
    layer = keras.layers.Conv2D(7, 3, padding="same")
    layer.build(x.shape)
    layer.set_weights(
        [keras_value("conv", conv.weight.detach().numpy()), conv.bias.detach().numpy()]
    )
    compare("Conv2d -> Conv2D", layer(x), conv(xt))

    deconv = nn.ConvTranspose2d(5, 7, 3, padding=1)
    layer = keras.layers.Conv2D(7, 3, padding="same")
    layer.build(x.shape)
    layer.set_weights(
        [keras_value("flipped", deconv.weight.detach().numpy()), deconv.bias.detach().numpy()]
    )
    compare("ConvTranspose2d(k3, p1) -> flipped Conv2D", layer(x), deconv(xt))

    up = nn.ConvTranspose2d(5, 5, 3, stride=2, padding=1, output_padding=1)
    layer = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="valid")
    layer.build(x.shape)
    layer.set_weights([keras_value("upconv", up.weight.detach().numpy()), up.bias.detach().numpy()])
    skip = np.zeros((2, 23, 27, 1), np.float32)  # odd sides: 2n + 1 after the replication pad
    keras_up = TorchUpsampleAlign()([layer(x), skip])
    torch_up = functional.pad(up(xt), (0, 1, 0, 1), mode="replicate")
    compare(
        "ConvTranspose2d(k3, s2) + ReplicationPad2d -> Conv2DTranspose + align", keras_up, torch_up
    )

    bn = nn.BatchNorm2d(5)
    layer = TorchBatchNormalization(momentum=0.9, epsilon=1e-5)
    layer.build(x.shape)
    randomise_batch_norm(bn, 3)
    layer.set_weights(
        [
            bn.weight.detach().numpy(),
            bn.bias.detach().numpy(),
            bn.running_mean.numpy(),
            bn.running_var.numpy(),
        ]
    )
    bn.train()
    compare("BatchNorm2d train step (output)", layer(x, training=True), bn(xt))
    stats = np.concatenate([np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)])
    torch_stats = np.concatenate([bn.running_mean.numpy(), bn.running_var.numpy()])
    results["BatchNorm2d train step (running stats)"] = float(np.max(np.abs(stats - torch_stats)))
    bn.eval()
    compare("BatchNorm2d eval", layer(x, training=False), bn(xt))
    return results


# -- 2. forward ---------------------------------------------------------------------------------


def forward_parity(rng: np.random.Generator, sizes) -> list[tuple[str, int, str, float]]:
    rows = []
    for variant in ("ef", "diff", "conc"):
        for bands in (3, 13):
            torch.manual_seed(bands)
            net = ReferenceNet(variant, bands)
            randomise_batch_norm(net, bands)
            net.eval()
            model = SiameseChangeModel.from_torch_state_dict(state_of(net), variant)
            for height, width in sizes:
                # Reflectance-like raw pixels, as a Sentinel-2 band stores them.
                t1 = rng.uniform(0, 3000, (2, height, width, bands)).astype(np.float32)
                t2 = rng.uniform(0, 3000, (2, height, width, bands)).astype(np.float32)
                with torch.no_grad():
                    log_p = net(*(torch.from_numpy(notebook_standardise(t)) for t in (t1, t2)))
                p_torch = np.exp(log_p.numpy()[:, 1])
                p_keras = model.predict((t1, t2), verbose=0)[..., 1]
                error = float(np.max(np.abs(p_keras - p_torch)))
                rows.append((variant, bands, f"{height}x{width}", error))
    return rows


def folded_head_parity(rng: np.random.Generator) -> float:
    torch.manual_seed(0)
    net = ReferenceNet("diff", 3)
    randomise_batch_norm(net, 0)
    net.eval()
    model = SiameseChangeModel.from_torch_state_dict(state_of(net), "diff", num_classes=1)
    t1, t2 = (rng.uniform(0, 255, (1, 45, 37, 3)).astype(np.float32) for _ in range(2))
    with torch.no_grad():
        p_torch = np.exp(
            net(*(torch.from_numpy(notebook_standardise(t)) for t in (t1, t2))).numpy()[:, 1]
        )
    return float(np.max(np.abs(model.predict((t1, t2), verbose=0)[..., 0] - p_torch)))


# -- report -------------------------------------------------------------------------------------


def print_exact_parts(rng: np.random.Generator, quick: bool) -> None:
    """Parts 1 and 2: the layer mappings and the forward pass of converted models."""
    print("| layer mapping | max abs error |\n|---|---:|")
    for name, error in layer_checks(rng).items():
        print(f"| {name} | {error:.1e} |")
    sizes = [(64, 64)] if quick else [(64, 64), (45, 37)]
    print("\n| forward (published widths) | bands | size | max abs error of p(change) |")
    print("|---|---:|---|---:|")
    for variant, bands, size, error in forward_parity(rng, sizes):
        print(f"| {variant} | {bands} | {size} | {error:.1e} |")
    folded = folded_head_parity(rng)
    print(f"| diff, head folded to 1 sigmoid channel | 3 | 45x37 | {folded:.1e} |")


def print_one_step(train, widths, seed: int) -> None:
    """Part 3: one step, every variable."""
    print(
        "\n| one step | loss | gradient (variable) | either against float64 "
        "| move, conditioned entries (variable) | entries moving otherwise |"
    )
    print("|---|---:|---|---:|---|---|")
    for variant in ("ef", "diff", "conc"):
        r = one_step(variant, train, widths, seed)
        print(
            f"| {variant} ({r['variables']} variables) | {r['loss']:.1e} | {r['grad']:.1e} "
            f"({r['grad_key']}) | {r['rounding']:.1e} | {r['move']:.1e} ({r['move_key']}) | "
            f"{r['differing']} of {r['entries']}, {r['unexplained']} conditioned |"
        )
    print(
        "\nRelative differences (max |a - b| / max |b| per variable, the largest over "
        "variables). Conv biases before BatchNorm (exact gradient 0; both sides give noise "
        f"below {r['noise']:.0e}) are left out of the gradient columns. 'Conditioned': "
        f"entries whose total gradient (with the L2 term) is at least {CONDITIONED:g}, where "
        "Adam's first step lr * g / (|g| + 1e-8) is insensitive to float32 rounding; "
        "differences within 2 float32 spacings of the new weight are rounding of the weight."
    )


CURVE_HEADER = (
    "| variant | run | loss curve: max rel. diff | last step | first step above 1 % "
    "| last loss | F1 train | F1 held-out |\n|---|---|---:|---:|---:|---|---|---|"
)


def curve_row(variant: str, run: str, stats: dict, last, f1, held) -> str:
    return (
        f"| {variant} | {run} | {stats['max']:.1e} | {stats['last']:.1e} | "
        f"{stats['first_above'] or '-'} | {last[0]:.4f} / {last[1]:.4f} | "
        f"{f1[0]:.4f} / {f1[1]:.4f} | {held[0]:.4f} / {held[1]:.4f} |"
    )


def print_curves(train, held_out, widths, steps: int, seed: int, precision: str) -> None:
    """Parts 4 and 5: the loss curves and F1, with the PyTorch-against-PyTorch control."""
    # float64 runs are about twice as slow; their control (rounding alone, about 1e-16)
    # is run on one variant.
    controlled = ("ef", "diff", "conc") if precision == "float32" else ("diff",)
    print(
        f"\n{steps} steps in {precision}. Keras against PyTorch, then (control, "
        f"{', '.join(controlled)}) PyTorch against PyTorch with every initial weight moved by "
        f"one {precision} spacing.\n"
    )
    print(CURVE_HEADER)
    for variant in ("ef", "diff", "conc"):
        control = variant in controlled
        r = training_curves(variant, train, held_out, widths, steps, seed, precision, control)
        last, (f1, held) = r["loss_last"], (r["f1_train"], r["f1_held_out"])
        print(curve_row(variant, "Keras / PyTorch", r["keras"], last, f1, held))
        print(f"<!-- {variant}: {r['seconds']:.0f} s -->", flush=True)
        if not control:
            continue
        control_last = (r["control_last"], last[1])
        control_f1 = ((r["control_f1"][0], f1[1]), (r["control_f1"][1], held[1]))
        print(curve_row("", "control", r["control"], control_last, *control_f1), flush=True)
    if precision == "float64":
        # What the two float32 roundings of the recipe do to a float64 run, on one variant.
        for run, options in (
            ("library's betas (through float32)", {"exact_betas": False}),
            ("PyTorch's own float64 rate", {"shared_rate": False}),
        ):
            r = training_curves(
                "diff", train, held_out, widths, steps, seed, precision, False, **options
            )
            last, f1, held = r["loss_last"], r["f1_train"], r["f1_held_out"]
            print(curve_row("diff", run, r["keras"], last, f1, held), flush=True)


def print_float64_step(train, widths, seed: int) -> None:
    """Part 5, one step: every entry of every variable, both sides in float64."""
    print(
        "\n| one step in float64 | loss | gradient (variable) | move, every entry "
        "| entries moving > 1e-4 apart |\n|---|---:|---|---:|---|"
    )
    runs = [(v, v, {}) for v in ("ef", "diff", "conc")]
    runs.append(("diff, library's betas (through float32)", "diff", {"exact_betas": False}))
    for name, variant, options in runs:
        r = one_step(variant, train, widths, seed, "float64", **options)
        print(
            f"| {name} ({r['variables']} variables) | {r['loss']:.1e} | {r['grad']:.1e} "
            f"({r['grad_key']}) | {r['move_all']:.1e} | {r['differing']} of {r['entries']} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--filters", type=int, default=8, help="first width in parts 3-5")
    parser.add_argument("--threads", type=int, default=1, help="per framework")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 steps, one size")
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["float32", "float64"],
        choices=["float32", "float64"],
        help="the training comparisons to run (parts 3-4 are float32, part 5 float64)",
    )
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")  # one predict function per converted model retraces
    torch.set_num_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    widths = tuple(args.filters * 2**level for level in range(4))
    rng = np.random.default_rng(args.seed)
    print(f"torch {torch.__version__}, keras {keras.__version__}, tensorflow {tf.__version__}\n")
    print_exact_parts(rng, args.quick)
    train = make_scenes(16, args.size, args.seed + 1)
    held_out = make_scenes(16, args.size, args.seed + 2)
    print(
        f"\nTraining: widths {widths}, {args.size}x{args.size}, batch 4, dropout 0, "
        f"change fraction {train[2].mean():.3f}"
    )
    steps = 20 if args.quick else args.steps
    if "float32" in args.precision:
        print_one_step(train, widths, args.seed)
        print_curves(train, held_out, widths, steps, args.seed, "float32")
    if "float64" in args.precision:
        print_float64_step(train, widths, args.seed)
        print_curves(train, held_out, widths, steps, args.seed, "float64")


if __name__ == "__main__":
    main()
