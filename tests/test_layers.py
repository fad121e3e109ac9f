"""The packages import each other one way only, read from the source's own import statements.

Layers, lowest first: grounding, actions, models, agent, tui. A package may import from its own
layer and the ones below it; the only import upwards is the command line starting the interface
(agent/cli -> tui). Inside agent/, the rooms are ordered the same way: the core run (modules
directly in agent/), tasks/, reports/, api/ (the Python API), testing/ (the pytest
plugin), cli/, bench/, eval/. Imports inside functions count too: a lazy
import still ties two packages together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"grounding": "grounding", "actions": "actions", "models": "models", "agent": "agent",
           "tui": "tui"}
LAYERS = ["grounding", "actions", "models", "agent", "tui"]
ROOMS = ["agent", "agent.tasks", "agent.reports", "agent.api", "agent.testing", "agent.cli",
         "agent.bench", "agent.eval"]
ALLOWED_UPWARDS = {("agent.cli", "tui")}  # the command line opens the supervision interface


def _modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS.values():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found["deskpilot." + ".".join(parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every deskpilot module a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("deskpilot."):
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("deskpilot."))
    return out


MODULES = _modules()
GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name}
         for name, path in MODULES.items()}


def _layer(module: str) -> str:
    return module.split(".")[1]


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[1] != "agent":
        return parts[1]
    return "agent." + parts[2] if len(parts) > 3 or (
        len(parts) == 3 and f"agent.{parts[2]}" in ROOMS) else "agent"


def test_the_walk_sees_the_whole_package() -> None:
    assert len(MODULES) > 80
    assert "deskpilot.agent.loop" in GRAPH["deskpilot.agent.tasks.ask"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_package_imports_a_layer_above_it(module: str) -> None:
    mine = LAYERS.index(_layer(module))
    above = sorted(m for m in GRAPH[module] if LAYERS.index(_layer(m)) > mine
                   and (_room(module), _layer(m)) not in ALLOWED_UPWARDS)
    assert not above, f"{module} imports {above}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "agent"))
def test_no_room_of_agent_imports_a_room_after_it(module: str) -> None:
    mine = ROOMS.index(_room(module))
    later = sorted(m for m in GRAPH[module]
                   if _layer(m) == "agent" and ROOMS.index(_room(m)) > mine)
    assert not later, f"{module} imports {later}"


def test_no_modules_import_each_other_in_a_circle() -> None:
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_a_circle_would_be_found() -> None:
    saved = {k: set(v) for k, v in GRAPH.items()}
    try:
        GRAPH["deskpilot.grounding.geometry"].add("deskpilot.agent.loop")
        with pytest.raises(AssertionError):
            test_no_modules_import_each_other_in_a_circle()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_only_the_package_name_is_imported() -> None:
    """Nothing imports the folders by their repository names (``import agent``)."""
    bare = defaultdict(list)
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                    and node.level == 0 else
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            bare[name] += [m for m in mods if m.split(".")[0] in FOLDERS]
    assert not {k: v for k, v in bare.items() if v}
