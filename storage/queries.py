"""Queries shared by the services, the same on TimescaleDB and on plain PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True, slots=True)
class LatestValue:
    metric: str
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class RollupPoint:
    bucket: datetime
    sample_count: int
    average: float
    minimum: float
    maximum: float
    last: float


def latest_values(connection: psycopg.Connection, device_id: str) -> list[LatestValue]:
    """The newest value of every metric a device has reported."""
    rows = connection.execute(
        """
        SELECT DISTINCT ON (metric) metric, ts, value
        FROM telemetry WHERE device_id = %s
        ORDER BY metric, ts DESC
        """,
        (device_id,),
    ).fetchall()
    return [LatestValue(*row) for row in rows]


def rollup_series(
    connection: psycopg.Connection,
    device_id: str,
    metric: str,
    *,
    start: datetime,
    end: datetime,
    grain: str = "hourly",
) -> list[RollupPoint]:
    """Hourly or daily aggregates of one metric of one device over [start, end)."""
    view = {"hourly": "telemetry_hourly", "daily": "telemetry_daily"}.get(grain)
    if view is None:
        raise ValueError(f"grain must be hourly or daily, not {grain!r}")
    rows = connection.execute(
        f"""
        SELECT bucket, sample_count, value_avg, value_min, value_max, value_last
        FROM {view}
        WHERE device_id = %s AND metric = %s AND bucket >= %s AND bucket < %s
        ORDER BY bucket
        """,  # noqa: S608 - the view name comes from the fixed mapping above
        (device_id, metric, start, end),
    ).fetchall()
    return [RollupPoint(*row) for row in rows]
