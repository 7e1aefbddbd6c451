"""The package's structure: no import cycles, small modules, one MPI import.

Imports are read from the source (every ``import`` statement, also inside
functions and under ``TYPE_CHECKING``), so a cycle hidden in a function body
counts too.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "parallelizer"
MAX_LINES = 500


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in known and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # a package's __init__ importing its own submodules is not a cycle between them
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_engine_never_imports_the_public_layer():
    graph = _graph()
    # every public module but the two the engine builds on: what values mean, and the errors
    public = {name for name in graph if name.count(".") == 1 and not name.split(".")[1].startswith("_")} - {
        "parallelizer.semantics",
        "parallelizer.errors",
    }
    public.add("parallelizer")
    for name, targets in graph.items():
        if name.startswith(("parallelizer._core", "parallelizer._mp", "parallelizer._mpi")):
            assert not targets & public, f"{name} imports {sorted(targets & public)}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name):
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"


def test_mpi4py_is_imported_in_one_place():
    importers = sorted(
        name
        for name, path in _modules().items()
        if any(
            isinstance(node, (ast.Import, ast.ImportFrom))
            and any("mpi4py" in (getattr(node, "module", None) or "") or "mpi4py" in a.name for a in node.names)
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert importers == ["parallelizer._mpi.runtime"]
