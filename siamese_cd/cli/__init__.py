"""The `siamese-cd` command: one subcommand per module, listed in `COMMANDS`.

Subcommands: ``synth`` (write a synthetic dataset), ``train``, ``check`` (scan a dataset
for problems), ``evaluate``, ``predict`` (change maps of scenes of any size), ``tune``
(hyperparameter search) and ``reproduce`` (the paper's protocol on OSCD or AirChange). Each
module defines ``HELP``, ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``, and imports TensorFlow only inside
``run``, so ``siamese-cd --help`` and usage errors return at once.

Example:
    >>> parser = build_parser(["synth"])
    >>> parser.parse_args(["synth", "out", "--size", "32"]).size
    32
    >>> sorted(COMMANDS)
    ['check', 'evaluate', 'predict', 'reproduce', 'synth', 'train', 'tune']
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType

from siamese_cd.errors import SiameseCDError

# name -> module; the order is the order of `siamese-cd --help`.
COMMANDS: dict[str, str] = {
    "synth": "siamese_cd.cli.synth",
    "train": "siamese_cd.cli.train",
    "check": "siamese_cd.cli.check",
    "evaluate": "siamese_cd.cli.evaluate",
    "predict": "siamese_cd.cli.predict",
    "tune": "siamese_cd.cli.tune",
    "reproduce": "siamese_cd.cli.reproduce",
}


def command_module(name: str) -> ModuleType:
    """The module of subcommand `name`."""
    return importlib.import_module(COMMANDS[name])


def _verbose_option(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="show TensorFlow's start-up and device log lines",
    )


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of `siamese-cd`.

    Args:
        commands: the subcommands whose own arguments are added; None adds all. Every
            subcommand is listed either way. `main` adds only the one being run, so that
            ``siamese-cd --help`` imports no subcommand's dependencies.
    """
    wanted = set(COMMANDS if commands is None else commands)
    parser = argparse.ArgumentParser(
        prog="siamese-cd", description="Change detection on pairs of co-registered images."
    )
    _verbose_option(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = command_module(name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        # SUPPRESS: the flag given before the subcommand is not reset by the subparser.
        _verbose_option(sub, default=argparse.SUPPRESS)
        if name in wanted:
            module.add_arguments(sub)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv`: its first word that is one; None if there is none."""
    return next((word for word in argv if word in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `siamese-cd` console script; returns the exit status.

    Errors of the library (`SiameseCDError`) are printed as one line naming the command,
    with exit status 2, as argparse does for usage errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-v" not in argv and "--verbose" not in argv:
        # Before parsing: some argument types (e.g. --loss) import Keras.
        from siamese_cd.cli.quiet import quiet_tensorflow

        quiet_tensorflow()
    command = chosen_command(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    try:
        return command_module(args.command).run(args)
    except SiameseCDError as error:
        print(f"siamese-cd {args.command}: error: {error}", file=sys.stderr)
        return 2
