"""Argument types shared by the subcommands of `siamese-cd`.

Each is an ``argparse`` ``type=`` callable: it returns the parsed value or raises
`argparse.ArgumentTypeError`, which argparse turns into a usage error (exit status 2).

Example:
    >>> positive_int("3"), filters_arg("8,16,32"), bands_arg("4,3,2")
    (3, [8, 16, 32], [4, 3, 2])
    >>> filters_arg("16")
    16
    >>> probability("0.5")
    0.5
"""

from __future__ import annotations

import argparse

from siamese_cd.loss_names import loss_name_arg as loss_name  # noqa: F401 - shared by commands
from siamese_cd.precision import add_precision_argument  # noqa: F401 - shared by commands


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


def probability(text: str) -> float:
    """A float in [0, 1], such as a decision threshold."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def filters_arg(text: str) -> int | list[int]:
    """One width (``16``) or one width per encoder level (``8,16,32``)."""
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
    """Band numbers counted from 1, as in GDAL: ``4,3,2``."""
    try:
        bands = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected band numbers like 4,3,2: {text!r}") from None
    if any(b < 1 for b in bands):
        raise argparse.ArgumentTypeError(f"bands are counted from 1: {text!r}")
    return bands
