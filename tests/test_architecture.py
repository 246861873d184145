"""The package's shape: no import cycle, and each stage imports only the stages below it.

Every ``import`` statement counts, those inside functions too: a lazy import delays the cost of a
dependency, not the dependency itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Stage -> rank; a module may import its own stage and lower ranks only. ``noise_models/`` is
# installed as ``cimsim.noise_models`` (pyproject's package-dir).
RANKS = {
    "core": 0,
    "noise_models": 1,
    "chip": 2,
    "eval": 3,
    "adapters": 4,
    "runs": 5,
    "continual": 6,
    "watermark": 6,
    "cli": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "noise_models":
        parts.insert(0, "cimsim")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the cimsim modules it imports (a ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``)."""
    files = [*ROOT.glob("cimsim/**/*.py"), *ROOT.glob("noise_models/**/*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    targets.add(full if full in modules else source)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_no_stage_imports_a_higher_one() -> None:
    wrong = []
    for module, targets in import_graph().items():
        here = stage(module)
        for target in targets:
            there = stage(target)
            if here and there and RANKS[there] > RANKS[here]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_every_module_lives_in_a_stage() -> None:
    loose = [m for m in import_graph() if m != "cimsim" and stage(m) is None]
    assert loose == []


def test_no_cli_command_imports_a_sibling_command() -> None:
    shared = {"cimsim.cli.common", "cimsim.cli.reporting"}
    graph = import_graph()
    commands = {m for m in graph if m.startswith("cimsim.cli.") and m not in shared}
    wrong = [f"{m} -> {t}" for m in commands for t in graph[m] if t in commands]
    assert wrong == []


@pytest.mark.parametrize("module", ["cimsim", "cimsim.cli"])
def test_importing_the_package_and_the_cli_loads_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
