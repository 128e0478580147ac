"""The `siamese-cd` command: `synth` writes a synthetic dataset, `train` trains and scores."""

from __future__ import annotations

import argparse
import os
import sys

from siamese_cd.errors import SiameseCDError


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siamese-cd", description="Change detection on pairs of co-registered images."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser(
        "synth",
        help="write a synthetic change-detection dataset in the SYSU-CD layout",
        description="Write OUT/{train,val,test}/{time1,time2,label}/NNNNN.png. Buildings and "
        "roads appear or vanish (labelled); illumination, season, noise and a sub-pixel "
        "misregistration also change (not labelled).",
    )
    synth.add_argument("out", help="output folder")
    synth.add_argument("--train", type=int, default=1000, help="training pairs (default 1000)")
    synth.add_argument("--val", type=int, default=100, help="validation pairs (default 100)")
    synth.add_argument("--test", type=int, default=200, help="test pairs (default 200)")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    train = commands.add_parser(
        "train",
        help="train a model on DATA/train, validate on DATA/val, score DATA/test",
        description="Train with the published recipe (Adam 1e-3, weight decay 1e-4, "
        "lr x 0.95 per epoch, flips and rotations, class-weighted cross-entropy). Keeps the "
        "checkpoint with the best val_f1 and scores it on DATA/test when that split exists.",
    )
    train.add_argument("data", help="folder holding train/ and val/ (and optionally test/)")
    train.add_argument("--epochs", type=positive_int, default=50, help="epochs (default 50)")
    train.add_argument("--batch-size", type=positive_int, default=16, help="default 16")
    train.add_argument(
        "--logdir", default="logs/run", help="TensorBoard run folder (default logs/run)"
    )
    train.add_argument(
        "--out", default=None, help="best model file, .keras (default LOGDIR/model.keras)"
    )
    train.add_argument("--variant", choices=("diff", "conc", "ef"), default="diff")
    train.add_argument("--depth", type=int, default=4, help="encoder levels, 2-6 (default 4)")
    train.add_argument("--filters", type=positive_int, default=16, help="first-level width")
    train.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    train.add_argument("--no-augment", action="store_true", help="no flips or rotations")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from siamese_cd.data.synthetic import make_synthetic_dataset

        out = make_synthetic_dataset(
            args.out,
            train=args.train,
            val=args.val,
            test=args.test,
            size=args.size,
            seed=args.seed,
        )
        print(f"Wrote a synthetic dataset to {out}")
        return 0
    if args.command == "train":
        from siamese_cd.training import train_on_folder

        train_on_folder(
            args.data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            log_dir=args.logdir,
            out=args.out,
            variant=args.variant,
            depth=args.depth,
            filters=args.filters,
            learning_rate=args.lr,
            augment=not args.no_augment,
            seed=args.seed,
        )
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `siamese-cd` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SiameseCDError as error:
        print(f"siamese-cd {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
