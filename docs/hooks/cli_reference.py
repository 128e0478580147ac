"""MkDocs hook: the command-line reference, rendered from the argument parsers at build time.

`docs/cli.md` holds the prose and the marker ``<!-- cli-reference -->``; this hook replaces
the marker with ``siamese-cd --help`` and every subcommand's ``--help``, taken from
`siamese_cd.cli.build_parser`, so the page cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"
WIDTH = "100"  # argparse wraps help at $COLUMNS: fixed, so the page does not depend on a terminal


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise RuntimeError("siamese-cd has no subcommands")


def _block(text: str) -> str:
    return f"```text\n{text.rstrip()}\n```\n"


def render() -> str:
    """The reference as Markdown: the top-level help, then one section per subcommand."""
    from siamese_cd.cli import COMMANDS, build_parser
    from siamese_cd.cli.quiet import quiet_tensorflow

    quiet_tensorflow()  # some argument types import Keras; its start-up chatter is noise here

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        parts = ["## siamese-cd\n", _block(parser.format_help())]
        for name, sub in _subparsers(parser).items():
            parts += [f"## siamese-cd {name}\n", f"Module: `{COMMANDS[name]}`.\n"]
            parts.append(_block(sub.format_help()))
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE}: the marker {MARKER} is missing")
    return markdown.replace(MARKER, render())
