"""Hints in error messages that name an option the user can actually pass.

A message such as "leave them out with on_missing='skip'" is raised deep in the library,
which does not know who called it: Python code, or a `siamese-cd` command that may or may
not accept ``--on-missing``. `option_hint` words the hint for where the code runs: the
command line (`siamese_cd.cli.main`) declares the running command and its options with
`running_command`, and a hint names the command-line option only if that command accepts
it. Outside any command, both spellings are given.

Example:
    >>> option_hint("on_missing='skip'", "--on-missing skip")
    "on_missing='skip' in Python, --on-missing skip on the command line"
    >>> with running_command("check", ["--on-missing", "--json"]):
    ...     option_hint("on_missing='skip'", "--on-missing skip")
    '--on-missing skip'
    >>> with running_command("synth", ["--size"]):
    ...     option_hint("on_missing='skip'", "--on-missing skip")
    "on_missing='skip' in Python (siamese-cd synth has no --on-missing option)"
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable, Iterator

# The running `siamese-cd` command and the options it accepts; None outside the command
# line. A module global, not a context variable: data is read in worker threads, and
# their messages must see the command too.
_running: tuple[str, frozenset[str]] | None = None


@contextlib.contextmanager
def running_command(name: str, options: Iterable[str]) -> Iterator[None]:
    """Within the block, hints are worded for ``siamese-cd NAME``, which accepts `options`
    (option strings such as ``"--on-missing"``)."""
    global _running
    previous, _running = _running, (name, frozenset(options))
    try:
        yield
    finally:
        _running = previous


def parser_options(parser: argparse.ArgumentParser) -> frozenset[str]:
    """Every option string `parser` accepts (``-o``, ``--out``, ...)."""
    # `_actions` is argparse's list of what add_argument added; it has no public accessor.
    return frozenset(option for action in parser._actions for option in action.option_strings)


def option_hint(python: str, option: str) -> str:
    """How to set something, for where the code runs.

    Args:
        python: the Python spelling, e.g. ``"on_missing='skip'"``.
        option: the command-line spelling, option first, e.g. ``"--on-missing skip"``.

    Returns:
        Outside the command line, both spellings; inside a command accepting the option, the
        option; inside one that does not, the Python spelling and that the command lacks it.
    """
    if _running is None:
        return f"{python} in Python, {option} on the command line"
    name, accepted = _running
    flag = option.split()[0]
    if flag in accepted:
        return option
    return f"{python} in Python (siamese-cd {name} has no {flag} option)"
