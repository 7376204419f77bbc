"""Grafana's PostgreSQL macros and template variables, expanded as Grafana expands them.

The panels' SQL is only runnable once Grafana has substituted the template variables (in the
browser: ``$site``, ``${device:sqlstring}``, ``$__interval``) and then the data source's macros
(on the server: ``$__timeFilter(ts)``, ``$__timeGroupAlias(ts, 5m)``...). :func:`expand` does
both for a given time range, interval and variable values, so the tests and the benchmark run
exactly the text Grafana would send to PostgreSQL. It follows Grafana 10/11: the macro forms of
``pkg/tsdb/grafana-postgresql-datasource/macros.go`` and the SQL data sources' variable
quoting (a multi-value variable becomes ``'a','b'``, quotes doubled; a single-value one is
substituted as written).

Pure: no clock, no database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from dashboards.errors import MacroError

VariableValue = str | Sequence[str]
"""A single-value variable (substituted as written) or a multi-value one (a quoted list)."""

_VARIABLE: Final = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO_START: Final = re.compile(r"\$(__\w+)\(")
_UNITS: Final = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "y": timedelta(days=365),
}
_INTERVAL: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*$")
_ROUNDED_MS: Final = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
"""Grafana's ``roundInterval``: a computed interval below the first figure [ms] becomes the
second; at or above the last bound, a year."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A dashboard's time range; both ends carry a time zone."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise MacroError("a time range needs times with a time zone (e.g. UTC)")
        if self.end <= self.start:
            raise MacroError(f"the range ends ({self.end}) before it starts ({self.start})")

    @property
    def span(self) -> timedelta:
        return self.end - self.start


def expand(
    sql: str,
    time_range: TimeRange,
    *,
    interval: timedelta | None = None,
    variables: Mapping[str, VariableValue] | None = None,
    timescaledb: bool = False,
) -> str:
    """``sql`` as Grafana sends it to PostgreSQL for this range, interval and variables.

    interval: ``$__interval``; by default what Grafana picks for a 1,000-pixel-wide panel
    (:func:`auto_interval`). variables: values by name, a string for a single value and a
    sequence for a multi-value variable (an "All" selection is the list of every value).
    timescaledb: the data source's TimescaleDB switch, which makes ``$__timeGroup`` use
    ``time_bucket`` (our queries work either way).
    """
    chosen = interval if interval is not None else auto_interval(time_range)
    substituted = substitute_variables(sql, time_range, chosen, variables or {})
    return expand_macros(substituted, time_range, timescaledb=timescaledb)


def substitute_variables(
    sql: str,
    time_range: TimeRange,
    interval: timedelta,
    variables: Mapping[str, VariableValue],
) -> str:
    """Template variables and Grafana's global ones (``$__interval``, ``$__from``...)."""
    globals_ = _global_variables(time_range, interval)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        form = match.group(2)
        if name in globals_:
            return globals_[name]
        if name.startswith("__"):
            return match.group(0)  # a macro, expanded next
        if name not in variables:
            raise MacroError(
                f"variable ${name} has no value: give it one (known: {_names(variables)})"
            )
        return format_value(variables[name], form)

    return _VARIABLE.sub(replace, sql)


def format_value(value: VariableValue, form: str | None = None) -> str:
    """A variable's value in ``${name:form}`` (or ``$name`` with no form)."""
    values = [value] if isinstance(value, str) else list(value)
    if form is None:
        if isinstance(value, str):
            return value
        form = "sqlstring"
    formats: dict[str, Callable[[list[str]], str]] = {
        "sqlstring": lambda items: ",".join(_sql_literal(v) for v in items),
        "singlequote": lambda items: ",".join("'" + v.replace("'", "\\'") + "'" for v in items),
        "doublequote": lambda items: ",".join('"' + v.replace('"', '\\"') + '"' for v in items),
        "raw": ",".join,
        "csv": ",".join,
        "pipe": "|".join,
    }
    if form not in formats:
        raise MacroError(f"unknown variable format :{form}; use one of {', '.join(formats)}")
    if not values:
        raise MacroError("a multi-value variable needs at least one value")
    return formats[form](values)


def expand_macros(sql: str, time_range: TimeRange, *, timescaledb: bool = False) -> str:
    """The PostgreSQL data source's macros: ``$__timeFilter(col)`` and the others."""
    out: list[str] = []
    position = 0
    while (match := _MACRO_START.search(sql, position)) is not None:
        name = match.group(1)
        close = _closing_parenthesis(sql, match.end())
        arguments = _split_arguments(sql[match.end() : close])
        out += [sql[position : match.start()], _macro(name, arguments, time_range, timescaledb)]
        position = close + 1
    out.append(sql[position:])
    expanded = "".join(out)
    leftover = re.search(r"\$__\w+", expanded)
    if leftover:
        raise MacroError(f"{leftover.group(0)} is not a macro or variable Grafana knows")
    return expanded


def _macro(name: str, args: list[str], time_range: TimeRange, timescaledb: bool) -> str:
    start, end = time_range.start, time_range.end

    def need(count: int) -> None:
        if len(args) < count or (count == 0 and args):
            raise MacroError(f"${name} takes {count or 'no'} argument(s), got {args}")

    if name in {"__timeFrom", "__timeTo"}:
        need(0)
        return f"'{rfc3339(start if name == '__timeFrom' else end)}'"
    if name in {"__unixEpochFrom", "__unixEpochTo"}:
        need(0)
        return str(_epoch_s(start if name == "__unixEpochFrom" else end))
    if name in {"__unixEpochNanoFrom", "__unixEpochNanoTo"}:
        need(0)
        return str(_epoch_ns(start if name == "__unixEpochNanoFrom" else end))
    need(1)
    column = args[0]
    if name == "__time":
        return f'{column} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {column}) as "time"'
    if name == "__timeFilter":
        return f"{column} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
    if name == "__unixEpochFilter":
        return f"{column} >= {_epoch_s(start)} AND {column} <= {_epoch_s(end)}"
    if name == "__unixEpochNanoFilter":
        return f"{column} >= {_epoch_ns(start)} AND {column} <= {_epoch_ns(end)}"
    if name in {"__timeGroup", "__timeGroupAlias", "__unixEpochGroup", "__unixEpochGroupAlias"}:
        need(2)  # a third argument, the fill mode, acts on the results, not the SQL
        seconds = parse_interval(args[1].strip("'\"")).total_seconds()
        alias = ' AS "time"' if name.endswith("Alias") else ""
        if name.startswith("__unixEpoch"):
            return f"floor(({column})/{_go_float(seconds)})*{_go_float(seconds)}{alias}"
        if timescaledb:
            return f"time_bucket('{seconds:.0f}s',{column}){alias}"
        return (
            f"floor(extract(epoch from {column})/{_go_float(seconds)})*{_go_float(seconds)}{alias}"
        )
    raise MacroError(f"${name}() is not a macro of Grafana's PostgreSQL data source")


def auto_interval(
    time_range: TimeRange, *, max_data_points: int = 1_000, min_interval: str | None = None
) -> timedelta:
    """The ``$__interval`` Grafana picks: the range over the panel's data points, rounded to a
    round figure, and no less than the panel's minimum interval."""
    raw_ms = time_range.span.total_seconds() * 1000 / max_data_points
    rounded_ms = next((to for below, to in _ROUNDED_MS if raw_ms < below), 31_536_000_000)
    chosen = timedelta(milliseconds=rounded_ms)
    if min_interval is not None:
        chosen = max(chosen, parse_interval(min_interval))
    return chosen


def parse_interval(text: str) -> timedelta:
    """``5m``, ``1h``, ``1d``, ``500ms``... as a duration (Grafana's interval syntax)."""
    match = _INTERVAL.match(text)
    if match is None:
        raise MacroError(f"{text!r} is not an interval; write it like 5m, 1h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_interval(interval: timedelta) -> str:
    """An interval as Grafana writes ``$__interval``: ``5m``, ``1h``, ``1d``, ``500ms``."""
    milliseconds = round(interval.total_seconds() * 1000)
    if milliseconds <= 0:
        raise MacroError(f"an interval must be positive, not {interval}")
    for unit in ("y", "d", "h", "m", "s"):
        size = round(_UNITS[unit].total_seconds() * 1000)
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def rfc3339(moment: datetime) -> str:
    """A time as Go's RFC3339Nano writes it in UTC: ``2026-11-28T18:00:00Z``."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _global_variables(time_range: TimeRange, interval: timedelta) -> dict[str, str]:
    span_ms = round(time_range.span.total_seconds() * 1000)
    return {
        "__interval": format_interval(interval),
        "__interval_ms": str(round(interval.total_seconds() * 1000)),
        "__from": str(_epoch_ms(time_range.start)),
        "__to": str(_epoch_ms(time_range.end)),
        "__range": f"{span_ms // 1000}s",
        "__range_s": str(span_ms // 1000),
        "__range_ms": str(span_ms),
    }


def _closing_parenthesis(sql: str, opened_after: int) -> int:
    """Where the macro's argument list closes (nested parentheses and quotes respected)."""
    depth = 1
    quote: str | None = None
    for index in range(opened_after, len(sql)):
        character = sql[index]
        if quote:
            quote = None if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth == 0:
                return index
    raise MacroError(
        f"a macro's parentheses are not closed: {sql[opened_after - 20 : opened_after + 40]!r}"
    )


def _split_arguments(text: str) -> list[str]:
    """Arguments separated by the commas outside parentheses, trimmed."""
    if not text.strip():
        return []
    arguments: list[str] = []
    current: list[str] = []
    depth = 0
    for character in text:
        if character == "," and depth == 0:
            arguments.append("".join(current).strip())
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(character, 0)
        current.append(character)
    arguments.append("".join(current).strip())
    return arguments


def _go_float(value: float) -> str:
    """A float as Go's ``%v`` writes it (shortest digits; an exponent from 1e+06 up)."""
    digits = Decimal(repr(value)).normalize()
    sign, figures, exponent = digits.as_tuple()
    if not isinstance(exponent, int):
        raise MacroError(f"an interval must be a finite number of seconds, not {value}")
    leading = len(figures) + exponent - 1
    if -4 <= leading < 6:
        return format(digits, "f")
    mantissa = "".join(str(f) for f in figures)
    body = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    return f"{'-' if sign else ''}{body}e{'+' if leading >= 0 else '-'}{abs(leading):02d}"


def _epoch_s(moment: datetime) -> int:
    return int(moment.timestamp())


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _epoch_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _names(variables: Mapping[str, VariableValue]) -> str:
    return ", ".join(sorted(variables)) or "none"
