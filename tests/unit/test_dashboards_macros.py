"""Grafana's PostgreSQL macros and template variables, expanded as Grafana expands them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dashboards.errors import MacroError
from dashboards.macros import (
    TimeRange,
    auto_interval,
    expand,
    format_interval,
    format_value,
    parse_interval,
    rfc3339,
)

START = datetime(2026, 11, 27, 18, tzinfo=UTC)
DAY = TimeRange(START, START + timedelta(days=1))


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        (
            "WHERE $__timeFilter(t.ts)",
            "WHERE t.ts BETWEEN '2026-11-27T18:00:00Z' AND '2026-11-28T18:00:00Z'",
        ),
        (
            "$__timeTo()::timestamptz - $__timeFrom()::timestamptz",
            "'2026-11-28T18:00:00Z'::timestamptz - '2026-11-27T18:00:00Z'::timestamptz",
        ),
        ("$__timeGroup(ts, 5m)", "floor(extract(epoch from ts)/300)*300"),
        ("$__timeGroupAlias(ts, '1h')", 'floor(extract(epoch from ts)/3600)*3600 AS "time"'),
        ("$__timeGroupAlias(ts, $__interval)", 'floor(extract(epoch from ts)/60)*60 AS "time"'),
        ("$__timeGroup(ts, 30d, NULL)", "floor(extract(epoch from ts)/2.592e+06)*2.592e+06"),
        ("$__time(at)", 'at AS "time"'),
        ("$__timeEpoch(at)", 'extract(epoch from at) as "time"'),
        ("$__unixEpochFilter(epoch)", "epoch >= 1795802400 AND epoch <= 1795888800"),
        ("$__unixEpochFrom() $__unixEpochTo()", "1795802400 1795888800"),
        ("$__unixEpochNanoFrom()", "1795802400000000000"),
        ("$__unixEpochGroupAlias(epoch, 1h)", 'floor((epoch)/3600)*3600 AS "time"'),
        (
            "$__timeFilter(coalesce(a.acknowledged_at, a.fired_at))",
            "coalesce(a.acknowledged_at, a.fired_at) BETWEEN '2026-11-27T18:00:00Z'"
            " AND '2026-11-28T18:00:00Z'",
        ),
        ("$__interval $__interval_ms", "1m 60000"),
        ("$__from $__to $__range_s", "1795802400000 1795888800000 86400"),
        ("interval '1 millisecond' * ${__interval_ms}", "interval '1 millisecond' * 60000"),
    ],
)
def test_macros_expand_as_grafana_writes_them(sql: str, expanded: str) -> None:
    assert expand(sql, DAY) == expanded


def test_timescaledb_makes_time_group_a_time_bucket() -> None:
    assert expand("$__timeGroupAlias(ts, 5m)", DAY, timescaledb=True) == (
        "time_bucket('300s',ts) AS \"time\""
    )


def test_times_are_written_in_utc_with_only_the_fraction_needed() -> None:
    casablanca = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 11, 28, 19, 0, tzinfo=casablanca)) == "2026-11-28T18:00:00Z"
    assert rfc3339(datetime(2026, 11, 28, 18, 0, 0, 250_000, tzinfo=UTC)) == (
        "2026-11-28T18:00:00.25Z"
    )


@pytest.mark.parametrize(
    ("value", "form", "text"),
    [
        (["sl-1", "sl-2"], None, "'sl-1','sl-2'"),
        (["rue d'Fès"], None, "'rue d''Fès'"),
        (["a", "b"], "sqlstring", "'a','b'"),
        ("town-hall", "sqlstring", "'town-hall'"),
        ("19", None, "19"),
        (["a", "b"], "raw", "a,b"),
        (["a", "b"], "csv", "a,b"),
        (["a", "b"], "pipe", "a|b"),
        (["it's"], "singlequote", "'it\\'s'"),
        (['say "hi"'], "doublequote", '"say \\"hi\\""'),
    ],
)
def test_variables_are_quoted_like_grafanas_sql_data_sources(
    value: str | list[str], form: str | None, text: str
) -> None:
    assert format_value(value, form) == text


def test_variables_are_substituted_in_their_three_spellings() -> None:
    sql = "d.site_id IN ($site) AND t.device_id IN (${light}) AND b IN (${zone:sqlstring}) < $low"
    expanded = expand(
        sql, DAY, variables={"site": ["sefrou"], "light": ["sl-1"], "zone": ["z"], "low": "19"}
    )
    assert expanded == "d.site_id IN ('sefrou') AND t.device_id IN ('sl-1') AND b IN ('z') < 19"


def test_a_variable_without_value_is_refused_by_name() -> None:
    with pytest.raises(MacroError, match=r"\$street_group has no value"):
        expand("street_group IN ($street_group)", DAY, variables={"site": ["x"]})


def test_an_unknown_macro_or_format_is_refused() -> None:
    with pytest.raises(MacroError, match=r"\$__timeBucket\(\) is not a macro"):
        expand("$__timeBucket(ts)", DAY)
    with pytest.raises(MacroError, match="not a macro or variable"):
        expand("SELECT $__nothing", DAY)
    with pytest.raises(MacroError, match="unknown variable format :json"):
        format_value(["a"], "json")
    with pytest.raises(MacroError, match="takes 2"):
        expand("$__timeGroup(ts)", DAY)
    with pytest.raises(MacroError, match="takes no"):
        expand("$__timeFrom(ts)", DAY)
    with pytest.raises(MacroError, match="not closed"):
        expand("$__timeFilter(ts", DAY)


def test_a_time_range_must_be_aware_and_forward() -> None:
    with pytest.raises(MacroError, match="time zone"):
        TimeRange(datetime(2026, 1, 1), datetime(2026, 1, 2))  # noqa: DTZ001 - the point
    with pytest.raises(MacroError, match="before it starts"):
        TimeRange(START, START)


@pytest.mark.parametrize(
    ("span", "minimum", "interval"),
    [
        (timedelta(hours=1), None, timedelta(seconds=5)),
        (timedelta(hours=6), None, timedelta(seconds=20)),
        (timedelta(days=1), None, timedelta(minutes=1)),
        (timedelta(days=2), None, timedelta(minutes=2)),
        (timedelta(days=2), "300s", timedelta(minutes=5)),
        (timedelta(days=7), None, timedelta(minutes=10)),
        (timedelta(days=90), None, timedelta(hours=2)),
        (timedelta(days=90), "1d", timedelta(days=1)),
        (timedelta(days=400), None, timedelta(hours=12)),
    ],
)
def test_the_auto_interval_is_grafanas_rounded_one(
    span: timedelta, minimum: str | None, interval: timedelta
) -> None:
    assert auto_interval(TimeRange(START, START + span), min_interval=minimum) == interval


def test_intervals_read_and_write_grafanas_way() -> None:
    assert parse_interval("5m") == timedelta(minutes=5)
    assert parse_interval("500ms") == timedelta(milliseconds=500)
    assert parse_interval("1w") == timedelta(days=7)
    assert [format_interval(parse_interval(t)) for t in ("300s", "1h", "2d", "1500ms")] == [
        "5m",
        "1h",
        "2d",
        "1500ms",
    ]
    with pytest.raises(MacroError, match="write it like 5m"):
        parse_interval("5 minutes")


def test_a_tiered_guard_becomes_a_constant_comparison() -> None:
    guard = "($__timeTo()::timestamptz - $__timeFrom()::timestamptz) <= interval '2 days'"
    assert expand(guard, DAY) == (
        "('2026-11-28T18:00:00Z'::timestamptz - '2026-11-27T18:00:00Z'::timestamptz)"
        " <= interval '2 days'"
    )
