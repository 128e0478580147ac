"""MkDocs hook: each `examples/*.py` script as a tutorial page, `examples/<name>.md`.

The scripts are written to be read top to bottom: the module docstring introduces them,
``# ## Title`` comments start sections and runs of whole-line comments are the prose between
code. This hook turns that into Markdown at build time, so the page is the script that runs
(the test suite runs each one with ``--quick``).
"""

from __future__ import annotations

import ast
from pathlib import Path


def _prose_and_code(body: list[str]) -> list[str]:
    """Markdown of the script's body: comment runs become prose, the rest fenced code."""
    out: list[str] = []
    code: list[str] = []

    def flush() -> None:
        while code and not code[-1].strip():
            code.pop()
        while code and not code[0].strip():
            code.pop(0)
        if code:
            out.extend(["```python", *code, "```", ""])
        code.clear()

    for line in body:
        if line.startswith("# ## "):
            flush()
            out.extend([f"## {line[5:].strip()}", ""])
        elif line.startswith("#") and not line.startswith("#!"):
            flush()
            out.append(line[1:].strip())
        else:
            if out and out[-1] != "" and not code:
                out.append("")  # end the paragraph before the code
            code.append(line)
    flush()
    return out


def render(path: Path) -> str:
    """The tutorial page of one example script."""
    text = path.read_text(encoding="utf-8")
    module = ast.parse(text)
    doc = ast.get_docstring(module) or path.stem
    title, _, intro = doc.partition("\n")
    lines = text.splitlines()
    first = module.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    body = lines[first.end_lineno :] if has_doc else lines
    header = [
        f"# {title.strip().rstrip('.')}",
        "",
        intro.strip(),
        "",
        f"The script is `examples/{path.name}` in the repository; this page is rendered from it.",
        f"`python examples/{path.name} --quick` runs it in a minute or two on a tiny dataset",
        "in a temporary folder, as the test suite does.",
        "",
    ]
    return "\n".join([*header, *_prose_and_code(body)]) + "\n"


def on_files(files, config):
    from mkdocs.structure.files import File  # here, so that render() imports without MkDocs

    root = Path(config["config_file_path"]).parent
    for path in sorted((root / "examples").glob("*.py")):
        files.append(File.generated(config, f"examples/{path.stem}.md", content=render(path)))
    return files
