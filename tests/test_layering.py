"""The core (`reelflow/`) is plain Python: none of its modules imports Prefect, `flows`, `tasks`,
`blocks`, `deployments` or the command line (`cli`), at the top or inside a function, so the
core stays usable (and testable) without the orchestrator; and its modules import each other
without cycles."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "reelflow"
OUTSIDE = ("prefect", "flows", "tasks", "blocks", "deployments", "cli")

# Import cycles known when this test was written, each to be removed once it is broken:
# storyboard/files.py <-> storyboard/loading.py (a function-level import) is being broken on
# the `gates` branch (issue 21, item 4). After that merge this list must be empty.
KNOWN_CYCLES: list[set[str]] = [{"reelflow.storyboard.files", "reelflow.storyboard.loading"}]

CHECK = f"""
import importlib, pkgutil, sys
import reelflow
names = [m.name for m in pkgutil.walk_packages(reelflow.__path__, "reelflow.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {OUTSIDE!r})
print(len(names))
print(",".join(bad))
"""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(CORE.rglob("*.py"))}


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import anywhere in the file, relative ones resolved; `from a
    import b` names the module `a.b` when that is a core module, else `a`."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                member = f"{module}.{alias.name}"
                yield node.lineno, member if member in MODULES else module


def test_core_imports_no_orchestrator() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, bad = done.stdout.split("\n")[-3:-1]
    assert int(count) > 40  # every module was imported, not a handful
    assert bad == "", f"core modules imported the orchestrator: {bad}"


def test_no_core_module_reaches_out_even_inside_a_function() -> None:
    """Importing the core is not enough: a function-level import runs only when called."""
    pattern = re.compile(rf"^({'|'.join(OUTSIDE)})(\.\w+)*:\w+$")  # "module:attr" registrations
    found = []
    for name, path in MODULES.items():
        found += [f"{path.relative_to(ROOT)}:{line} imports {module}"
                  for line, module in _imports(name, path) if module.split(".")[0] in OUTSIDE]
        found += [f"{path.relative_to(ROOT)}:{node.lineno} names {node.value}"
                  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and pattern.match(node.value)]
    assert len(MODULES) > 40
    assert found == [], "\n".join(found)


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                cycles.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [{"a", "b", "c"}]


def test_core_import_graph_has_no_cycles() -> None:
    """Every import counts, function-level ones too: a cycle is two modules that cannot be
    understood (or moved) one without the other."""
    graph = {name: {module for _, module in _imports(name, path) if module in MODULES} - {name}
             for name, path in MODULES.items()}
    assert sum(map(len, graph.values())) > 100  # the graph was read, not left empty
    new = [sorted(cycle) for cycle in _cycles(graph) if cycle not in KNOWN_CYCLES]
    assert new == [], f"import cycles in the core: {new}"
