"""SQL of the wide telemetry tables' rollups, generated from a class's list of metrics.

Migrations call these with the metric list as it stood when each was written (the first
creates the tables, a later one that adds a metric recreates what depends on the list), so a
migration keeps emitting the same SQL whatever the catalogue becomes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

AGGREGATES: Final = ("count", "sum", "min", "max", "last")

Metrics = Sequence[str]


def rollup_columns(metrics: Metrics) -> list[str]:
    return [f"{metric}_{aggregate}" for metric in metrics for aggregate in AGGREGATES]


def hourly_expressions(metrics: Metrics, timescale: bool, row: str = "") -> list[str]:
    """Aggregates of one hour of raw samples, metric by metric (NULLs are not samples)."""
    expressions = []
    for metric in metrics:
        column = f"{row}{metric}"
        last = (
            f"last({column}, {row}ts) FILTER (WHERE {column} IS NOT NULL)"
            if timescale
            else f"(array_agg({column} ORDER BY {row}ts DESC)"
            f" FILTER (WHERE {column} IS NOT NULL))[1]"
        )
        expressions += [
            f"count({column})",
            f"sum({column})",
            f"min({column})",
            f"max({column})",
            last,
        ]
    return expressions


def daily_expressions(metrics: Metrics, timescale: bool, row: str = "") -> list[str]:
    """Aggregates of a day of hourly aggregates."""
    expressions = []
    for metric in metrics:
        last_column = f"{row}{metric}_last"
        last = (
            f"last({last_column}, {row}bucket) FILTER (WHERE {last_column} IS NOT NULL)"
            if timescale
            else f"(array_agg({last_column} ORDER BY {row}bucket DESC)"
            f" FILTER (WHERE {last_column} IS NOT NULL))[1]"
        )
        expressions += [
            f"sum({row}{metric}_count)::bigint",
            f"sum({row}{metric}_sum)",
            f"min({row}{metric}_min)",
            f"max({row}{metric}_max)",
            last,
        ]
    return expressions


def select_list(expressions: list[str], columns: list[str]) -> str:
    return ",\n                   ".join(
        f"{e} AS {c}" for e, c in zip(expressions, columns, strict=True)
    )


def continuous_aggregates(table: str, metrics: Metrics) -> list[str]:
    """TimescaleDB: the hourly and daily continuous aggregates of ``table``."""
    columns = rollup_columns(metrics)
    return [
        f"""
            CREATE MATERIALIZED VIEW {table}_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, device_id,
                   {select_list(hourly_expressions(metrics, True), columns)}
            FROM {table} GROUP BY time_bucket(INTERVAL '1 hour', ts), device_id
            WITH NO DATA""",
        f"""
            CREATE MATERIALIZED VIEW {table}_daily
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket, device_id,
                   {select_list(daily_expressions(metrics, True), columns)}
            FROM {table}_hourly GROUP BY time_bucket(INTERVAL '1 day', bucket), device_id
            WITH NO DATA""",
    ]


def plain_refresh_function(device_class: str, metrics: Metrics, replace: bool = False) -> str:
    """Plain PostgreSQL: refresh_rollups_<class>() as migrations 0001 and 0006 made it (0007
    replaces it with :func:`day_by_day_refresh_function`), recomputing the hours marked dirty,
    then their days."""
    table = f"telemetry_{device_class}"
    columns = rollup_columns(metrics)
    column_list = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    create = "CREATE OR REPLACE FUNCTION" if replace else "CREATE FUNCTION"
    return f"""
        {create} refresh_rollups_{device_class}() RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            hours timestamptz[];
            days timestamptz[];
        BEGIN
            WITH taken AS (
                DELETE FROM rollup_dirty WHERE device_class = '{device_class}' RETURNING bucket
            ) SELECT array_agg(bucket) INTO hours FROM taken;
            IF hours IS NULL THEN
                RETURN 0;
            END IF;
            INSERT INTO {table}_hourly (bucket, device_id, {column_list})
            SELECT h.bucket, t.device_id,
                   {", ".join(hourly_expressions(metrics, False, "t."))}
            FROM unnest(hours) AS h(bucket)
            JOIN {table} t ON t.ts >= h.bucket AND t.ts < h.bucket + INTERVAL '1 hour'
            GROUP BY h.bucket, t.device_id
            ON CONFLICT (device_id, bucket) DO UPDATE SET {updates};
            SELECT array_agg(DISTINCT date_trunc('day', h, 'UTC')) INTO days FROM unnest(hours) h;
            INSERT INTO {table}_daily (bucket, device_id, {column_list})
            SELECT d.bucket, r.device_id,
                   {", ".join(daily_expressions(metrics, False, "r."))}
            FROM unnest(days) AS d(bucket)
            JOIN {table}_hourly r ON r.bucket >= d.bucket AND r.bucket < d.bucket + INTERVAL '1 day'
            GROUP BY d.bucket, r.device_id
            ON CONFLICT (device_id, bucket) DO UPDATE SET {updates};
            RETURN cardinality(hours);
        END $$"""


def _recompute_dirty_days(device_class: str, metrics: Metrics) -> str:
    """The PL/pgSQL loop both day-by-day refresh functions share: for each day holding one of
    ``hours`` (a timestamptz[] variable, the dirty hours), recompute those hours from the raw
    table (one partition read), then the day's daily rollup from its hourly rows."""
    table = f"telemetry_{device_class}"
    columns = rollup_columns(metrics)
    column_list = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return f"""            FOR day IN
                SELECT DISTINCT date_trunc('day', h, 'UTC') FROM unnest(hours) h ORDER BY 1
            LOOP
                INSERT INTO {table}_hourly (bucket, device_id, {column_list})
                SELECT date_trunc('hour', t.ts, 'UTC'), t.device_id,
                       {", ".join(hourly_expressions(metrics, False, "t."))}
                FROM {table} t
                WHERE t.ts >= day AND t.ts < day + INTERVAL '1 day'
                  AND date_trunc('hour', t.ts, 'UTC') = ANY(hours)
                GROUP BY 1, 2
                ON CONFLICT (device_id, bucket) DO UPDATE SET {updates};
                INSERT INTO {table}_daily (bucket, device_id, {column_list})
                SELECT day, r.device_id,
                       {", ".join(daily_expressions(metrics, False, "r."))}
                FROM {table}_hourly r
                WHERE r.bucket >= day AND r.bucket < day + INTERVAL '1 day'
                GROUP BY r.device_id
                ON CONFLICT (device_id, bucket) DO UPDATE SET {updates};
            END LOOP;
"""


def day_by_day_refresh_function(device_class: str, metrics: Metrics) -> str:
    """Plain PostgreSQL: refresh_rollups_<class>() as migration 0007 makes it, recomputing the
    hours marked dirty and their days, one day at a time.

    :func:`plain_refresh_function` joins the dirty hours to the raw table, which the planner
    can only do by reading every day partition once per dirty hour: a minute's two dirty hours
    read the whole retained history, and a 90-day backfill's 2,160 hours never finish. Here
    each day with dirty hours reads its own partition once (its bounds are known when the
    statement runs, so the others are pruned), and its hourly rollups once for the day.
    """
    return f"""
        CREATE OR REPLACE FUNCTION refresh_rollups_{device_class}() RETURNS integer
        LANGUAGE plpgsql AS $$
        DECLARE
            hours timestamptz[];
            day timestamptz;
        BEGIN
            WITH taken AS (
                DELETE FROM rollup_dirty WHERE device_class = '{device_class}' RETURNING bucket
            ) SELECT array_agg(bucket) INTO hours FROM taken;
            IF hours IS NULL THEN
                RETURN 0;
            END IF;
{_recompute_dirty_days(device_class, metrics)}            RETURN cardinality(hours);
        END $$"""


def refresh_by_generation_function(device_class: str, metrics: Metrics) -> str:
    """Plain PostgreSQL: refresh_rollups_<class>() as migration 0012 makes it: the hours of
    :func:`day_by_day_refresh_function`, but a writer never waits for the recompute.

    The older function deleted the dirty markers first, and a writer marking the same hour
    waited on that delete until the whole recompute committed (ingest's rows froze for
    seconds). Here the markers are read without a lock, the hours recomputed, and only then
    are the markers deleted, each only if no writer has marked it again since (its
    ``generation`` unchanged): those stay dirty for the next refresh. Markers are locked in
    hour order, as the marking trigger takes them, so the two cannot deadlock.
    """
    return f"""
        CREATE OR REPLACE FUNCTION refresh_rollups_{device_class}() RETURNS integer
        LANGUAGE plpgsql AS $$
        DECLARE
            hours timestamptz[];
            generations bigint[];
            day timestamptz;
        BEGIN
            SELECT array_agg(bucket ORDER BY bucket), array_agg(generation ORDER BY bucket)
            INTO hours, generations
            FROM rollup_dirty WHERE device_class = '{device_class}';
            IF hours IS NULL THEN
                RETURN 0;
            END IF;
{_recompute_dirty_days(device_class, metrics)}            PERFORM 1 FROM rollup_dirty
            WHERE device_class = '{device_class}' AND bucket = ANY(hours)
            ORDER BY bucket FOR UPDATE;
            DELETE FROM rollup_dirty d
            USING unnest(hours, generations) AS taken(bucket, generation)
            WHERE d.device_class = '{device_class}' AND d.bucket = taken.bucket
              AND d.generation = taken.generation;
            RETURN cardinality(hours);
        END $$"""


def union_views(metrics_by_class: Mapping[str, Metrics]) -> list[str]:
    """The narrow views ``telemetry``, ``telemetry_hourly`` and ``telemetry_daily`` over every
    class's wide tables."""

    def unpivot(device_class: str, source: str, select: str, values: str, keep: str) -> str:
        rows = ", ".join(values.format(m=m) for m in metrics_by_class[device_class])
        return (
            f"SELECT '{device_class}'::text AS device_class, {select}"
            f" FROM telemetry_{device_class}{source} t"
            f" CROSS JOIN LATERAL (VALUES {rows}) AS v"
            f" WHERE {keep}"
        )

    raw = [
        unpivot(
            c, "", "t.ts, t.device_id, v.metric, v.value", "('{m}', t.{m})", "v.value IS NOT NULL"
        )
        for c in metrics_by_class
    ]
    statements = [
        "CREATE VIEW telemetry (device_class, ts, device_id, metric, value) AS\n"
        + "\nUNION ALL\n".join(raw).replace(" AS v ", " AS v(metric, value) ")
    ]
    rollup_select = (
        "t.bucket, t.device_id, v.metric, v.sample_count, v.value_sum / v.sample_count,"
        " v.value_min, v.value_max, v.value_last, v.value_sum"
    )
    rollup_values = "('{m}', t.{m}_count, t.{m}_sum, t.{m}_min, t.{m}_max, t.{m}_last)"
    columns = (
        "device_class, bucket, device_id, metric, sample_count, value_avg, value_min,"
        " value_max, value_last, value_sum"
    )
    for grain in ("hourly", "daily"):
        parts = [
            unpivot(c, f"_{grain}", rollup_select, rollup_values, "v.sample_count > 0")
            for c in metrics_by_class
        ]
        statements.append(
            f"CREATE VIEW telemetry_{grain} ({columns}) AS\n"
            + "\nUNION ALL\n".join(parts).replace(
                " AS v ",
                " AS v(metric, sample_count, value_sum, value_min, value_max, value_last) ",
            )
        )
    return statements
