"""``siamese-cd check``: decode every file of a dataset and report problems."""

from __future__ import annotations

import argparse
import sys

from siamese_cd.cli.arguments import add_data_options, positive_int

HELP = "scan every file of a dataset and report problems (exit 1 if any)"
DESCRIPTION = (
    "Decode every file of DATA (a split folder, or a folder of splits) and report orphans, "
    "unreadable or truncated images, size mismatches, label values outside {0, 255} or "
    "{0, 1}, and the changed-pixel fraction per split. Exits 1 when a problem is found."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="a split folder, or a folder of split folders")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_data_options(parser)
    parser.add_argument("--workers", type=positive_int, default=None, help="decoding threads")


def run(args: argparse.Namespace) -> int:
    import json

    from siamese_cd.data.check import check_dataset

    report = check_dataset(
        args.data,
        label_threshold=args.label_threshold,
        on_missing=args.on_missing,
        workers=args.workers,
        progress=sys.stderr.isatty(),
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1
