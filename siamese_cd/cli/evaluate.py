"""``siamese-cd evaluate``: score a model on a labelled split."""

from __future__ import annotations

import argparse
import sys

from siamese_cd.cli.arguments import (
    add_data_options,
    add_oscd_bands_argument,
    add_precision_argument,
    output_file,
    positive_int,
    probability,
)

HELP = "score a model on a labelled split"
DESCRIPTION = (
    "Print change-class precision, recall, F1, IoU, overall accuracy and kappa over all "
    "pixels of DATA/SPLIT (micro), the confusion matrix, and the protocol. The model is given "
    "the files' pixels as stored; it scales them itself."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras model")
    parser.add_argument(
        "data", help="folder holding the split folder, or an OSCD or AirChange download"
    )
    parser.add_argument(
        "--split",
        default="test",
        help="split folder name, or the split of OSCD or AirChange (default test)",
    )
    parser.add_argument(
        "--tile-size", type=positive_int, help="score tiles of this side (default whole images)"
    )
    parser.add_argument(
        "--tile-stride",
        type=positive_int,
        help="default: the tile size; pixels shared by tiles are counted once",
    )
    parser.add_argument(
        "--threshold", type=probability, default=None, help="default: the model's (0.5)"
    )
    add_precision_argument(parser)
    add_oscd_bands_argument(parser, "rgb for a 3-band model, all for a 13-band one")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="default 16")
    parser.add_argument(
        "--tta", action="store_true", help="average the 8 flips and rotations (8x slower)"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the scores as JSON")
    parser.add_argument("--per-image", metavar="CSV", help="write per-image scores as CSV")
    add_data_options(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from siamese_cd.data.layouts.oscd import NAME as OSCD
    from siamese_cd.data.layouts.scene_layouts import scene_layout
    from siamese_cd.data.layouts.splits import open_split
    from siamese_cd.errors import ConfigError, DatasetError
    from siamese_cd.evaluation.inference import load_change_model
    from siamese_cd.evaluation.scores import evaluate

    if args.tile_stride is not None and args.tile_size is None:
        raise ConfigError("--tile-stride needs --tile-size")
    # Checked (and folders made) before the model runs, so a typo costs no evaluation.
    if args.json:
        output_file(args.json, (".json",), "the scores")
    if args.per_image:
        output_file(args.per_image, (".csv",), "per-image scores")
    progress = sys.stderr.isatty()
    from siamese_cd.training.precision import set_precision

    set_precision(args.precision)
    model, bands = None, args.bands
    if bands is None and scene_layout(args.data) == OSCD:
        # OSCD reads any of its 13 bands: take as many as the model was trained on.
        model = load_change_model(args.model)
        channels = getattr(model, "in_channels", None)
        bands = {3: "rgb", 13: "all"}.get(channels)
        if bands is None:
            raise ConfigError(f"{args.model} takes {channels} bands: give --bands")
    dataset = open_split(
        args.data,
        args.split,
        bands=bands,
        batch_size=args.batch_size,
        tile_size=args.tile_size,
        tile_stride=args.tile_stride,
        label_threshold=args.label_threshold,
        on_missing=args.on_missing,
        progress=progress,
    )
    if not dataset.labelled:
        raise DatasetError(
            f"{args.data}: the {args.split} split has no labels to score against (OSCD's test "
            "labels are a separate release: unpack them beside the images)"
        )
    model = model or load_change_model(args.model)
    where = str(Path(args.data) / args.split)
    result = evaluate(model, dataset, args.threshold, split=where, progress=progress, tta=args.tta)
    print(result.format())
    if args.json:
        result.write_json(args.json)
    if args.per_image:
        result.write_per_image(args.per_image)
    return 0
