"""Run a panel's query on a database as Grafana would: variables at "All", macros expanded.

For the tests, which run every panel against generated history, and for ``smartcity bench
api``, which times them from the aggregates and from raw samples::

    for query in panel_queries():
        columns, rows = run_query(connection, query, TimeRange(start, end))
        columns, rows = run_query(connection, query, TimeRange(start, end), raw=True)
"""

from __future__ import annotations

from typing import Any

import psycopg

from dashboards.build import PanelQuery, variables_of
from dashboards.macros import TimeRange, VariableValue, auto_interval, expand
from dashboards.model import VariableKind


def variable_values(
    connection: psycopg.Connection, dashboard_uid: str, time_range: TimeRange
) -> dict[str, VariableValue]:
    """Every variable of the dashboard as Grafana sets it at first: "All" (every value its
    query gives, in order, each query seeing the variables before it); a text box its
    default."""
    values: dict[str, VariableValue] = {}
    for variable in variables_of(dashboard_uid):
        if variable.kind is VariableKind.QUERY:
            cursor = connection.execute(expand(variable.query, time_range, variables=values))
            names = [column.name for column in cursor.description or ()]
            column = names.index("__value") if "__value" in names else 0
            values[variable.name] = [str(row[column]) for row in cursor.fetchall()]
        elif variable.kind is VariableKind.CUSTOM:
            values[variable.name] = variable.query.split(",")
        else:
            values[variable.name] = variable.query
    return values


def expanded_sql(
    connection: psycopg.Connection,
    query: PanelQuery,
    time_range: TimeRange,
    *,
    raw: bool = False,
    variables: dict[str, VariableValue] | None = None,
) -> str:
    """The SQL Grafana would send for ``query`` over ``time_range``; with ``raw``, the variant
    reading raw samples at any range (ValueError for a query that is not tiered)."""
    sql = query.raw_sql if raw else query.sql
    if sql is None:
        raise ValueError(f"{query.panel_title!r} reads no telemetry tiers: it has no raw variant")
    return expand(
        sql,
        time_range,
        interval=auto_interval(time_range, min_interval=query.min_interval),
        variables=variables
        if variables is not None
        else variable_values(connection, query.dashboard_uid, time_range),
    )


def run_query(
    connection: psycopg.Connection,
    query: PanelQuery,
    time_range: TimeRange,
    *,
    raw: bool = False,
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The column names and rows of ``query`` over ``time_range``."""
    cursor = connection.execute(expanded_sql(connection, query, time_range, raw=raw))
    return tuple(column.name for column in cursor.description or ()), cursor.fetchall()
