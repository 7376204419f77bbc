"""Bring a database's schema up to date with alembic, the well-kept migration tool.

Migrations are plain SQL run through alembic's ``op.execute``: the platform has no ORM, and
alembic gives it revision tracking, ordering and locking-safe upgrades for free.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """The same database URL, naming psycopg 3 as SQLAlchemy's driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url.removeprefix(prefix)
    raise MigrationError(
        "DATABASE_URL must start with postgresql:// (for example "
        "postgresql://smartcity@127.0.0.1:5432/smartcity)"
    )


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(database_url: str) -> str | None:
    engine = sqlalchemy.create_engine(sqlalchemy_url(database_url), poolclass=sqlalchemy.NullPool)
    context_log = logging.getLogger("alembic.runtime.migration")
    level = context_log.level
    context_log.setLevel(logging.WARNING)  # a look at the revision is not worth two log lines
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        context_log.setLevel(level)
        engine.dispose()


def migrate(database_url: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision``; a no-op when it is already there."""
    engine = sqlalchemy.create_engine(sqlalchemy_url(database_url), poolclass=sqlalchemy.NullPool)
    config = _config()
    try:
        with engine.begin() as connection:
            # Two processes migrating at once (two ingest workers starting) must not collide.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7263001)")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError) as error:
        raise MigrationError(f"migration failed: {error}") from error
    finally:
        engine.dispose()
