"""The package's shape: no import circle anywhere in edgeprune (imports inside functions count too: a circle put
off until call time is still a circle), no module over about 400 lines, and report columns described once."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edgeprune", "device_agent")
MAX_LINES = 400
#: Modules allowed to break the rules below: none.
BEING_SPLIT: Set[str] = set()


def _modules(package: str) -> Dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, known: Dict[str, Path]) -> Iterator[str]:
    """The package's own modules that ``name`` imports, wherever in the file the import stands."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for stmt in node.body for inner in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # ``if TYPE_CHECKING:`` imports never run
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import mod`` imports the submodule; ``from pkg.mod import name`` the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import a.b.c`` of a function-less path: its nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def _graph() -> Dict[str, Set[str]]:
    known: Dict[str, Path] = {}
    for package in PACKAGES:
        known.update(_modules(package))
    return {name: set(_imports(name, path, known)) for name, path in known.items()}


def _circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_report_imports_nothing_in_a_circle():
    graph = _graph()
    report = {name: {t for t in targets if t.startswith("edgeprune.report")}
              for name, targets in graph.items() if name.startswith("edgeprune.report")}
    assert _circles(report) == []
    assert "edgeprune.report.table" not in set().union(*report.values())  # the old name is a shim, never used


def test_no_import_circle_in_the_packages():
    circles = [c for c in _circles(_graph()) if not set(c) <= BEING_SPLIT]
    assert circles == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_over_400_lines(package):
    long = {name: n for name, path in _modules(package).items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES and name not in BEING_SPLIT}
    assert long == {}


def test_the_report_api_names_stay_functions():
    """A module named like a public function replaces it on the package once imported (``edgeprune.compare()``
    then called a module)."""
    import importlib

    import edgeprune.report as report

    for name in _modules("edgeprune"):
        if name.startswith("edgeprune.report."):
            importlib.import_module(name)
    assert all(callable(getattr(report, name)) for name in report.__all__ if name != "FORMATS")


def test_a_report_column_is_one_entry():
    """Every column of the DataFrame, CSV and displays comes from ``columns.COLUMNS``, each described once."""
    from edgeprune.report import columns

    names = [c.name for c in columns.COLUMNS]
    assert len(names) == len(set(names)) and tuple(names) == columns.NAMES
    for view in (columns.View(), columns.View("ms", 1000.0, terminal=True)):
        headers = [c.heading(view) for c in columns.shown(view)]
        assert len(headers) == len(set(headers)) and headers[0] == "variant"
    assert columns.LEGEND.count(";") == sum(bool(c.legend) for c in columns.COLUMNS) - 1


@pytest.mark.parametrize("values, unit", [([], "µs"), ([float("nan")], "µs"), ([999.9, None], "µs"),
                                          ([float("nan"), 1000.0], "ms"), ([12.0, 25000.0], "ms")])
def test_one_latency_unit_rule(values, unit):
    from edgeprune.report.columns import latency_unit

    assert latency_unit(values) == (unit, 1000.0 if unit == "ms" else 1.0)
