"""Command-line options shared by `siamese-cd` and the tuning script.

Both the subcommands (`siamese_cd.cli`) and `siamese_cd.tuning.search` take them, so they
are defined once here, in a module that imports neither.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_data_options(parser)
    >>> args = parser.parse_args(["--label-threshold", "1", "--on-missing", "skip"])
    >>> args.label_threshold, args.on_missing, positive_int("3")
    (1, 'skip', 3)
"""

from __future__ import annotations

import argparse


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer of at least 0."""
    return _int_at_least(text, 0)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--on-missing`` and ``--label-threshold``: how a split's files are paired and read."""
    parser.add_argument(
        "--on-missing",
        choices=("error", "skip"),
        default="error",
        help="a file without its counterparts: error (default), or skip it with a warning",
    )
    parser.add_argument(
        "--label-threshold",
        type=positive_int,
        default=128,
        help="mask values at or above it are change (default 128; masks of only 0 and 1 "
        "are read as 0/1 whatever it is)",
    )
