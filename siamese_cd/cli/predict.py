"""``siamese-cd predict``: change maps of scenes of any size."""

from __future__ import annotations

import argparse
from pathlib import Path

from siamese_cd.cli.arguments import (
    add_precision_argument,
    bands_arg,
    non_negative_int,
    output_file,
    positive_int,
    probability,
)

HELP = "write change maps of scenes of any size"
DESCRIPTION = (
    "Predict the change map of T1 and T2 (two image files, or two folders whose files pair by "
    "name) with overlapping windows blended without seams. Writes a 0/255 mask, or float "
    "probabilities with --probabilities; a GeoTIFF T1 gives a GeoTIFF with its CRS and "
    "transform. MODEL may be a .keras file or a model written by siamese-cd export (ONNX, "
    "LiteRT or SavedModel), run by onnxruntime, the LiteRT interpreter or TensorFlow."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="a .keras model, or one written by siamese-cd export (.onnx, .tflite, or a "
        "SavedModel folder), run by its own runtime",
    )
    parser.add_argument("t1", help="first-date image, or folder of them")
    parser.add_argument("t2", help="second-date image, or folder of them")
    parser.add_argument(
        "-o",
        "--out",
        required=True,
        help="output file (.png, .tif, .npy), or folder: for one pair, an existing folder "
        "(or a name ending in /) receives T1's name with .png (.tif for a GeoTIFF T1 or "
        "--probabilities)",
    )
    parser.add_argument("--tile-size", type=positive_int, default=256, help="default 256")
    parser.add_argument(
        "--overlap", type=non_negative_int, default=64, help="pixels shared by windows (default 64)"
    )
    parser.add_argument(
        "--threshold", type=probability, default=None, help="default: the model's (0.5)"
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="write float probabilities, not a mask"
    )
    parser.add_argument(
        "--bands", type=bands_arg, default=None, help="bands to read, from 1: e.g. 4,3,2"
    )
    add_precision_argument(parser)
    parser.add_argument("--batch-size", type=positive_int, default=8, help="windows per batch")
    parser.add_argument(
        "--tta", action="store_true", help="average the 8 flips and rotations (8x slower)"
    )
    parser.add_argument(
        "--on-missing",
        choices=("error", "skip"),
        default="error",
        help="folders: a file without its counterpart is an error (default), or skipped "
        "with a warning",
    )


def _checked_output(args: argparse.Namespace) -> tuple[bool, Path]:
    """Whether T1 and T2 are folders, and the output: checked (and its folder made) before
    the model is loaded, so a wrong name costs no prediction."""
    from siamese_cd.errors import ConfigError
    from siamese_cd.evaluation.inference import OUTPUT_SUFFIXES, check_maps_folder, map_path

    if args.overlap >= args.tile_size:
        raise ConfigError(
            f"--overlap {args.overlap} must be less than --tile-size {args.tile_size}"
        )
    t1, t2 = Path(args.t1), Path(args.t2)
    if t1.is_dir() and t2.is_dir():
        return True, check_maps_folder(args.out, t1, t2)
    if t1.is_dir() or t2.is_dir():
        folder, other = (t1, t2) if t1.is_dir() else (t2, t1)
        raise ConfigError(f"{folder} is a folder and {other} a file: give two files or two folders")
    out = map_path(args.out, t1, args.probabilities, t2)
    for path in (t1, t2):
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
    return False, output_file(str(out), OUTPUT_SUFFIXES, "change maps")


def _load_model(args: argparse.Namespace):
    """The model to predict with: a .keras file under --precision, or an exported one."""
    from siamese_cd.errors import ConfigError
    from siamese_cd.evaluation.runtimes import exported_format, open_change_model
    from siamese_cd.training.precision import set_precision

    if exported_format(args.model) is None:
        set_precision(args.precision)
    elif args.precision not in ("auto", "float32"):
        raise ConfigError(
            f"{args.model}: an exported model computes in float32, as it was exported; "
            f"--precision {args.precision} applies to .keras models"
        )
    return open_change_model(args.model)


def run(args: argparse.Namespace) -> int:
    from siamese_cd.evaluation.inference import predict_files, predict_folders

    folders, out = _checked_output(args)
    model = _load_model(args)
    options = dict(
        tile_size=args.tile_size,
        overlap=args.overlap,
        threshold=args.threshold,
        probabilities=args.probabilities,
        bands=args.bands,
        batch_size=args.batch_size,
        tta=args.tta,
    )
    if folders:
        written = predict_folders(
            model, args.t1, args.t2, out, on_missing=args.on_missing, **options
        )
        print(f"Wrote {len(written)} change maps to {out}")
    else:
        out = predict_files(model, args.t1, args.t2, out, progress=True, **options)
        print(f"Wrote {out}")
    return 0
