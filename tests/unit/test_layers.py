"""Each package imports only the packages below it (the layout table of the design)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
OURS: Final = frozenset(
    {"protocol", "edge_agents", "simulators", "broker_config", "ingest", "storage", "rules"}
    | {"smartcity", "bench", "api", "dashboards"}
)
MAY_IMPORT: Final = {
    "protocol": set(),
    "edge_agents": {"protocol"},
    "simulators": {"protocol", "edge_agents", "storage"},
    "broker_config": {"protocol"},
    "ingest": {"protocol", "storage"},
    "storage": {"protocol"},
    "rules": {"protocol", "storage"},
    "api": {"protocol", "storage", "rules", "simulators", "smartcity", "broker_config"},
    "dashboards": {"storage"},
}
"""``simulators`` writes its history and ground truth through ``storage`` (bulk COPY).
``api`` runs what-ifs (``smartcity.whatif``, which drives the building simulator) and checks
rule files against the simulator's fault types, as ``smartcity rules check`` does; it makes
device passwords in the broker's hash format (``broker_config.accounts``)."""
SHARED: Final = frozenset({"smartcity.logs"})
"""Modules any package may use: structured logging, a leaf importing nothing of ours."""


def imported_packages(package: str) -> dict[str, set[str]]:
    """Our top-level packages each module of ``package`` imports, by module path."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(_package(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [f"{node.module}.{alias.name}" for alias in node.names]
                names.add(_package(node.module, modules))
        found[str(path.relative_to(ROOT))] = names & OURS - {package}
    return found


def _package(module: str, names: list[str] | None = None) -> str:
    """The top-level package ``module`` belongs to, or "" for a shared module."""
    if module in SHARED or any(name in SHARED for name in names or ()):
        return ""
    return module.split(".", maxsplit=1)[0]


def test_the_shared_modules_import_nothing_of_ours() -> None:
    for module in SHARED:
        path = ROOT / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert imported & OURS == set(), module


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_package_imports_only_what_it_may(package: str) -> None:
    allowed = MAY_IMPORT[package]
    wrong = {
        module: sorted(names - allowed)
        for module, names in imported_packages(package).items()
        if names - allowed
    }
    assert wrong == {}, f"{package} may import only {sorted(allowed)}"
