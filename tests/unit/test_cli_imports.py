"""The command line imports a command's work only when that command runs.

``smartcity --help`` (and the start of every command) must not pay for pandas, FastAPI, the
database driver or the MQTT client; each command imports what it needs inside its function.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import typer
from typer.core import TyperGroup, TyperOption

from smartcity.cli import app

ROOT: Final = Path(__file__).resolve().parents[2]
HEAVY: Final = (
    "alembic",
    "apprise",
    "cryptography",
    "fastapi",
    "grafana_client",
    "msgspec",
    "numpy",
    "paho",
    "pandas",
    "psycopg",
    "pvlib",
    "pydantic",
    "scipy",
    "sqlalchemy",
    "yaml",
)
"""Packages a command may need but the command line itself must not load."""


def modules_loaded_by(code: str) -> set[str]:
    """The top-level packages in ``sys.modules`` after a fresh interpreter runs ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"  # noqa: E501
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_command_line_loads_none_of_the_heavy_packages() -> None:
    loaded = modules_loaded_by("import smartcity.cli")
    assert loaded & set(HEAVY) == set()
    assert "typer" in loaded  # the probe sees what is imported


def test_help_answers_without_loading_them() -> None:
    code = (
        "import sys\nfrom smartcity.cli import app\n"
        "try:\n    app(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert modules_loaded_by(code) & set(HEAVY) == set()


def test_a_command_imports_its_work_when_it_runs() -> None:
    code = (
        "from smartcity.cli import app\n"
        "try:\n    app(['rules', 'check', 'rules/default_rules.yaml'], standalone_mode=False)\n"
        "except SystemExit:\n    pass"
    )
    assert "yaml" in modules_loaded_by(code)


def _options_with_computed_defaults() -> Iterator[tuple[str, TyperOption]]:
    def walk(command: Any, path: str) -> Iterator[tuple[str, TyperOption]]:
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}")
        for param in command.params:
            if isinstance(param, TyperOption) and callable(param.default):
                yield path, param

    yield from walk(typer.main.get_command(app), "smartcity")


def shown(value: object) -> str:
    """A default as a help text writes it: a path from the project's root, a number short."""
    if isinstance(value, Path):
        return str(value.relative_to(ROOT))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


COMPUTED: Final = list(_options_with_computed_defaults())


def test_some_options_have_computed_defaults() -> None:
    assert len(COMPUTED) >= 3


@pytest.mark.parametrize(("command", "option"), COMPUTED, ids=[c for c, _ in COMPUTED])
def test_an_option_whose_default_is_computed_names_it_in_its_help(
    command: str, option: TyperOption
) -> None:
    """A default read lazily from the code that owns it is still shown to the user, right."""
    assert callable(option.default)
    assert f"[default: {shown(option.default())}]" in (option.help or ""), command
