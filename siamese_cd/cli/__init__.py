"""The `siamese-cd` command: one subcommand per module, listed in `COMMANDS`.

Subcommands: ``synth`` (write a synthetic dataset), ``train``, ``check`` (scan a dataset
for problems), ``evaluate``, ``predict`` (change maps of scenes of any size), ``export`` (a
model as a SavedModel, ONNX or LiteRT file), ``tune`` (hyperparameter search), ``reproduce``
(the paper's protocol on OSCD or AirChange) and ``convert-torch`` (a checkpoint of the
authors' PyTorch code as a ``.keras`` model). Each module defines ``HELP``, ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``, and imports TensorFlow only inside
``run``, so ``siamese-cd --help`` and usage errors return at once.

Example:
    >>> parser = build_parser(["synth"])
    >>> parser.parse_args(["synth", "out", "--size", "32"]).size
    32
    >>> sorted(COMMANDS)  # doctest: +NORMALIZE_WHITESPACE
    ['check', 'convert-torch', 'evaluate', 'export', 'predict', 'reproduce', 'synth', 'train',
     'tune']
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

from siamese_cd.errors import PixelTypeWarning, SiameseCDError
from siamese_cd.hints import parser_options, running_command

# name -> module; the order is the order of `siamese-cd --help`.
COMMANDS: dict[str, str] = {
    "synth": "siamese_cd.cli.synth",
    "train": "siamese_cd.cli.train",
    "check": "siamese_cd.cli.check",
    "evaluate": "siamese_cd.cli.evaluate",
    "predict": "siamese_cd.cli.predict",
    "export": "siamese_cd.cli.export",
    "tune": "siamese_cd.cli.tune",
    "reproduce": "siamese_cd.cli.reproduce",
    "convert-torch": "siamese_cd.cli.convert",
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


def command_options(name: str) -> frozenset[str]:
    """Every option string subcommand `name` accepts, e.g. ``--on-missing`` for ``check``."""
    parser = argparse.ArgumentParser()
    _verbose_option(parser, default=False)
    command_module(name).add_arguments(parser)
    return parser_options(parser)


@contextlib.contextmanager
def short_warnings(command: str):
    """Within the block, the library's warnings print as one line naming the command,
    ``siamese-cd predict: warning: ...``, like its errors; others print as Python prints them.

    Example:
        >>> with short_warnings("predict"):
        ...     warnings.formatwarning("12-bit data", PixelTypeWarning, "x.py", 1)
        'siamese-cd predict: warning: 12-bit data\\n'
    """
    original = warnings.formatwarning
    package = Path(__file__).resolve().parents[1]

    def short(message, category, filename, lineno, line=None):
        if issubclass(category, PixelTypeWarning) or package in Path(filename).resolve().parents:
            return f"siamese-cd {command}: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = short
    try:
        yield
    finally:
        warnings.formatwarning = original


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv`: its first word that is one; None if there is none."""
    return next((word for word in argv if word in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `siamese-cd` console script; returns the exit status.

    Errors of the library (`SiameseCDError`) are printed as one line naming the command,
    with exit status 2, as argparse does for usage errors. Ctrl-C prints one line (for
    ``train``, where the last finished epoch is kept) and returns 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-v" not in argv and "--verbose" not in argv:
        # Before parsing: some argument types (e.g. --loss) import Keras.
        from siamese_cd.cli.quiet import quiet_tensorflow

        quiet_tensorflow()
    command = chosen_command(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    try:
        # Hints raised deep in the library then name only options this command accepts.
        with (
            running_command(args.command, command_options(args.command)),
            short_warnings(args.command),
        ):
            return command_module(args.command).run(args)
    except SiameseCDError as error:
        print(f"siamese-cd {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        # Ctrl-C: one line (training says what it kept) instead of a traceback; 130 is
        # the shell's status for a process ended by SIGINT.
        detail = str(error) or "interrupted"
        print(f"siamese-cd {args.command}: {detail}", file=sys.stderr)
        return 130
