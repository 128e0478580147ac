"""The documentation: every public name is on an API page, and the examples run.

The API pages (docs/api/*.md) name what they render with mkdocstrings ``::: identifier``
lines; a module identifier renders the module's public members. `make docs` builds them with
``mkdocs build --strict``; these tests need no MkDocs.
"""

import ast
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import siamese_cd

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = ROOT / "docs" / "api"
# Every package and module under siamese_cd is documented, found by walking the package; a
# package with `__all__` through its exports. Only the command line is left out: its reference
# page is generated from the argument parsers.
LEFT_OUT = "siamese_cd.cli"


def _hook(name: str):
    """A module of docs/hooks/, imported as the MkDocs build imports it."""
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def documented_identifiers(pages: Path = API_PAGES) -> set[str]:
    """What the pages render with their members.

    A package shown with ``show_submodules: true`` renders its modules too; one shown with
    ``members: false`` renders only its docstring, so it documents none of its names.
    """
    modules = [entry.name for entry in _hook("module_map").walk()]
    found = set()
    for page in sorted(pages.glob("*.md")):
        blocks = re.findall(r"^::: *([\w.]+) *\n((?:[ \t]+\S.*\n)*)", page.read_text() + "\n", re.M)
        for identifier, options in blocks:
            if re.search(r"^\s*members: *false\s*$", options, flags=re.MULTILINE):
                continue
            found.add(identifier)
            if re.search(r"^\s*show_submodules: *true\s*$", options, flags=re.MULTILINE):
                found.update(name for name in modules if name.startswith(identifier + "."))
    return found


def public_names(module_name: str) -> set[str]:
    """`__all__` where the module has one, else the non-underscore names it defines."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module_name
        ]
    return {f"{module_name}.{name}" for name in names}


def homes(names: set[str]) -> dict[str, str]:
    """Re-exported name -> where it is defined (``pkg.Name`` from ``pkg.mod``: ``pkg.mod.Name``)."""
    found = {}
    for name in names:
        module_name, _, attribute = name.rpartition(".")
        value = getattr(importlib.import_module(module_name), attribute)
        # A class or function knows its module; a constant is found in the submodule holding it.
        home = getattr(value, "__module__", None) if hasattr(value, "__qualname__") else None
        if not isinstance(home, str):
            home = next(
                (
                    other
                    for other in sorted(sys.modules)
                    if other.startswith(module_name + ".")
                    and getattr(sys.modules[other], attribute, None) is value
                ),
                None,
            )
        if isinstance(home, str) and home.startswith("siamese_cd.") and home != module_name:
            found[name] = f"{home}.{attribute}"
    return found


def undocumented(
    names: set[str], identifiers: set[str], homes: dict[str, str] | None = None
) -> list[str]:
    """Names neither rendered themselves nor members of a rendered module, here or at home."""

    def rendered(name: str) -> bool:
        return name in identifiers or name.rpartition(".")[0] in identifiers

    homes = homes or {}
    return sorted(
        name for name in names if not rendered(name) and not rendered(homes.get(name, name))
    )


def _unimportable(name: str) -> None:
    raise ImportError(f"{name} cannot be imported, so its modules cannot be listed")


def all_modules() -> set[str]:
    """Every package and module under siamese_cd, as Python's own walk finds them."""
    walk = pkgutil.walk_packages(siamese_cd.__path__, "siamese_cd.", onerror=_unimportable)
    return {"siamese_cd", *(info.name for info in walk)}


def modules_to_document() -> list[str]:
    return sorted(
        name
        for name in all_modules()
        if name != LEFT_OUT and not name.startswith(LEFT_OUT + ".") and name != "siamese_cd"
    )


def test_every_top_level_export_is_documented():
    exports = siamese_cd._EXPORTS
    assert siamese_cd.__all__ == sorted(exports)
    names = {f"{module}.{name}" for name, module in exports.items()}
    assert undocumented(names, documented_identifiers()) == []


def test_every_public_name_of_the_subpackages_is_documented():
    identifiers = documented_identifiers()
    modules = modules_to_document()
    assert "siamese_cd.models.siamese" in modules and "siamese_cd.data.pipeline.dataset" in modules
    assert "siamese_cd.training.run" in modules and "siamese_cd.cli.train" not in modules
    names = set().union(*(public_names(module) for module in modules))
    assert "siamese_cd.tuning.ChangeHyperModel" in names
    assert undocumented(names, identifiers, homes(names)) == []


def test_documented_identifiers_exist():
    for identifier in sorted(documented_identifiers()):
        module_name, _, attribute = identifier.rpartition(".")
        try:
            importlib.import_module(identifier)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module_name), attribute), identifier


def test_undocumented_names_are_reported():
    identifiers = {"siamese_cd.models.losses", "siamese_cd.models.metrics.ChangeMetrics"}
    names = {
        "siamese_cd.models.losses.DiceLoss",
        "siamese_cd.models.metrics.ChangeMetrics",
        "siamese_cd.models.metrics.scores_from_counts",
    }
    assert undocumented(names, identifiers) == ["siamese_cd.models.metrics.scores_from_counts"]
    # A name a package re-exports is documented where it is defined.
    reexport = {"siamese_cd.models.scores_from_counts"}
    home = {"siamese_cd.models.scores_from_counts": "siamese_cd.models.metrics.scores_from_counts"}
    assert undocumented(reexport, identifiers, home) == ["siamese_cd.models.scores_from_counts"]
    assert undocumented(reexport, identifiers | {"siamese_cd.models.metrics"}, home) == []


def test_a_package_shown_with_its_submodules_documents_them(tmp_path):
    (tmp_path / "a.md").write_text(
        "# A\n\n::: siamese_cd.models.losses\n\n::: siamese_cd.data.layouts\n"
        "    options:\n      show_submodules: true\n\n::: siamese_cd.tuning\n"
        "    options:\n      members: false\n"
    )
    found = documented_identifiers(tmp_path)
    assert {"siamese_cd.models.losses", "siamese_cd.data.layouts.pairing"} <= found
    assert "siamese_cd.tuning" not in found and "siamese_cd.tuning.space" not in found
    assert "siamese_cd.models.metrics" not in found


def test_module_map_lists_every_package_and_module():
    module_map = _hook("module_map")
    entries = module_map.walk()
    assert [entry.name for entry in entries[:1]] == ["siamese_cd"]
    assert sorted(entry.name for entry in entries) == sorted(all_modules())
    table = module_map.render()
    for entry in entries:
        assert f"`{entry.name}`" in table, entry.name
        assert f"| {entry.summary.replace('|', chr(92) + '|')} |" in table, entry.name
    # A documented module links to its entry and its page; the command line to its own page.
    assert "| [`siamese_cd.models.siamese`][siamese_cd.models.siamese] |" in table
    assert "[Command line](../cli.md)" in table


def test_every_package_and_module_has_a_docstring_saying_what_lives_there():
    missing = []
    for entry in _hook("module_map").walk():
        docstring = ast.get_docstring(ast.parse(entry.path.read_text())) or ""
        if not docstring.strip() or not docstring.splitlines()[0].strip():
            missing.append(str(entry.path.relative_to(ROOT)))
    assert missing == [], "no docstring, or one whose first line is empty: " + ", ".join(missing)


def test_module_map_is_read_from_the_files_and_replaces_its_marker(tmp_path):
    module_map = _hook("module_map")
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""The package.\n\nMore."""\n')
    (package / "a.py").write_text('"""Module a: one | two,\nover two lines.\n\nDetails."""\n')
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("raise ImportError('never imported')\n")
    pages = tmp_path / "api"
    pages.mkdir()
    (pages / "things.md").write_text("# Things\n\n::: pkg.sub\n")
    table = module_map.render(package, pages)
    assert table.splitlines()[2:] == [
        "| **`pkg`** | The package. |  |",
        "| `pkg.a` | Module a: one \\| two, over two lines. |  |",
        "| **[`pkg.sub`][pkg.sub]** |  | [Things](things.md) |",
        "| `pkg.sub.b` |  | [Things](things.md) |",
    ]

    page = SimpleNamespace(file=SimpleNamespace(src_uri="api/index.md"))
    assert module_map.MARKER not in module_map.on_page_markdown(
        f"# API\n\n{module_map.MARKER}\n", page, None, None
    )
    with pytest.raises(ValueError, match="module-map"):
        module_map.on_page_markdown("# API\n", page, None, None)


def test_example_tutorial_pages_keep_every_line_of_code():
    examples = _hook("examples")
    for script in sorted((ROOT / "examples").glob("*.py")):
        page = examples.render(script)
        blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
        shown = [line for block in blocks for line in block.splitlines() if line.strip()]
        source = script.read_text().split('"""', 2)[2].splitlines()
        code = [line for line in source if line.strip() and not line.startswith("#")]
        assert shown == code, script.name
        assert page.startswith("# ") and "\n## " in page, script.name


EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
LAST_LINE = {"quickstart.py": "Now run:", "train_sysu_cd.py": "this run"}


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_quickly(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1].startswith(LAST_LINE[script]), out.stdout
    assert list(tmp_path.iterdir()) == []  # --quick writes only to a temporary folder
    if script == "train_sysu_cd.py":  # the published row, then this run's four scores
        assert "FC-Siam-diff on the SYSU-CD test split" in out.stdout
        published, ours = out.stdout.strip().splitlines()[-2:]
        assert published.split()[1:] == ["89.13", "61.21", "72.57", "56.96"]
        assert len(ours.split()) == 6
