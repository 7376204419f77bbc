"""Telemetry as the API reads it: the latest values of a device, and bucketed ranges of one
device or a group that read the rollups when the buckets allow.

The pure part plans a range (:func:`plan_range`): which bucket (given, or ``auto``: the finest
giving at most :data:`AUTO_TARGET_POINTS` points), which source (buckets of whole days read
``telemetry_<class>_daily``, of whole hours ``telemetry_<class>_hourly``, finer ones the raw
rows) and the range widened to whole buckets, since a rollup's hour or day cannot be split.
Buckets are UTC, on a grid starting at :data:`ORIGIN` (a Monday, so weeks start on Mondays).

The SQL reads the wide per-class tables (docs/storage.md): per bucket and device the statistic
the aggregate needs (raw: ``avg(m)``...; rollups: ``sum(m_sum) / sum(m_count)``...), then, for
a group, across devices (``across``) with the number of devices reporting. Raw and rollup
answers agree: an hourly average is the sample-weighted mean of the raw samples of the hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import psycopg
from psycopg import sql

from protocol.catalogue import CATALOGUE, Metric
from protocol.topics import DeviceClass

BUCKETS: Final[dict[str, int]] = {
    "1m": 60,
    "5m": 300,
    "10m": 600,
    "15m": 900,
    "30m": 1_800,
    "1h": 3_600,
    "2h": 7_200,
    "3h": 10_800,
    "6h": 21_600,
    "12h": 43_200,
    "1d": 86_400,
    "7d": 604_800,
}
"""Bucket widths by name [s], finest first."""
AUTO: Final = "auto"
AUTO_TARGET_POINTS: Final = 1_000
"""``auto`` chooses the finest bucket giving at most this many points."""
MAX_POINTS: Final = 5_000
"""A series of more buckets than this is refused: choose a wider bucket."""
RAW_MAX_RANGE: Final = timedelta(days=7)
"""``auto`` reads the rollups (buckets of whole hours at least) for ranges longer than this."""
MAX_METRICS: Final = 8
MAX_SERIES_DEVICES: Final = 100
"""Per-device series of a group are refused beyond this many devices."""
MAX_TOTAL_POINTS: Final = 200_000
"""Points of a response at most (buckets x metrics x series)."""
ORIGIN: Final = datetime(2000, 1, 3, tzinfo=UTC)
"""The bucket grid's origin: a Monday at midnight UTC."""
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)


class Source(StrEnum):
    RAW = "raw"
    HOURLY = "hourly"
    DAILY = "daily"


class Aggregate(StrEnum):
    """What one bucket of one device says of a metric."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    SUM = "sum"
    COUNT = "count"


class Across(StrEnum):
    """How a group's devices' values of one bucket are combined."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"


DEFAULT_ACROSS: Final = {
    Aggregate.AVG: Across.AVG,
    Aggregate.MIN: Across.MIN,
    Aggregate.MAX: Across.MAX,
    Aggregate.LAST: Across.AVG,
    Aggregate.SUM: Across.SUM,
    Aggregate.COUNT: Across.SUM,
}
"""The natural combination of each aggregate: the lowest minimum, the total count..."""


class RangeError(ValueError):
    """A range that cannot be answered; the message says what to change."""


@dataclass(frozen=True, slots=True)
class RangePlan:
    bucket: str
    bucket_s: int
    source: Source
    start: datetime
    """The requested start, floored to the bucket grid."""
    end: datetime
    """The requested end, ceiled to the bucket grid (exclusive)."""
    points: int
    """Buckets in [start, end)."""

    @property
    def stride(self) -> timedelta:
        return timedelta(seconds=self.bucket_s)


def source_for(bucket_s: int) -> Source:
    """The coarsest store whose buckets tile ``bucket_s`` exactly."""
    if bucket_s % 86_400 == 0:
        return Source.DAILY
    if bucket_s % 3_600 == 0:
        return Source.HOURLY
    return Source.RAW


def aligned(start: datetime, end: datetime, bucket_s: int) -> tuple[datetime, datetime]:
    """[start, end) widened to whole buckets of the grid."""
    first = (start - ORIGIN) // timedelta(seconds=bucket_s)
    last = -((ORIGIN - end) // timedelta(seconds=bucket_s))  # ceiling division
    return ORIGIN + first * timedelta(seconds=bucket_s), ORIGIN + last * timedelta(seconds=bucket_s)


def bucket_count(start: datetime, end: datetime, bucket_s: int) -> int:
    first, last = aligned(start, end, bucket_s)
    return (last - first) // timedelta(seconds=bucket_s)


def choose_bucket(start: datetime, end: datetime) -> str:
    """``auto``: the finest bucket giving at most :data:`AUTO_TARGET_POINTS` points (else at
    most :data:`MAX_POINTS`, for very long ranges), and at least an hour (the rollups) for
    ranges longer than :data:`RAW_MAX_RANGE`."""
    long_range = end - start > RAW_MAX_RANGE
    candidates = [
        (name, seconds)
        for name, seconds in BUCKETS.items()
        if not (long_range and source_for(seconds) is Source.RAW)
    ]
    for limit in (AUTO_TARGET_POINTS, MAX_POINTS):
        for name, seconds in candidates:
            if bucket_count(start, end, seconds) <= limit:
                return name
    widest, seconds = candidates[-1]
    longest = timedelta(seconds=seconds * MAX_POINTS)
    raise RangeError(
        f"the range of {_days(end - start)} is too long: at most {longest.days} days "
        f"(buckets of {widest})"
    )


def _days(length: timedelta) -> str:
    return f"{length / timedelta(days=1):,.1f} days"


def plan_range(start: datetime, end: datetime, bucket: str) -> RangePlan:
    """The bucket, source and aligned range of a request; :class:`RangeError` if refused."""
    if start.tzinfo is None or end.tzinfo is None:
        raise RangeError("give from and to with their time zone (2026-11-20T10:00:00Z)")
    if start >= end:
        raise RangeError(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    if start < EARLIEST or end > LATEST:
        raise RangeError(f"from and to must lie between {EARLIEST.date()} and {LATEST.date()}")
    name = choose_bucket(start, end) if bucket == AUTO else bucket
    seconds = BUCKETS.get(name)
    if seconds is None:
        raise RangeError(f"unknown bucket {bucket!r}; use auto or one of {', '.join(BUCKETS)}")
    points = bucket_count(start, end, seconds)
    if points > MAX_POINTS:
        raise RangeError(
            f"{points} buckets of {name} in this range, more than {MAX_POINTS}: choose a wider "
            "bucket, a shorter range, or bucket=auto"
        )
    first, last = aligned(start, end, seconds)
    return RangePlan(name, seconds, source_for(seconds), first, last, points)


def check_metrics(device_class: DeviceClass, metrics: Sequence[str]) -> list[Metric]:
    """The catalogue entries of ``metrics`` for the class, each once; RangeError otherwise."""
    if not metrics:
        raise RangeError("name at least one metric (metric=battery_soc)")
    unique = list(dict.fromkeys(metrics))
    if len(unique) > MAX_METRICS:
        raise RangeError(f"{len(unique)} metrics asked; at most {MAX_METRICS} per request")
    known = CATALOGUE[device_class].metrics
    unknown = [name for name in unique if name not in known]
    if unknown:
        raise RangeError(
            f"a {device_class} reports no {', '.join(map(repr, unknown))}; "
            f"its metrics: {', '.join(known)}"
        )
    return [known[name] for name in unique]


def check_size(plan: RangePlan, metrics: int, series_devices: int) -> None:
    """Refuse a response of more than :data:`MAX_TOTAL_POINTS` points (per-device series)."""
    if series_devices > MAX_SERIES_DEVICES:
        raise RangeError(
            f"per-device series for {series_devices} devices: at most {MAX_SERIES_DEVICES}; "
            "choose a smaller group"
        )
    total = plan.points * metrics * max(1, series_devices)
    if total > MAX_TOTAL_POINTS:
        raise RangeError(
            f"{total} points asked (buckets x metrics x devices), more than {MAX_TOTAL_POINTS}:"
            " choose a wider bucket, fewer metrics or a smaller group"
        )


# ----------------------------------------------------------------------------- SQL


def _raw_statistic(metric: str, aggregate: Aggregate) -> sql.Composable:
    column = sql.Identifier(metric)
    if aggregate is Aggregate.LAST:
        return sql.SQL(
            "(array_agg({c} ORDER BY ts DESC) FILTER (WHERE {c} IS NOT NULL))[1]"
        ).format(c=column)
    return sql.SQL("{}({})::double precision").format(sql.SQL(aggregate.value), column)


def _rollup_statistic(metric: str, aggregate: Aggregate) -> sql.Composable:
    def col(suffix: str) -> sql.Identifier:
        return sql.Identifier(f"{metric}_{suffix}")

    match aggregate:
        case Aggregate.AVG:
            return sql.SQL("sum({})::double precision / nullif(sum({}), 0)").format(
                col("sum"), col("count")
            )
        case Aggregate.MIN:
            return sql.SQL("min({})").format(col("min"))
        case Aggregate.MAX:
            return sql.SQL("max({})").format(col("max"))
        case Aggregate.SUM:
            return sql.SQL("sum({})").format(col("sum"))
        case Aggregate.COUNT:
            return sql.SQL("sum({})::double precision").format(col("count"))
        case Aggregate.LAST:
            return sql.SQL(
                "(array_agg({c} ORDER BY bucket DESC) FILTER (WHERE {c} IS NOT NULL))[1]"
            ).format(c=col("last"))


def _samples(metric: str, source: Source) -> sql.Composable:
    """How many samples of ``metric`` a device had in the bucket (whether it reported)."""
    if source is Source.RAW:
        return sql.SQL("count({})").format(sql.Identifier(metric))
    return sql.SQL("coalesce(sum({}), 0)").format(sql.Identifier(f"{metric}_count"))


def per_device_sql(
    device_class: DeviceClass, metrics: Sequence[str], source: Source, aggregate: Aggregate
) -> sql.Composed:
    """Rows (bucket, device_id, v0, n0, v1, n1...): value and samples of each metric per
    bucket and device, for %(devices)s over [%(start)s, %(end)s) in buckets of %(stride)s."""
    if source is Source.RAW:
        table = sql.Identifier(f"telemetry_{device_class.value}")
        time_column = sql.Identifier("ts")
        statistic = _raw_statistic
    else:
        table = sql.Identifier(f"telemetry_{device_class.value}_{source.value}")
        time_column = sql.Identifier("bucket")
        statistic = _rollup_statistic
    columns = sql.SQL(", ").join(
        sql.SQL("{} AS {}, {} AS {}").format(
            statistic(metric, aggregate),
            sql.Identifier(f"v{index}"),
            _samples(metric, source),
            sql.Identifier(f"n{index}"),
        )
        for index, metric in enumerate(metrics)
    )
    return sql.SQL(
        "SELECT date_bin(%(stride)s, {t}, %(origin)s) AS slot, device_id, {columns}"
        " FROM {table} WHERE device_id = ANY(%(devices)s) AND {t} >= %(start)s AND {t} < %(end)s"
        " GROUP BY 1, 2"
    ).format(t=time_column, columns=columns, table=table)


def group_sql(per_device: sql.Composed, metrics: int, across: Across) -> sql.Composed:
    """Rows (bucket, v0, d0, v1, d1...): the devices' values combined, and how many devices
    reported each metric, per bucket."""
    columns = sql.SQL(", ").join(
        sql.SQL(
            "{f}({v}) FILTER (WHERE {n} > 0) AS {v}, count(*) FILTER (WHERE {n} > 0) AS {d}"
        ).format(
            f=sql.SQL(across.value),
            v=sql.Identifier(f"v{index}"),
            n=sql.Identifier(f"n{index}"),
            d=sql.Identifier(f"d{index}"),
        )
        for index in range(metrics)
    )
    return sql.SQL(
        "WITH per_device AS ({per_device}) SELECT slot, {columns} FROM per_device"
        " GROUP BY slot ORDER BY slot"
    ).format(per_device=per_device, columns=columns)


@dataclass(frozen=True, slots=True)
class Point:
    bucket: datetime
    value: float | None
    devices: int


@dataclass(frozen=True, slots=True)
class Series:
    metric: str
    device_id: str | None
    """None: the group's (or the single device's) series."""
    points: list[Point]


def _params(plan: RangePlan, device_ids: Sequence[str]) -> dict[str, Any]:
    return {
        "stride": plan.stride,
        "origin": ORIGIN,
        "devices": list(device_ids),
        "start": plan.start,
        "end": plan.end,
    }


def read_series(
    connection: psycopg.Connection[Any],
    device_class: DeviceClass,
    device_ids: Sequence[str],
    metrics: Sequence[str],
    plan: RangePlan,
    *,
    aggregate: Aggregate,
    across: Across,
) -> list[Series]:
    """One series per metric, the devices combined per bucket (buckets without a sample of the
    metric are left out)."""
    per_device = per_device_sql(device_class, metrics, plan.source, aggregate)
    rows = connection.execute(
        group_sql(per_device, len(metrics), across), _params(plan, device_ids)
    ).fetchall()
    series = []
    for index, metric in enumerate(metrics):
        points = [
            Point(row[0], _number(row[1 + 2 * index]), int(row[2 + 2 * index]))
            for row in rows
            if row[2 + 2 * index]
        ]
        series.append(Series(metric, None, points))
    return series


def read_device_series(
    connection: psycopg.Connection[Any],
    device_class: DeviceClass,
    device_ids: Sequence[str],
    metrics: Sequence[str],
    plan: RangePlan,
    *,
    aggregate: Aggregate,
) -> list[Series]:
    """One series per metric and device (device by device, then metric by metric)."""
    per_device = per_device_sql(device_class, metrics, plan.source, aggregate)
    rows = connection.execute(
        sql.SQL("{} ORDER BY device_id, slot").format(per_device), _params(plan, device_ids)
    ).fetchall()
    found: dict[tuple[str, str], list[Point]] = {}
    for row in rows:
        slot, device_id = row[0], row[1]
        for index, metric in enumerate(metrics):
            if row[3 + 2 * index]:
                point = Point(slot, _number(row[2 + 2 * index]), 1)
                found.setdefault((device_id, metric), []).append(point)
    return [
        Series(metric, device_id, found.get((device_id, metric), []))
        for device_id in device_ids
        for metric in metrics
    ]


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LatestValue:
    metric: str
    ts: datetime
    value: float


def latest_values(
    connection: psycopg.Connection[Any], device_class: DeviceClass, device_id: str
) -> list[LatestValue]:
    """The newest value of every metric the device reported, by metric name.

    The same answer as :func:`storage.queries.latest_values`, from the device's own class
    table: each metric's newest non-null value, looked for from the newest day whose daily
    rollup counts a sample of it (the rollups trail the raw rows, so that day is never later
    than the newest sample), so a metric the device stopped reporting long ago does not make
    the query read the device's whole history."""
    table = sql.Identifier(f"telemetry_{device_class.value}")
    daily = sql.Identifier(f"telemetry_{device_class.value}_daily")
    parts = [
        sql.SQL(
            "(SELECT {name}::text, ts, {c}::double precision FROM {table}"
            " WHERE device_id = %(id)s AND {c} IS NOT NULL AND ts >= coalesce("
            "(SELECT max(bucket) FROM {daily} WHERE device_id = %(id)s AND {n} > 0),"
            " '-infinity') ORDER BY ts DESC LIMIT 1)"
        ).format(
            name=sql.Literal(metric),
            c=sql.Identifier(metric),
            n=sql.Identifier(f"{metric}_count"),
            table=table,
            daily=daily,
        )
        for metric in sorted(CATALOGUE[device_class].metrics)
    ]
    rows = connection.execute(sql.SQL(" UNION ALL ").join(parts), {"id": device_id}).fetchall()
    return sorted((LatestValue(*row) for row in rows), key=lambda value: value.metric)
