"""Housekeeping of the rollups, the same call on both backends.

Plain PostgreSQL: partitions are made ahead, the hours that inserts marked dirty (whatever
their age) recomputed and expired partitions dropped, each step a short transaction of its
own; ``smartcity_maintain()`` does the same in one transaction (``history`` uses it).

TimescaleDB: the extension compresses and drops old chunks itself, but the continuous
aggregates are refreshed here, not by its refresh policies (revision 0009 removed them):
the hourly aggregate of each class first, then the daily one built on it, so a day is never
materialized from hours that are still filling; and on PostgreSQL 15.20 every TimescaleDB
2.28 background job ends marked failed and backs off (docs/storage.md). A refresh
re-materializes the buckets that late samples invalidated and the new ones. Ingest refreshes
the acceptance window (the last 91 days) every minute; ``history``, which writes any past
period, refreshes its own.

One maintainer at a time, and never during a migration: both take :data:`SCHEMA_LOCK`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from protocol.decoding import DEFAULT_WINDOW
from protocol.topics import DeviceClass
from storage.telemetry_sql import hourly_expressions, rollup_columns, select_list

SCHEMA_LOCK: Final = 7263001
"""Advisory lock key held by migrations and rollup refreshes."""
REFRESH_WINDOW: Final = DEFAULT_WINDOW.max_age + timedelta(days=1)
"""Ingest accepts samples up to 90 days old: its refreshes cover that, and a day more."""
GRAINS: Final = (("hourly", timedelta(hours=1)), ("daily", timedelta(days=1)))
"""In refresh order: each grain is built on the one before."""

Progress = Callable[[str], None]
Connection = psycopg.Connection[Any]


def uses_timescaledb(connection: Connection) -> bool:
    row = connection.execute("SELECT timescaledb FROM storage_backend").fetchone()
    return bool(row and row[0])


def maintain(connection: Connection, now: datetime | None = None) -> dict[str, object]:
    """One round of housekeeping; skipped when another maintainer or a migration runs.

    ``connection`` must be in autocommit mode (a TimescaleDB refresh cannot run inside a
    transaction), and should be a connection of its own: writers never wait for it. On plain
    PostgreSQL each step (partitions ahead, rollups, retention) of each class is a short
    transaction of its own, so a partition's lock is never held through a refresh. Returns a
    report for the log.
    """
    _require_autocommit(connection)
    if not _try_lock(connection):
        return {"skipped": "another maintenance or a migration holds the schema lock"}
    moment = now or datetime.now(UTC)
    try:
        if uses_timescaledb(connection):
            return {
                "backend": "timescaledb",
                "aggregates_refreshed": _refresh(connection, moment - REFRESH_WINDOW, None),
            }
        report: dict[str, object] = {"backend": "postgresql"}
        for device_class in DeviceClass:
            report[device_class.value] = _maintain_plain(connection, device_class.value, moment)
        return report
    finally:
        _unlock(connection)


def _maintain_plain(connection: Connection, device_class: str, now: datetime) -> dict[str, int]:
    """What ``smartcity_maintain()`` does for one class, one transaction per step."""
    steps = {
        "partitions_created": (
            "SELECT ensure_telemetry_partitions(%s, %s, %s)",
            (device_class, now - timedelta(days=1), now + timedelta(days=7)),
        ),
        "hours_rolled_up": ("SELECT refresh_rollups(%s)", (device_class,)),
        "partitions_dropped": ("SELECT drop_expired_partitions(%s, %s)", (device_class, now)),
    }
    done: dict[str, int] = {}
    for name, (statement, arguments) in steps.items():
        with connection.transaction():
            row = connection.execute(statement, arguments).fetchone()
        done[name] = int(row[0]) if row else 0
    return done


def refresh_period(
    connection: Connection, start: datetime, end: datetime, progress: Progress | None = None
) -> None:
    """Bring the rollups of samples written between ``start`` and ``end`` up to date, waiting
    for a maintainer that holds the lock. For writers of past periods (``history``).
    ``connection`` must be in autocommit mode."""
    _require_autocommit(connection)
    connection.execute(f"SELECT pg_advisory_lock({SCHEMA_LOCK})")
    try:
        if uses_timescaledb(connection):
            _refresh(connection, start, end, progress)
        else:
            if progress:
                progress("rolling up the hours written (plain PostgreSQL)")
            with connection.transaction():  # p_now = end: retention counts from the period
                connection.execute("SELECT smartcity_maintain(%s)", (end,))
    finally:
        _unlock(connection)


def materialize_new_aggregates(connection: Connection, progress: Progress) -> list[str]:
    """TimescaleDB: fill every continuous aggregate that has nothing materialized while its
    source has rows (a revision recreated it ``WITH NO DATA``), over all time, in grain order.
    Returns the aggregates filled. The caller holds :data:`SCHEMA_LOCK`."""
    filled = []
    for device_class in DeviceClass:
        table = f"telemetry_{device_class.value}"
        for grain, _ in GRAINS:
            view = f"{table}_{grain}"
            if _materialized_empty(connection, view) and _has_rows(connection, table):
                progress(f"materializing {view} over all stored samples")
                connection.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (view,)
                )
                filled.append(view)
    return filled


def _refresh(
    connection: Connection,
    start: datetime,
    end: datetime | None,
    progress: Progress | None = None,
) -> int:
    """Refresh each class's aggregates over [start, end) (end None: up to the newest sample),
    widened to whole buckets. Returns how many aggregates were refreshed."""
    count = 0
    for device_class in DeviceClass:
        for grain, width in GRAINS:
            view = f"telemetry_{device_class.value}_{grain}"
            if progress:
                progress(f"refreshing {view}")
            connection.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
                (view, *whole_buckets(start, end, width)),
            )
            count += 1
    return count


def _materialized_empty(connection: Connection, view: str) -> bool:
    row = connection.execute(
        "SELECT format('%%I.%%I', materialization_hypertable_schema,"
        " materialization_hypertable_name)"
        " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
        (view,),
    ).fetchone()
    if row is None:
        return False
    return not _has_rows(connection, row[0])


def _has_rows(connection: Connection, relation: str) -> bool:
    # The relation name comes from the catalogue or from the fixed class names.
    row = connection.execute(f"SELECT EXISTS (SELECT 1 FROM {relation})").fetchone()  # noqa: S608
    return bool(row and row[0])


def _require_autocommit(connection: Connection) -> None:
    if not connection.autocommit:
        raise ValueError("rollups are refreshed on a connection in autocommit mode")


def _try_lock(connection: Connection) -> bool:
    row = connection.execute(f"SELECT pg_try_advisory_lock({SCHEMA_LOCK})").fetchone()
    return bool(row and row[0])


def _unlock(connection: Connection) -> None:
    if connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
        connection.rollback()
    connection.execute(f"SELECT pg_advisory_unlock({SCHEMA_LOCK})")


_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday midnight: whole hours and days from here
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_END = datetime(9999, 1, 1, tzinfo=UTC)


def whole_buckets(
    start: datetime, end: datetime | None, width: timedelta
) -> tuple[datetime, datetime | None]:
    """[start, end) widened to whole UTC buckets of ``width`` (an hour or a day): a refresh
    covers only the buckets wholly inside its window. ``end`` None stays None."""
    low = start - (start - _EPOCH) % width
    if end is None:
        return low, None
    high = end - (end - _EPOCH) % width
    return low, high if high == end else high + width


def rollup_differences(
    connection: Connection,
    device_class: DeviceClass,
    grain: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    """How many (device, bucket) rows of a class's ``grain`` rollup differ from the same
    aggregates computed now from the raw rows in [start, end) (whole buckets; None: all time):
    a row missing on either side, or a value that differs by more than rounding."""
    width = dict(GRAINS)[grain]
    table = f"telemetry_{device_class.value}"
    metrics = [
        name
        for (name,) in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " AND column_name NOT IN ('ts', 'device_id') ORDER BY ordinal_position",
            (table,),
        )
    ]
    columns = rollup_columns(metrics)
    unit = "hour" if grain == "hourly" else "day"
    low, high = whole_buckets(start or _BEGINNING, end or _END, width)
    differs = " OR ".join(
        f"NOT (r.{c} IS NOT DISTINCT FROM a.{c}"
        f" OR abs(r.{c} - a.{c}) <= 1e-9 * greatest(1, abs(a.{c})))"
        for c in columns
    )
    query = f"""
        WITH recomputed AS (
            SELECT date_trunc('{unit}', ts, 'UTC') AS bucket, device_id,
                   {select_list(hourly_expressions(metrics, False), columns)}
            FROM {table} WHERE ts >= %(low)s AND ts < %(high)s
            GROUP BY 1, 2
        ), stored AS (
            SELECT * FROM {table}_{grain} WHERE bucket >= %(low)s AND bucket < %(high)s
        )
        SELECT count(*) FROM recomputed a FULL JOIN stored r USING (bucket, device_id)
        WHERE a.device_id IS NULL OR r.device_id IS NULL OR {differs}"""  # noqa: S608
    row = connection.execute(query, {"low": low, "high": high}).fetchone()
    return int(row[0]) if row else 0
