"""The import layering of ``src/opensergo``, read from the source with ``ast``.

Counted: every import that runs, at module level or inside a function. Not counted: imports
under ``if TYPE_CHECKING:`` (they never run). ``from package import name`` is an edge to
``package.name`` when that is a module, else to ``package``.

Rules:
* the data plane (SDK, engine, integrations) never imports the control plane;
* the control plane never imports the data plane; both import ``opensergo.common`` instead,
  which imports neither;
* a store never imports the HTTP API;
* no import cycle anywhere.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit

SRC = ROOT / "src"

DATA_PLANE = (
    "opensergo.client",
    "opensergo.governance",
    "opensergo.integrations",
    "opensergo.observability",
    "opensergo.database",
)
CONTROL_PLANE = "opensergo.controlplane"

# (importer prefix, forbidden target prefix, why)
FORBIDDEN = [
    *(
        (side, CONTROL_PLANE, "the data plane talks to the control plane over the wire only")
        for side in DATA_PLANE
    ),
    *((CONTROL_PLANE, side, "shared primitives live in opensergo.common") for side in DATA_PLANE),
    *(
        ("opensergo.common", side, "both halves import opensergo.common")
        for side in (*DATA_PLANE, CONTROL_PLANE)
    ),
    ("opensergo.controlplane.store", "opensergo.controlplane.api", "a store knows nothing of the HTTP API"),
]

Graph = dict[str, dict[str, int]]  # module -> {imported module: line of the first such import}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements_that_run(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except those under ``if TYPE_CHECKING:`` (its else branch runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.orelse:
                yield statement
                yield from _statements_that_run(statement)
            continue
        yield child
        yield from _statements_that_run(child)


def imports_of(name: str, path: Path, modules: set[str]) -> dict[str, int]:
    """The modules of ``modules`` that ``name`` (at ``path``) imports, with the line of each."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in modules and target != name:
            found.setdefault(target, line)

    for node in _statements_that_run(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in modules else base, node.lineno)
    return found


def import_graph(root: Path, top: str) -> Graph:
    paths = {module_name(root, p): p for p in (root / top).rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(name, path, modules) for name, path in sorted(paths.items())}


@cache
def opensergo_graph() -> Graph:
    return import_graph(SRC, "opensergo")


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read() -> None:
    graph = opensergo_graph()
    assert "opensergo.controlplane.api.server" in graph["opensergo.controlplane.app"]
    assert "opensergo.spec.loader" in graph["opensergo.controlplane.snapshots"]
    # A function-local import counts: the CLI starts the control plane from inside `serve`.
    assert "opensergo.controlplane.app" in graph["opensergo.cli"]


@pytest.mark.parametrize(
    ("importer", "target", "why"), FORBIDDEN, ids=[f"{a}-/->{b}" for a, b, _ in FORBIDDEN]
)
def test_forbidden_imports(importer: str, target: str, why: str) -> None:
    graph = opensergo_graph()
    assert any(_within(m, importer) for m in graph), f"no module {importer}"
    offending = [
        f"{module}:{line} imports {imported}"
        for module, imported_lines in graph.items()
        if _within(module, importer)
        for imported, line in imported_lines.items()
        if _within(imported, target)
    ]
    assert not offending, f"{why}:\n" + "\n".join(offending)


def test_no_import_cycles() -> None:
    found = cycles(opensergo_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_sees_runtime_imports_only(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from . import a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n"
    )
    (package / "d.py").write_text("import pkg.c\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b": 2} and graph["pkg.b"] == {"pkg.a": 1}
    assert graph["pkg.c"] == {} and graph["pkg.d"] == {"pkg.c": 1}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
