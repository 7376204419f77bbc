"""The schema revision this code needs, and the one a database is at, without alembic.

Every service checks the schema before it starts; loading alembic and SQLAlchemy for that
costs each of them 44 MiB of memory for as long as it runs. The head is read from the
migration files themselves (``revision`` and ``down_revision``, the lines alembic reads), and
the database's revision from alembic's own table. :mod:`storage.migrate` applies migrations.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Final

import psycopg
from psycopg import errors

VERSIONS_DIR: Final = Path(__file__).resolve().parent / "migrations" / "versions"


@cache
def head_revision() -> str | None:
    """The newest revision: the one no other revision follows (None with no migration)."""
    following: dict[str, str | None] = {}
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        assigned = _assignments(path)
        if "revision" in assigned:
            following[str(assigned["revision"])] = assigned.get("down_revision")
    heads = set(following) - set(following.values())
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have several heads: {sorted(heads)}")
    return heads.pop() if heads else None


def _assignments(path: Path) -> dict[str, str | None]:
    """The module-level ``revision`` and ``down_revision`` of a migration file."""
    found: dict[str, str | None] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets: list[ast.expr] = (
                node.targets if isinstance(node, ast.Assign) else [node.target]
            )
            names = [target.id for target in targets if isinstance(target, ast.Name)]
            for name in {"revision", "down_revision"}.intersection(names):
                if isinstance(node.value, ast.Constant):
                    value = node.value.value
                    found[name] = None if value is None else str(value)
    return found


def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except errors.UndefinedTable:
            return None
    return None if row is None else str(row[0])
