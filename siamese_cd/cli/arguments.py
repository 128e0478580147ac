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
    >>> probability("1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be strictly between 0 and 1, got 1.5
"""

from __future__ import annotations

import argparse

from siamese_cd.models.loss_names import loss_name_arg as loss_name  # noqa: F401 - shared by commands
from siamese_cd.options import (  # noqa: F401 - shared by commands
    add_data_options,
    non_negative_int,
    positive_int,
)
from siamese_cd.training.precision import add_precision_argument  # noqa: F401 - shared by commands


def probability(text: str) -> float:
    """A decision threshold: a float strictly between 0 and 1 (0 or 1 would mark every pixel,
    or none, as change)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {value:g}")
    return value


def output_file(path: str, suffixes: tuple[str, ...], what: str):
    """Check an output file's suffix and create its folder, before any work is done.

    Returns:
        The path, as a `pathlib.Path`.

    Raises:
        ConfigError: for a suffix not in `suffixes`, or a folder that cannot be created.
    """
    from pathlib import Path

    from siamese_cd.errors import ConfigError

    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise ConfigError(f"{out}: write {what} as {', '.join(suffixes)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{out.parent}: cannot create the folder ({error.strerror})") from None
    return out


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


def oscd_bands_arg(text: str) -> str | list[str]:
    """OSCD bands: ``rgb``, ``all``, or names such as ``B04,B03,B02,B08``."""
    if text in ("rgb", "all"):
        return text
    names = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not names or not all(name.startswith("B") for name in names):
        raise argparse.ArgumentTypeError(f"expected rgb, all, or names like B04,B08: {text!r}")
    return names


def add_oscd_bands_argument(parser: argparse.ArgumentParser, default_help: str) -> None:
    """``--bands`` of commands that read OSCD (its bands by name)."""
    parser.add_argument(
        "--bands",
        type=oscd_bands_arg,
        default=None,
        help=f"OSCD bands: rgb (B04,B03,B02), all (the 13), or names like B04,B03,B02,B08 "
        f"(default: {default_help})",
    )
