"""The `siamese-cd` command: synth, train, check, evaluate and predict (one subcommand each)."""

from __future__ import annotations

import argparse
import os
import sys

from siamese_cd.errors import ConfigError, SiameseCDError


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def filters_arg(text: str) -> int | list[int]:
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an int or ints like 8,16,32: {text!r}"
        ) from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"widths must be positive: {text!r}")
    return widths[0] if len(widths) == 1 else widths


def bands_arg(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected band numbers like 4,3,2: {text!r}") from None


def loss_name(text: str) -> str:
    from siamese_cd.losses import LOSS_NAMES, is_loss_name

    if not is_loss_name(text):
        raise argparse.ArgumentTypeError(
            f"unknown loss {text!r}: use {', '.join(LOSS_NAMES)} or a sum such as bce+dice"
        )
    return text


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
    train.add_argument(
        "--filters",
        type=filters_arg,
        default=16,
        help="first-level width, doubled per level, or one width per level: 8,16,32,64",
    )
    train.add_argument(
        "--loss",
        type=loss_name,
        default="bce",
        help="bce (class-weighted), dice, focal, or a sum such as bce+dice (default bce)",
    )
    train.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    train.add_argument("--no-augment", action="store_true", help="no flips or rotations")
    train.add_argument(
        "--crop-size",
        type=positive_int,
        help="train on one random crop of this side per scene and epoch (large scenes)",
    )
    train.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 compute with float32 weights (fast on recent GPUs, slow on CPUs)",
    )
    train.add_argument(
        "--early-stopping",
        type=positive_int,
        metavar="EPOCHS",
        help="stop after this many epochs without a better val_f1 (default: never)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    check = commands.add_parser(
        "check",
        help="scan every file of a dataset and report problems (exit 1 if any)",
        description="Decode every file of DATA (a split folder, or a folder of splits) and "
        "report orphans, unreadable or truncated images, size mismatches, label values "
        "outside {0, 255} or {0, 1}, and the changed-pixel fraction per split. Exits 1 when "
        "a problem is found.",
    )
    check.add_argument("data", help="a split folder, or a folder of split folders")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--label-threshold",
        type=int,
        default=128,
        help="label values at or above it are change (default 128)",
    )
    check.add_argument("--workers", type=positive_int, default=None, help="decoding threads")

    evaluate = commands.add_parser(
        "evaluate",
        help="score a model on a labelled split",
        description="Print change-class precision, recall, F1, IoU, overall accuracy and "
        "kappa over all pixels of DATA/SPLIT (micro), the confusion matrix, and the protocol.",
    )
    evaluate.add_argument("model", help="a .keras model")
    evaluate.add_argument("data", help="folder holding the split folder")
    evaluate.add_argument("--split", default="test", help="split folder name (default test)")
    evaluate.add_argument(
        "--tile-size", type=positive_int, help="score tiles of this side (default whole images)"
    )
    evaluate.add_argument("--tile-stride", type=positive_int, help="default: the tile size")
    evaluate.add_argument(
        "--threshold", type=float, default=None, help="default: the model's (0.5)"
    )
    evaluate.add_argument("--batch-size", type=positive_int, default=16, help="default 16")
    evaluate.add_argument("--json", metavar="OUT", help="also write the scores as JSON")
    evaluate.add_argument("--per-image", metavar="CSV", help="write per-image scores as CSV")

    predict = commands.add_parser(
        "predict",
        help="write change maps of scenes of any size",
        description="Predict the change map of T1 and T2 (two image files, or two folders "
        "whose files pair by name) with overlapping windows blended without seams. Writes a "
        "0/255 mask, or float probabilities with --probabilities; a GeoTIFF T1 gives a "
        "GeoTIFF with its CRS, transform and nodata.",
    )
    predict.add_argument("model", help="a .keras model")
    predict.add_argument("t1", help="first-date image, or folder of them")
    predict.add_argument("t2", help="second-date image, or folder of them")
    predict.add_argument(
        "-o", "--out", required=True, help="output file (.png, .tif, .npy), or folder"
    )
    predict.add_argument("--tile-size", type=positive_int, default=256, help="default 256")
    predict.add_argument(
        "--overlap", type=int, default=64, help="pixels shared by windows (default 64)"
    )
    predict.add_argument("--threshold", type=float, default=0.5, help="default 0.5")
    predict.add_argument(
        "--probabilities", action="store_true", help="write float probabilities, not a mask"
    )
    predict.add_argument(
        "--bands", type=bands_arg, default=None, help="bands to read, from 1: e.g. 4,3,2"
    )
    predict.add_argument("--batch-size", type=positive_int, default=8, help="windows per batch")
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
            loss=args.loss,
            learning_rate=args.lr,
            augment=not args.no_augment,
            crop_size=args.crop_size,
            mixed_precision=args.mixed_precision,
            early_stopping=args.early_stopping,
            seed=args.seed,
        )
        return 0
    if args.command == "check":
        import json

        from siamese_cd.data.check import check_dataset

        report = check_dataset(
            args.data,
            label_threshold=args.label_threshold,
            workers=args.workers,
            progress=sys.stderr.isatty(),
        )
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
        return 0 if report.ok else 1
    if args.command == "evaluate":
        from pathlib import Path

        from siamese_cd.data.dataset import PairedImageDataset
        from siamese_cd.evaluation import evaluate
        from siamese_cd.inference import load_change_model
        from siamese_cd.training import split_folder

        if args.tile_stride is not None and args.tile_size is None:
            raise ConfigError("--tile-stride needs --tile-size")
        split = split_folder(Path(args.data), args.split)
        dataset = PairedImageDataset(
            split,
            batch_size=args.batch_size,
            tile_size=args.tile_size,
            tile_stride=args.tile_stride,
            progress=sys.stderr.isatty(),
        )
        model = load_change_model(args.model)
        result = evaluate(
            model, dataset, args.threshold, split=str(split), progress=sys.stderr.isatty()
        )
        print(result.format())
        if args.json:
            result.write_json(args.json)
        if args.per_image:
            result.write_per_image(args.per_image)
        return 0
    if args.command == "predict":
        from pathlib import Path

        from siamese_cd.inference import load_change_model, predict_files, predict_folders

        model = load_change_model(args.model)
        options = dict(
            tile_size=args.tile_size,
            overlap=args.overlap,
            threshold=args.threshold,
            probabilities=args.probabilities,
            bands=args.bands,
            batch_size=args.batch_size,
        )
        if Path(args.t1).is_dir() and Path(args.t2).is_dir():
            written = predict_folders(model, args.t1, args.t2, args.out, **options)
            print(f"Wrote {len(written)} change maps to {args.out}")
        else:
            out = predict_files(model, args.t1, args.t2, args.out, progress=True, **options)
            print(f"Wrote {out}")
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
