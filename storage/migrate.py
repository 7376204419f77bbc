"""Bring a database's schema up to date with alembic, the well-kept migration tool.

Migrations are plain SQL run through alembic's ``op.execute``: the platform has no ORM, and
alembic gives it revision tracking and ordering. Each revision runs in its own transaction, so
a revision that fails leaves the database at the revision before it, whole.

On TimescaleDB the extension's background jobs (compression, retention, and before revision
0009 the aggregates' refresh policies) would race a revision that changes what they work on:
seen as ``tuple concurrently deleted`` when a revision dropped an aggregate while its refresh
job ran. So a migration first pauses every job of the database and waits for those running,
runs the revisions, materializes the continuous aggregates a revision (re)created, and only
then schedules the jobs again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection

from storage.errors import MigrationError
from storage.rollups import SCHEMA_LOCK, materialize_new_aggregates

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
JOBS_WAIT_S = 120.0
"""How long a migration waits for TimescaleDB jobs already running before cancelling them."""

Progress = Callable[[str], None]

log = logging.getLogger(__name__)


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


def _revision_of(connection: Connection) -> str | None:
    context_log = logging.getLogger("alembic.runtime.migration")
    level = context_log.level
    context_log.setLevel(logging.WARNING)  # a look at the revision is not worth two log lines
    try:
        return MigrationContext.configure(connection).get_current_revision()
    finally:
        context_log.setLevel(level)


def migrate(database_url: str, revision: str = "head", progress: Progress | None = None) -> None:
    """Upgrade the database to ``revision``; a no-op when it is already there.

    Every failure is a :class:`MigrationError` naming the revision that failed; the revisions
    before it stay applied.
    """
    say = progress or log.info
    engine = sqlalchemy.create_engine(sqlalchemy_url(database_url), poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as connection, _schema_lock(connection):
            _upgrade(connection, revision, say)
            if _has_timescaledb(connection):
                connection.commit()
                with psycopg.connect(database_url, autocommit=True) as aggregates:
                    materialize_new_aggregates(aggregates, say)
    except MigrationError:
        raise
    except (sqlalchemy.exc.SQLAlchemyError, psycopg.Error, CommandError) as error:
        raise MigrationError(f"migration failed: {_first_line(error)}") from error
    finally:
        engine.dispose()


@contextmanager
def _schema_lock(connection: Connection) -> Iterator[None]:
    """Two processes migrating at once (two ingest workers starting) must not collide, and a
    rollup refresh must not run while a revision changes the aggregates: both take this lock."""
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({SCHEMA_LOCK})")
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEMA_LOCK})")
        connection.commit()


def _upgrade(connection: Connection, revision: str, say: Progress) -> None:
    config = _config()
    script = ScriptDirectory.from_config(config)
    target = script.get_current_head() if revision == "head" else revision
    before = _revision_of(connection)
    connection.commit()
    if before == target:
        _resume_jobs(connection)  # those a killed migration left paused
        return

    def applied(*, ctx: MigrationContext, **_: object) -> None:
        # In the revision's own transaction: the jobs a revision creates are paused with it,
        # before the scheduler can see them.
        if ctx.connection is not None and _has_timescaledb(ctx.connection):
            _pause_new_jobs(ctx.connection)

    config.attributes["connection"] = connection
    config.attributes["on_version_apply"] = applied
    try:
        if _has_timescaledb(connection):
            _pause_jobs(connection, say)
        say(f"migrating the schema from {before or 'an empty database'} to {target}")
        command.upgrade(config, revision)
        connection.commit()
    except (sqlalchemy.exc.SQLAlchemyError, psycopg.Error, RuntimeError) as error:
        connection.rollback()
        at = _revision_of(connection)
        connection.commit()
        raise MigrationError(
            f"migration failed at revision {_next_revision(script, at)}: {_first_line(error)}"
            f" (the schema stays at revision {at or 'none'})"
        ) from error
    finally:
        _resume_jobs(connection)


def _next_revision(script: ScriptDirectory, current: str | None) -> str:
    for candidate in script.walk_revisions():
        if candidate.down_revision == current:
            return candidate.revision
    return "?"


def _first_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _has_timescaledb(connection: Connection) -> bool:
    row = connection.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).scalar()
    return bool(row)


def _pause_new_jobs(connection: Connection) -> None:
    """Unschedule every scheduled job of the database, noting it in ``migration_paused_jobs``
    (in the caller's transaction), so that only the jobs a migration paused are resumed, even
    by the next migration if this one is killed."""
    connection.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS migration_paused_jobs (job_id integer PRIMARY KEY)"
    )
    connection.exec_driver_sql(
        "WITH paused AS (SELECT job_id, alter_job(job_id, scheduled => false)"
        " FROM timescaledb_information.jobs WHERE scheduled)"
        " INSERT INTO migration_paused_jobs SELECT job_id FROM paused ON CONFLICT DO NOTHING"
    )


def _resume_jobs(connection: Connection) -> None:
    """Schedule again the jobs that a migration paused."""
    connection.commit()
    if connection.exec_driver_sql("SELECT to_regclass('migration_paused_jobs')").scalar():
        connection.exec_driver_sql(
            "SELECT alter_job(job_id, scheduled => true) FROM migration_paused_jobs"
            " JOIN timescaledb_information.jobs USING (job_id)"
        )
        connection.exec_driver_sql("DELETE FROM migration_paused_jobs")
    connection.commit()


def _running_jobs(connection: Connection) -> list[tuple[int, str]]:
    rows = connection.exec_driver_sql(
        "SELECT a.pid, j.application_name FROM timescaledb_information.jobs j"
        " JOIN pg_stat_activity a ON a.application_name = j.application_name"
        " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
    ).all()
    connection.commit()
    return [(int(pid), str(name)) for pid, name in rows]


def _pause_jobs(connection: Connection, say: Progress) -> None:
    """Unschedule every job, then wait for those already running (cancelled after
    :data:`JOBS_WAIT_S`: a policy's work is transactional, and it runs again later)."""
    _pause_new_jobs(connection)
    connection.commit()
    deadline = time.monotonic() + JOBS_WAIT_S
    cancelled = False
    said = False
    while running := _running_jobs(connection):
        if not said:
            say("waiting for TimescaleDB jobs to finish: " + ", ".join(n for _, n in running))
            said = True
        if time.monotonic() > deadline:
            if cancelled:
                names = ", ".join(name for _, name in running)
                raise MigrationError(f"TimescaleDB jobs still running after cancel: {names}")
            for pid, name in running:
                say(f"cancelling TimescaleDB job {name}, still running after {JOBS_WAIT_S:.0f} s")
                connection.exec_driver_sql(f"SELECT pg_cancel_backend({pid})")
            connection.commit()
            cancelled = True
            deadline = time.monotonic() + 30
        time.sleep(0.5)
