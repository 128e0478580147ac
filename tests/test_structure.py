"""The package's shape stays readable from the folder list; these tests read it with `ast` only.

Nothing under ``siamese_cd/`` is imported, so a module that fails to import is still measured.
The rules and how they count:

- The top level of ``siamese_cd/`` holds at most 8 modules beside its packages;
  ``__init__.py`` counts as one of them.
- No import cycle among the package's modules. The graph holds the imports a module runs when
  it is itself imported: module-level statements, including those in ``try``/``if`` blocks and
  class bodies, but not imports inside functions (a lazy import is the legitimate way to keep
  start-up cheap or break a dependency) nor under ``if TYPE_CHECKING:`` (never run). An edge
  goes to the module named: ``from siamese_cd.pkg import name`` points at
  ``siamese_cd.pkg.name`` when that is a module, else at ``siamese_cd.pkg`` (its
  ``__init__``). Parent packages that Python initialises on the way are not edges, so a
  package ``__init__`` re-exporting its own modules is no cycle.
- No module over 500 lines, counted as ``wc -l`` does (every line, docstrings and comments
  included).
- No function or method over 60 lines of code: blank lines, comment-only lines and docstrings
  (its own and those of anything nested in it) aside; decorators aside. A nested function's
  lines count within its parent as well as on their own.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "siamese_cd"
MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
    tokenize.ENCODING,
}


# --- walking the package -------------------------------------------------------------------


def modules_of(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package tree.

    A package is named by its ``__init__.py``; the top directory's name is the package name.
    """
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def top_level_modules(package_dir: Path) -> list[str]:
    """The ``.py`` files directly in the package directory, ``__init__.py`` included."""
    return sorted(path.name for path in package_dir.glob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported (see the module docstring)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (*_FUNCTIONS, ast.Lambda)):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.orelse:
                yield from module_level_imports(ast.Module(body=[statement], type_ignores=[]))
        elif isinstance(child, ast.stmt):
            yield from module_level_imports(child)


def _base_of(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, resolving relative imports."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is a module of the tree (``import a.b.c`` runs a.b.c)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package_dir: Path) -> dict[str, dict[str, int]]:
    """Module -> {imported module of the same package: line of the first such import}."""
    modules = modules_of(package_dir)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, modules) for alias in node.names]
            else:
                base = _base_of(name, is_package, node)
                targets = [
                    f"{base}.{alias.name}"
                    if f"{base}.{alias.name}" in modules
                    else _known(base, modules)
                    for alias in node.names
                ]
            for target in targets:
                if target is not None:
                    graph[name].setdefault(target, node.lineno)
    return graph


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_through(start: str, members: set[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest import path from `start` back to itself inside one component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node]):
                if succ == start:
                    return [*paths[node], start]
                if succ in members and succ not in paths:
                    paths[succ] = [*paths[node], succ]
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")  # unreachable for a real component


def import_cycles(package_dir: Path) -> list[str]:
    """One cycle per group of modules that import each other, as ``a (line) -> b -> a``."""
    graph = import_graph(package_dir)
    cycles = []
    for component in _strongly_connected(graph):
        start = component[0]
        if len(component) == 1 and start not in graph[start]:
            continue
        path = _cycle_through(start, set(component), graph)
        steps = [f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:])]
        cycles.append(" -> ".join([*steps, path[-1]]))
    return cycles


def _code_lines(source: str, tree: ast.AST) -> set[int]:
    """Lines holding code: any token but comments and layout, docstrings taken out."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    for node in ast.walk(tree):
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef, ast.Module)) and ast.get_docstring(node):
            docstring = node.body[0]
            lines.difference_update(range(docstring.lineno, docstring.end_lineno + 1))
    return lines


def long_modules(package_dir: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        count = len(path.read_text().splitlines())
        if count > limit:
            found.append(f"{path.relative_to(package_dir.parent)}: {count} lines")
    return found


def long_functions(package_dir: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source, str(path))
        code = _code_lines(source, tree)
        for node in ast.walk(tree):
            if isinstance(node, _FUNCTIONS):
                count = len(code.intersection(range(node.lineno, node.end_lineno + 1)))
                if count > limit:
                    where = f"{path.relative_to(package_dir.parent)}:{node.lineno}"
                    found.append(f"{where} {node.name}: {count} lines of code")
    return found


def _listing(problems: list[str]) -> str:
    return "\n  " + "\n  ".join(problems)


# --- the package ---------------------------------------------------------------------------


def test_top_level_holds_few_modules():
    modules = top_level_modules(PACKAGE)
    assert "__init__.py" in modules  # the count includes it, as documented above
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, (
        f"siamese_cd/ holds {len(modules)} modules beside its packages (at most "
        f"{MAX_TOP_LEVEL_MODULES}); move some into a package:" + _listing(modules)
    )


def test_no_import_cycle():
    graph = import_graph(PACKAGE)
    # The graph is really built from the package's own imports.
    assert "siamese_cd.models.backbone" in graph["siamese_cd.models.siamese"]
    cycles = import_cycles(PACKAGE)
    assert not cycles, "modules of siamese_cd import each other at module level:" + _listing(cycles)


def test_no_module_over_500_lines():
    found = long_modules(PACKAGE)
    assert not found, f"modules over {MAX_MODULE_LINES} lines; split them:" + _listing(found)


def test_no_function_over_60_lines_of_code():
    found = long_functions(PACKAGE)
    assert not found, (
        f"functions over {MAX_FUNCTION_LINES} lines of code (docstrings, comments and blank "
        "lines aside); split them:" + _listing(found)
    )


# --- the checker catches what it should, on a made-up package -------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_checker_finds_a_cycle_through_a_module_imported_from_its_package(tmp_path):
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": '"""Lazy: imports nothing."""\n',
            "pkg/a.py": "from pkg.sub import b\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": "import os\n\nif os.sep:\n    from .. import c\n",
            "pkg/c.py": "class C:\n    from pkg import a\n",
        },
    )
    assert import_graph(package)["pkg.a"] == {"pkg.sub.b": 1}
    assert import_cycles(package) == [
        "pkg.a (line 1) -> pkg.sub.b (line 4) -> pkg.c (line 2) -> pkg.a"
    ]


def test_checker_ignores_lazy_and_type_checking_imports(tmp_path):
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",  # re-exporting its own module: no cycle
            "pkg/a.py": """\
                from typing import TYPE_CHECKING

                import pkg.b

                if TYPE_CHECKING:
                    from pkg.c import C

                A = 1
            """,
            "pkg/b.py": "def late():\n    from pkg import a\n",
            "pkg/c.py": "from pkg import a\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg"] == {"pkg.a": 1} and graph["pkg.a"] == {"pkg.b": 3}
    assert graph["pkg.b"] == {} and graph["pkg.c"] == {"pkg.a": 1}
    assert import_cycles(package) == []
    # The same import at module level closes the circle.
    (package / "b.py").write_text("from pkg import a\n")
    assert import_cycles(package) == ["pkg.a (line 3) -> pkg.b (line 1) -> pkg.a"]


def _function(name: str, assignments: int) -> str:
    """A function of ``assignments + 3`` lines of code, padded with lines that are not code."""
    docstring = '    """Doc.\n\n' + "    more\n" * 40 + '    """'
    comments = "\n".join(["    # a comment line", ""] * 30)
    code = "\n".join(
        f"    x{i} = {i}  # a trailing comment: still code" for i in range(assignments)
    )
    nested = '    def inner():\n        """Nested doc."""\n        return 1'
    return f"@decorator\ndef {name}():\n{docstring}\n{comments}\n{code}\n{nested}\n"


def test_checker_counts_code_lines_of_functions(tmp_path):
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            # def line + assignments + inner's def and return; docstrings and comments aside
            "pkg/long.py": _function("too_long", 58),
            "pkg/short.py": _function("fits", 57),
        },
    )
    assert long_functions(package) == ["pkg/long.py:2 too_long: 61 lines of code"]
    assert long_functions(package, limit=59) == [
        "pkg/long.py:2 too_long: 61 lines of code",
        "pkg/short.py:2 fits: 60 lines of code",
    ]


def test_checker_finds_long_modules_and_a_crowded_top_level(tmp_path):
    files = {f"pkg/m{i}.py": "" for i in range(8)}
    files["pkg/__init__.py"] = "x = 1\n" * 501
    files["pkg/sub/__init__.py"] = "x = 1\n" * 500
    package = _write(tmp_path, files)
    assert long_modules(package) == ["pkg/__init__.py: 501 lines"]
    assert len(top_level_modules(package)) == 9
