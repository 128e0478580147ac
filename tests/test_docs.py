"""The documentation: every public name is on an API page, and the examples run.

The API pages (docs/api/*.md) name what they render with mkdocstrings ``::: identifier``
lines; a module identifier renders the module's public members. `make docs` builds them with
``mkdocs build --strict``; these tests need no MkDocs.
"""

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import siamese_cd

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = ROOT / "docs" / "api"
# Subpackages whose every module is documented; every top-level module is too (found below),
# and the tuning package through its __all__. Only the command line is left out: its
# reference page is generated from the argument parsers.
SUBPACKAGES = ("siamese_cd.models", "siamese_cd.data")
MODULES = tuple(
    info.name for info in pkgutil.iter_modules(siamese_cd.__path__, "siamese_cd.") if not info.ispkg
) + ("siamese_cd.tuning",)


def documented_identifiers() -> set[str]:
    found = set()
    for page in sorted(API_PAGES.glob("*.md")):
        found |= set(re.findall(r"^::: *([\w.]+) *$", page.read_text(), flags=re.MULTILINE))
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


def undocumented(names: set[str], identifiers: set[str]) -> list[str]:
    """Names neither rendered themselves nor members of a rendered module."""
    return sorted(
        name
        for name in names
        if name not in identifiers and name.rpartition(".")[0] not in identifiers
    )


def modules_to_document() -> list[str]:
    modules = list(MODULES)
    for package in SUBPACKAGES:
        path = importlib.import_module(package).__path__
        modules += [info.name for info in pkgutil.iter_modules(path, package + ".")]
    return modules


def test_every_top_level_export_is_documented():
    exports = siamese_cd._EXPORTS
    assert siamese_cd.__all__ == sorted(exports)
    names = {f"{module}.{name}" for name, module in exports.items()}
    assert undocumented(names, documented_identifiers()) == []


def test_every_public_name_of_the_subpackages_is_documented():
    identifiers = documented_identifiers()
    modules = modules_to_document()
    assert "siamese_cd.models.siamese" in modules and "siamese_cd.data.dataset" in modules
    names = set().union(*(public_names(module) for module in modules))
    assert "siamese_cd.tuning.ChangeHyperModel" in names
    assert undocumented(names, identifiers) == []


def test_documented_identifiers_exist():
    for identifier in sorted(documented_identifiers()):
        module_name, _, attribute = identifier.rpartition(".")
        try:
            importlib.import_module(identifier)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module_name), attribute), identifier


def test_undocumented_names_are_reported():
    identifiers = {"siamese_cd.losses", "siamese_cd.metrics.ChangeMetrics"}
    names = {
        "siamese_cd.losses.DiceLoss",
        "siamese_cd.metrics.ChangeMetrics",
        "siamese_cd.metrics.scores_from_counts",
    }
    assert undocumented(names, identifiers) == ["siamese_cd.metrics.scores_from_counts"]


def test_example_tutorial_pages_keep_every_line_of_code():
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        examples = importlib.import_module("examples")
    finally:
        sys.path.pop(0)
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
