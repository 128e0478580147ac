"""MkDocs hook: the module map on the API overview page, from the modules' own docstrings.

`docs/api/index.md` holds the marker ``<!-- module-map -->``; this hook replaces it with a
table of every package and module under ``siamese_cd/``: its name, the summary of its
docstring (the first paragraph) and the API page that documents it. The files are read with
`ast`, never imported, so the build needs no TensorFlow for it and a module added, moved or
re-described shows up in the map without anyone editing the page.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- module-map -->"
PAGE = "api/index.md"
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "siamese_cd"
API_PAGES = ROOT / "docs" / "api"
# Packages documented by a page of their own rather than by ``::: identifier`` lines: the
# command line's reference is generated from its argument parsers (docs/hooks/cli_reference.py).
ELSEWHERE = {"siamese_cd.cli": ("Command line", "../cli.md")}


@dataclass(frozen=True)
class Entry:
    """One package (its ``__init__.py``) or module of the tree."""

    name: str
    path: Path
    is_package: bool
    summary: str


def summary(path: Path) -> str:
    """The first paragraph of the module's docstring on one line; empty without a docstring."""
    docstring = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    return " ".join(docstring.strip().split("\n\n")[0].split())


def walk(package_dir: Path = PACKAGE) -> list[Entry]:
    """Every package and module, depth first: a package, its modules, then its subpackages."""
    prefix = ".".join(package_dir.relative_to(package_dir.parent).parts)
    return _walk(package_dir, prefix)


def _walk(directory: Path, name: str) -> list[Entry]:
    init = directory / "__init__.py"
    entries = [Entry(name, init, True, summary(init))]
    for path in sorted(directory.glob("*.py")):
        if path.name != "__init__.py":
            entries.append(Entry(f"{name}.{path.stem}", path, False, summary(path)))
    for sub in sorted(directory.iterdir()):
        if (sub / "__init__.py").is_file():
            entries += _walk(sub, f"{name}.{sub.name}")
    return entries


def documented_on(api_dir: Path = API_PAGES) -> dict[str, tuple[str, str]]:
    """Identifier rendered by a ``::: identifier`` line -> (page title, page file name)."""
    found = {}
    for page in sorted(api_dir.glob("*.md")):
        text = page.read_text()
        heading = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
        title = heading.group(1).strip() if heading else page.stem
        for identifier in re.findall(r"^::: *([\w.]+) *$", text, flags=re.MULTILINE):
            found.setdefault(identifier, (title, page.name))
    return found


def _page_of(name: str, pages: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """Where `name` is documented: its own entry, else that of the nearest package above it."""
    while name:
        if name in pages:
            return pages[name]
        if name in ELSEWHERE:
            return ELSEWHERE[name]
        name = name.rpartition(".")[0]
    return None


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(package_dir: Path = PACKAGE, api_dir: Path = API_PAGES) -> str:
    """The map as a Markdown table; documented modules link to their reference entry."""
    pages = documented_on(api_dir)
    rows = ["| module | what lives there | page |", "|---|---|---|"]
    for entry in walk(package_dir):
        shown = f"`{entry.name}`"
        if entry.name in pages:  # autorefs resolves the identifier to its heading
            shown = f"[{shown}][{entry.name}]"
        if entry.is_package:
            shown = f"**{shown}**"
        page = _page_of(entry.name, pages)
        link = f"[{page[0]}]({page[1]})" if page else ""
        rows.append(f"| {shown} | {_cell(entry.summary)} | {link} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE}: the marker {MARKER} is missing")
    return markdown.replace(MARKER, render())
