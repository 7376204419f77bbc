"""``smartcity db``: the schema and its housekeeping."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    pass
import typer

from smartcity.cli_support import (
    fail,
    load_settings,
    parse_moment,
    progress_to_stderr,
    require_database_url,
)

db_app = typer.Typer(help="Database schema and housekeeping.", no_args_is_help=True)


@db_app.command("migrate")
def db_migrate() -> None:
    """Bring the schema up to date (TimescaleDB is used when installed).

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity smartcity db migrate
    """
    import psycopg

    from storage.errors import MigrationError
    from storage.migrate import migrate
    from storage.revision import current_revision

    url = require_database_url(load_settings())
    try:
        migrate(url, progress=progress_to_stderr)
        revision = current_revision(url)
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT timescaledb FROM storage_backend").fetchone()
    except (MigrationError, psycopg.Error) as error:
        raise fail(str(error)) from error
    backend = "TimescaleDB" if row and row[0] else "plain PostgreSQL"
    typer.echo(f"schema at revision {revision} ({backend})")


@db_app.command("maintain")
def db_maintain() -> None:
    """Refresh the rollups of recent samples (the last 91 days), and on plain PostgreSQL also
    create partitions ahead and drop expired ones (TimescaleDB's own jobs do that there).
    Ingest runs it every minute.

    Example: smartcity db maintain
    """
    import psycopg

    from storage.rollups import maintain

    url = require_database_url(load_settings())
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            report = maintain(connection)
    except psycopg.Error as error:
        raise fail(f"{error}".strip() + " (has `smartcity db migrate` run?)") from error
    typer.echo(json.dumps(report))


@db_app.command("check-rollups")
def db_check_rollups(
    start: Annotated[
        str | None, typer.Option("--from", help="First instant (ISO; UTC if no zone).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End, excluded (ISO; UTC if no zone).")
    ] = None,
) -> None:
    """Compare every hourly and daily rollup with the same aggregates computed from the raw
    samples; exit 1 when any (device, bucket) differs. Run `smartcity db maintain` first:
    rollups of late samples trail by up to a maintenance interval.

    Example: smartcity db check-rollups --from 2026-11-01 --to 2026-11-08
    """
    import psycopg

    from protocol.topics import DeviceClass
    from storage.rollups import GRAINS, rollup_differences

    url = require_database_url(load_settings())
    first = parse_moment(start, "--from") if start else None
    last = parse_moment(end, "--to") if end else None
    total = 0
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            for device_class in DeviceClass:
                for grain, _ in GRAINS:
                    found = rollup_differences(connection, device_class, grain, first, last)
                    typer.echo(f"{device_class.value:<12} {grain:<7} {found} rows differ")
                    total += found
    except psycopg.Error as error:
        raise fail(f"{error}".strip() + " (has `smartcity db migrate` run?)") from error
    typer.echo(f"{total} differences in all")
    if total:
        raise typer.Exit(code=1)
