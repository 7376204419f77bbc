"""Dashboards as values: panels, their queries and variables, and the tiers long ranges read.

A dashboard here is plain data; :mod:`dashboards.render` turns it into Grafana's JSON model.
Queries are SQL with Grafana's PostgreSQL macros (``$__timeFilter(col)``...) and template
variables (``$device``), nothing else, so the same text runs on TimescaleDB and on plain
PostgreSQL once Grafana (or :mod:`dashboards.macros`) has expanded them.

**Long ranges read the aggregates.** A :class:`Tiered` query is one SQL text written once for
every :class:`Tier` (raw samples, hourly rollups, daily rollups) and glued with ``UNION ALL``;
each branch is guarded by the length of the dashboard's time range, for example
``WHERE ('2026-11-28T00:00:00Z'::timestamptz - '2026-11-26T00:00:00Z'::timestamptz)
<= interval '2 days'``. Once the macros are expanded the guard is a constant: PostgreSQL
folds it while planning and does not plan the branches that do not apply (a branch of scalar
subqueries is planned, and never executed).
"""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from dashboards.fleet import SAMPLE_INTERVAL_S

DATASOURCE_UID: Final = "smartcity-postgres"
"""The uid the provisioning file gives the PostgreSQL datasource; every panel names it."""
DATASOURCE_TYPE: Final = "grafana-postgresql-datasource"
RANGE_SPAN: Final = "($__timeTo()::timestamptz - $__timeFrom()::timestamptz)"
"""The length of the dashboard's time range, as SQL the macros turn into a constant."""
BIN_ORIGIN: Final = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
"""Where time buckets are counted from: a UTC midnight, so hours and days are UTC ones."""


def time_column(column: str, every: str | None = None) -> str:
    """The start of the time bucket ``column`` falls in, as Grafana's ``time`` column.

    every: a fixed bucket (an SQL interval such as ``1 hour``); by default the panel's
    ``$__interval``. ``date_bin`` rather than ``$__timeGroupAlias``: the macro floors epoch
    seconds as ``numeric`` on plain PostgreSQL, which costs twice as much on a day of the
    fleet's samples, and becomes ``time_bucket`` only where TimescaleDB is declared."""
    stride = "interval '1 millisecond' * $__interval_ms" if every is None else f"interval '{every}'"
    return f'date_bin({stride}, {column}, {BIN_ORIGIN}) AS "time"'


def complete_slots(every: str) -> str:
    """The buckets of length ``every`` lying wholly inside the range, as a ``slot("time")`` row
    source: a bucket with nothing in it then gives a row of zero, not a gap Grafana would draw
    a line across, and the range's cut-off ends give no misleadingly low bucket.

    every: in minutes or hours (``24 hours``, not ``1 day``, which a time zone with summer time
    would make 23 or 25 hours long)."""
    step = f"interval '{every}'"
    first = f"date_bin({step}, $__timeFrom()::timestamptz - interval '1 microsecond', {BIN_ORIGIN})"
    last = f"$__timeTo()::timestamptz - {step}"
    return f'generate_series({first} + {step}, {last}, {step}) AS slot("time")'


@dataclass(frozen=True, slots=True)
class Tier:
    """Where a query reads telemetry: raw samples, or a rollup of them.

    The methods spell one aggregate in this tier's columns so that a query written once gives
    the same figure from raw rows and from rollups: ``mean("battery_soc")`` is
    ``avg(t.battery_soc)`` on raw rows and ``sum(t.battery_soc_sum) /
    nullif(sum(t.battery_soc_count), 0)`` on a rollup (rollup columns: docs/storage.md).
    """

    name: str
    suffix: str
    """Appended to ``telemetry_<class>`` to name this tier's table."""
    up_to: str | None
    """The longest time range this tier serves when a coarser tier follows it [SQL interval];
    None for the coarsest tier, which serves every longer range."""

    @property
    def is_raw(self) -> bool:
        return self.suffix == ""

    @property
    def time(self) -> str:
        """The time column: a sample's ``ts``, or the start of a rollup's ``bucket``."""
        return "ts" if self.is_raw else "bucket"

    def row_seconds(self, device_class: str) -> int:
        """How long one row stands for [s]: a sample's reporting interval, or the bucket."""
        if self.is_raw:
            return SAMPLE_INTERVAL_S[device_class]
        return 3_600 if self.name == "hourly" else 86_400

    def table(self, device_class: str) -> str:
        return f"telemetry_{device_class}{self.suffix}"

    def mean(self, metric: str, row: str = "t") -> str:
        if self.is_raw:
            return f"avg({row}.{metric})"
        return f"sum({row}.{metric}_sum) / nullif(sum({row}.{metric}_count), 0)"

    def total(self, metric: str, row: str = "t") -> str:
        return f"sum({self.row_sum(metric, row)})"

    def samples(self, metric: str, row: str = "t") -> str:
        """How many samples carried ``metric``."""
        return f"count({row}.{metric})" if self.is_raw else f"sum({row}.{metric}_count)"

    def lowest(self, metric: str, row: str = "t") -> str:
        return f"min({self.row_low(metric, row)})"

    def highest(self, metric: str, row: str = "t") -> str:
        return f"max({self.row_high(metric, row)})"

    def row_sum(self, metric: str, row: str = "t") -> str:
        """One row's contribution to a sum: the sample's value, or the rollup's sum."""
        return f"{row}.{metric}" if self.is_raw else f"{row}.{metric}_sum"

    def row_count(self, metric: str, row: str = "t") -> str:
        """One row's number of samples carrying ``metric``."""
        if self.is_raw:
            return f"({row}.{metric} IS NOT NULL)::int"
        return f"{row}.{metric}_count"

    def row_low(self, metric: str, row: str = "t") -> str:
        return f"{row}.{metric}" if self.is_raw else f"{row}.{metric}_min"

    def row_high(self, metric: str, row: str = "t") -> str:
        return f"{row}.{metric}" if self.is_raw else f"{row}.{metric}_max"


RAW: Final = Tier("raw", "", up_to="2 days")
HOURLY: Final = Tier("hourly", "_hourly", up_to="7 days")
DAILY: Final = Tier("daily", "_daily", up_to=None)
EVERY_TIER: Final = (RAW, HOURLY, DAILY)
"""Raw samples up to 2 days, hourly rollups up to 7 days, daily rollups beyond."""
HOURLY_BEYOND_RAW: Final = (RAW, HOURLY)
"""For figures a day's rollup cannot give (an hour's peak): hourly rollups at every length."""


@dataclass(frozen=True, slots=True)
class Tiered:
    """One query over telemetry, a branch per tier, each guarded by the range's length."""

    branches: tuple[tuple[Tier, str], ...]
    order_by: str

    def guard(self, index: int) -> str:
        """When branch ``index`` runs: the range is longer than the previous tier serves and
        no longer than this one does (the last branch has no upper bound)."""
        conditions = []
        if index > 0:
            conditions.append(f"{RANGE_SPAN} > interval '{self._limit(index - 1)}'")
        if index < len(self.branches) - 1:
            conditions.append(f"{RANGE_SPAN} <= interval '{self._limit(index)}'")
        return " AND ".join(conditions) or "true"

    def _limit(self, index: int) -> str:
        tier = self.branches[index][0]
        if tier.up_to is None:
            raise ValueError(f"the {tier.name} tier serves every range: it must come last")
        return tier.up_to

    @property
    def sql(self) -> str:
        parts = [
            f"SELECT * FROM (\n{_indent(branch)}\n) AS {tier.name}_rows\nWHERE {self.guard(index)}"
            for index, (tier, branch) in enumerate(self.branches)
        ]
        return "\nUNION ALL\n".join(parts) + f"\nORDER BY {self.order_by}"

    @property
    def raw_sql(self) -> str:
        """The same query read from raw samples whatever the range (to compare with)."""
        tier, branch = self.branches[0]
        if not tier.is_raw:
            raise ValueError("the first branch of a tiered query reads raw samples")
        return f"{branch}\nORDER BY {self.order_by}"


def tiered(
    write: Callable[[Tier], str],
    *,
    order_by: str,
    tiers: tuple[Tier, ...] = EVERY_TIER,
) -> Tiered:
    """A :class:`Tiered` query from a function writing its SQL for any tier."""
    return Tiered(tuple((tier, _dedent(write(tier))) for tier in tiers), order_by)


class Format(StrEnum):
    """How Grafana reads a query's rows: time series (time, labels, values) or a table."""

    TIME_SERIES = "time_series"
    TABLE = "table"


@dataclass(frozen=True, slots=True)
class Query:
    sql: str | Tiered
    columns: tuple[str, ...]
    """The column names the query returns, in order (checked against a real database)."""
    format: Format = Format.TIME_SERIES
    ref_id: str = "A"

    @property
    def text(self) -> str:
        return self.sql.sql if isinstance(self.sql, Tiered) else _dedent(self.sql)

    @property
    def raw_text(self) -> str | None:
        """The raw-samples variant of a tiered query; None when the query is not tiered."""
        return self.sql.raw_sql if isinstance(self.sql, Tiered) else None


class PanelKind(StrEnum):
    TIMESERIES = "timeseries"
    STAT = "stat"
    TABLE = "table"
    GEOMAP = "geomap"
    BARGAUGE = "bargauge"


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    description: str
    kind: PanelKind
    queries: tuple[Query, ...]
    unit: str = "none"
    width: int = 12
    """Of Grafana's 24 grid columns."""
    height: int = 8
    min_interval: str | None = None
    """The smallest ``$__interval`` Grafana may choose for this panel (e.g. ``1h``)."""
    relative_time: str | None = None
    """The panel's own time range instead of the dashboard's, e.g. ``now/d``: today so far."""
    display_names: Mapping[str, str] = field(default_factory=dict)
    """Column name -> the name shown."""
    colours: Mapping[str, str] = field(default_factory=dict)
    """Column name -> its fixed colour (a Grafana colour name or #rrggbb)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Merged over the kind's default options."""
    field_defaults: Mapping[str, Any] = field(default_factory=dict)
    """Merged over the kind's default ``fieldConfig.defaults``."""


class VariableKind(StrEnum):
    QUERY = "query"
    """Values from a SQL query (one column, or ``__value`` and ``__text``)."""
    CUSTOM = "custom"
    """Values listed, comma separated."""
    TEXTBOX = "textbox"
    """One value typed in; substituted as written."""


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    label: str
    kind: VariableKind
    query: str
    """The SQL (query), the values (custom) or the default value (textbox)."""
    description: str = ""

    @property
    def multi(self) -> bool:
        """Query and custom variables allow several values and "All"; they are substituted
        as a quoted list, so queries use them as ``IN ($name)``."""
        return self.kind is not VariableKind.TEXTBOX


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    default_range: str = "now-24h"
    timezone: str = "Africa/Casablanca"
    """The city's time: "today" and day boundaries on the time axis are local days."""


def nest(fragment: str, spaces: int) -> str:
    """``fragment``, dedented, to sit at ``spaces`` inside a query's text: its first line is
    placed by the query's own text, the others are indented to match."""
    return _dedent(fragment).replace("\n", "\n" + " " * spaces)


def _dedent(text: str) -> str:
    lines = text.strip("\n").splitlines()
    margin = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[margin:].rstrip() for line in lines)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else line for line in text.splitlines())
