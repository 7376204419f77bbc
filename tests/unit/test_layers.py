"""The layout of the house: each top-level folder is one system and imports only the rooms the
design's table allows (``DESIGN.md``, "Layout (top level)"); no module imports itself back
through others.

Every import counts, those inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
MAY_IMPORT: Final[Mapping[str, frozenset[str]]] = {
    "protocol": frozenset(),
    "runtime": frozenset({"protocol", "broker_config"}),
    "edge_agents": frozenset({"protocol"}),
    "simulators": frozenset({"protocol", "runtime", "edge_agents", "storage"}),
    "broker_config": frozenset({"protocol"}),
    "storage": frozenset({"protocol"}),
    "ingest": frozenset({"protocol", "runtime", "storage"}),
    "alerts": frozenset({"protocol", "storage"}),
    "rules": frozenset({"protocol", "runtime", "storage", "alerts"}),
    "control": frozenset({"protocol", "runtime", "storage", "alerts"}),
    "field_ops": frozenset({"protocol", "storage", "alerts"}),
    "whatif": frozenset({"protocol", "edge_agents", "simulators", "control"}),
    "api": frozenset(
        {"protocol", "runtime", "storage", "alerts", "rules", "control", "whatif", "broker_config"}
        | {"field_ops"}
    ),
    "dashboards": frozenset({"protocol", "storage"}),
    "smartcity": frozenset(
        {"protocol", "runtime", "edge_agents", "simulators", "broker_config", "storage"}
        | {"ingest", "alerts", "rules", "control", "whatif", "api", "dashboards", "bench"}
        | {"field_ops"}
    ),
    "bench": frozenset(
        {"protocol", "runtime", "edge_agents", "simulators", "broker_config", "storage"}
        | {"ingest", "alerts", "rules", "control", "whatif", "api", "dashboards"}
        | {"field_ops"}
    ),
    "sites": frozenset(),
}
"""The design's table: each room and the rooms it may import."""
ROOMS: Final = frozenset(MAY_IMPORT)


def _modules() -> Iterator[tuple[str, Path]]:
    for room in sorted(ROOMS):
        for path in sorted((ROOT / room).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


@cache
def import_graph() -> Mapping[str, frozenset[str]]:
    """Each of our modules and the modules of ours it imports (a package import counts as its
    ``__init__``; ``from package import module`` as that module)."""
    modules = dict(_modules())
    graph: dict[str, frozenset[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    imported.add(submodule if submodule in modules else node.module)
        graph[name] = frozenset(m for m in imported if m in modules and m != name)
    return graph


def room_of(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def circles(graph: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_top_level_folder_with_code_is_a_room_of_the_table() -> None:
    folders = {
        path.parent.name
        for path in ROOT.glob("*/*.py")
        if path.parent.name not in {"tests", "docs", "scripts", ".venv"}
    }
    assert folders - ROOMS == set()


@pytest.mark.parametrize("room", sorted(ROOMS - {"sites"}))
def test_room_imports_only_the_rooms_below_it(room: str) -> None:
    allowed = MAY_IMPORT[room] | {room}
    wrong = {
        module: sorted(room_of(other) for other in imported if room_of(other) not in allowed)
        for module, imported in import_graph().items()
        if room_of(module) == room
    }
    assert {module: rooms for module, rooms in wrong.items() if rooms} == {}, (
        f"{room} may import only {sorted(MAY_IMPORT[room])}"
    )


def test_no_room_imports_a_higher_room() -> None:
    """The table is a ladder: a room's allowed rooms never allow it back."""
    upward = {
        (room, other)
        for room, allowed in MAY_IMPORT.items()
        for other in allowed
        if room in MAY_IMPORT[other]
    }
    assert upward == set()


def test_the_readme_layout_table_says_the_same() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said: dict[str, frozenset[str]] = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].rstrip("`").endswith("/"):
            room, allowed = cells[0].strip("`/"), cells[2]
            if room in ROOMS:
                if allowed == "everything":
                    said[room] = ROOMS - {room, "sites"}
                elif allowed == "everything but smartcity":
                    said[room] = ROOMS - {room, "sites", "smartcity"}
                elif allowed in {"-", "nothing of ours"}:
                    said[room] = frozenset()
                else:
                    said[room] = frozenset(name.strip() for name in allowed.split(","))
    assert said == MAY_IMPORT


def test_there_is_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a.x": frozenset({"a.y"}), "a.y": frozenset({"b.z"}), "b.z": frozenset({"a.x"})}
    assert circles({**graph, "c.w": frozenset({"a.x"})}) == [["a.x", "a.y", "b.z"]]


def test_the_import_graph_sees_lazy_and_package_imports() -> None:
    graph = import_graph()
    assert "runtime.logs" in graph["ingest.store_process"]
    assert "whatif.hvac" in graph["api.routes.strategies"]  # imported inside a function
    assert {"alerts.lifecycle", "alerts.store"} <= graph["api.routes.alerts"]  # from alerts import
