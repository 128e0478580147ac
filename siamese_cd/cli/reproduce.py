"""``siamese-cd reproduce``: the paper's protocol on OSCD or AirChange, beside its table."""

from __future__ import annotations

import argparse
import sys

from siamese_cd.cli.arguments import add_precision_argument, positive_int

HELP = "reproduce the paper's results on OSCD or AirChange"
DESCRIPTION = (
    "Train FC-EF, FC-Siam-conc and FC-Siam-diff on DATA by the paper's protocol (96x96 "
    "patches, flips and rotations, the published network and training (recipe paper), each "
    "image standardised on its own, the standard split), "
    "score change-class precision, recall and F1, and print them beside the published values. "
    "Models, histories and scores go under LOG_DIR/reproduce-<dataset>-<bands>/."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=("oscd", "airchange"), help="which dataset DATA is")
    parser.add_argument("data", help="the dataset folder, as downloaded")
    parser.add_argument(
        "--variant",
        nargs="+",
        choices=("ef", "conc", "diff"),
        default=["ef", "conc", "diff"],
        help="variants to train (default all three)",
    )
    parser.add_argument(
        "--bands", choices=("rgb", "all"), default="rgb", help="OSCD bands (default rgb)"
    )
    parser.add_argument("--epochs", type=positive_int, help="default 50 (1 with --quick)")
    parser.add_argument("--batch-size", type=positive_int, help="default 32 (4 with --quick)")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny network for 1 epoch: checks the pipeline"
    )
    parser.add_argument("--tta", action="store_true", help="score with 8-fold TTA")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument("--log-dir", default="logs", help="default logs")
    add_precision_argument(parser)


def run(args: argparse.Namespace) -> int:
    from siamese_cd.training.reproduce import ReproduceSettings, reproduce

    settings = ReproduceSettings(
        dataset=args.dataset,
        variants=list(dict.fromkeys(args.variant)),
        bands=args.bands,
        epochs=args.epochs,
        quick=args.quick,
        log_dir=args.log_dir,
        batch_size=args.batch_size,
        seed=args.seed,
        tta=args.tta,
        precision=args.precision,
        progress=sys.stderr.isatty(),
    )
    _, table = reproduce(args.data, settings)
    print(table)
    return 0
