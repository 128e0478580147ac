"""MkDocs hook: the table of `siamese_cd`'s exports on the API overview page.

Built from ``siamese_cd._EXPORTS`` (name -> defining module) at build time. Every row links
to the name's entry in the API pages, so with ``mkdocs build --strict`` an export that no
page documents fails the build.
"""

from __future__ import annotations

MARKER = "<!-- exports -->"
PAGE = "api/index.md"


def render() -> str:
    import siamese_cd  # cheap: the exports are imported on first use

    rows = ["| name | defined in |", "|---|---|"]
    for name in siamese_cd.__all__:
        module = siamese_cd._EXPORTS[name]
        rows.append(f"| [`{name}`][{module}.{name}] | [`{module}`][{module}] |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE}: the marker {MARKER} is missing")
    return markdown.replace(MARKER, render())
