"""How the API plans a telemetry range: bucket, source, alignment, refusals (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.telemetry_queries import (
    AUTO,
    AUTO_TARGET_POINTS,
    BUCKETS,
    MAX_METRICS,
    MAX_POINTS,
    MAX_SERIES_DEVICES,
    ORIGIN,
    RAW_MAX_RANGE,
    RangeError,
    Source,
    aligned,
    bucket_count,
    check_metrics,
    check_size,
    choose_bucket,
    plan_range,
    source_for,
)
from protocol.topics import DeviceClass

NOON = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bucket", "source"),
    [
        ("1m", Source.RAW),
        ("30m", Source.RAW),
        ("1h", Source.HOURLY),
        ("6h", Source.HOURLY),
        ("12h", Source.HOURLY),
        ("1d", Source.DAILY),
        ("7d", Source.DAILY),
    ],
)
def test_whole_hours_read_the_hourly_rollup_and_whole_days_the_daily(
    bucket: str, source: Source
) -> None:
    assert source_for(BUCKETS[bucket]) is source


def test_a_range_is_widened_to_whole_buckets_of_the_utc_grid() -> None:
    start, end = aligned(NOON + timedelta(minutes=7), NOON + timedelta(hours=2, minutes=1), 3_600)
    assert (start, end) == (NOON, NOON + timedelta(hours=3))
    assert aligned(NOON, NOON + timedelta(hours=1), 3_600) == (NOON, NOON + timedelta(hours=1))
    day_start, _ = aligned(NOON, NOON + timedelta(hours=1), 86_400)
    assert day_start == datetime(2026, 11, 20, tzinfo=UTC)


def test_weeks_start_on_monday() -> None:
    start, end = aligned(NOON, NOON + timedelta(days=1), BUCKETS["7d"])
    assert start.weekday() == 0
    assert start == datetime(2026, 11, 16, tzinfo=UTC)
    assert end - start == timedelta(days=7)


@pytest.mark.parametrize(
    ("length", "bucket"),
    [
        (timedelta(hours=1), "1m"),
        (timedelta(days=1), "5m"),
        (timedelta(days=3), "5m"),
        (timedelta(days=7), "15m"),
        (timedelta(days=8), "1h"),
        (timedelta(days=30), "1h"),
        (timedelta(days=90), "3h"),
        (timedelta(days=365), "12h"),
        (timedelta(days=3 * 365), "7d"),
        (timedelta(days=40 * 365), "7d"),
    ],
)
def test_auto_chooses_the_finest_bucket_of_at_most_a_thousand_points(
    length: timedelta, bucket: str
) -> None:
    assert choose_bucket(NOON, NOON + length) == bucket


def test_a_thirty_day_range_reads_the_hourly_rollup() -> None:
    plan = plan_range(NOON - timedelta(days=30), NOON, AUTO)
    assert (plan.bucket, plan.source, plan.points) == ("1h", Source.HOURLY, 720)


def test_explicit_buckets_are_kept_and_aligned() -> None:
    plan = plan_range(NOON + timedelta(minutes=3), NOON + timedelta(hours=2), "1h")
    assert (plan.bucket, plan.bucket_s, plan.source) == ("1h", 3_600, Source.HOURLY)
    assert (plan.start, plan.end, plan.points) == (NOON, NOON + timedelta(hours=2), 2)


@pytest.mark.parametrize(
    ("start", "end", "bucket", "words"),
    [
        (NOON, NOON, AUTO, "must be before"),
        (NOON, NOON - timedelta(hours=1), "1h", "must be before"),
        (NOON.replace(tzinfo=None), NOON + timedelta(hours=1), AUTO, "time zone"),
        (NOON - timedelta(days=30), NOON, "1m", "choose a wider bucket"),
        (NOON, datetime(2300, 1, 1, tzinfo=UTC), AUTO, "must lie between"),
        (datetime(1900, 1, 1, tzinfo=UTC), NOON, AUTO, "must lie between"),
        (NOON, NOON + timedelta(hours=1), "3m", "unknown bucket"),
    ],
)
def test_ranges_that_cannot_be_answered_are_refused_with_the_reason(
    start: datetime, end: datetime, bucket: str, words: str
) -> None:
    with pytest.raises(RangeError, match=words):
        plan_range(start, end, bucket)


def test_a_range_too_long_for_any_bucket_says_how_long_it_may_be() -> None:
    with pytest.raises(RangeError, match="too long"):
        choose_bucket(ORIGIN, ORIGIN + timedelta(days=7 * MAX_POINTS + 7))


def test_metrics_are_checked_against_the_class_catalogue() -> None:
    found = check_metrics(DeviceClass.STREETLIGHT, ["battery_soc", "lamp_power", "battery_soc"])
    assert [(m.name, m.unit) for m in found] == [("battery_soc", "%"), ("lamp_power", "W")]
    with pytest.raises(RangeError, match="reports no 'air_temperature'"):
        check_metrics(DeviceClass.STREETLIGHT, ["air_temperature"])
    many = list(check_metrics(DeviceClass.STREETLIGHT, ["tilt"]))
    assert many[0].name == "tilt"
    names = ["pv_voltage", "pv_current", "pv_power", "battery_voltage", "battery_soc"]
    names += ["battery_temperature", "charge_current", "lamp_power", "tilt"]
    assert len(names) > MAX_METRICS
    with pytest.raises(RangeError, match=f"at most {MAX_METRICS}"):
        check_metrics(DeviceClass.STREETLIGHT, names)
    with pytest.raises(RangeError, match="at least one"):
        check_metrics(DeviceClass.STREETLIGHT, [])


def test_responses_of_too_many_points_or_devices_are_refused() -> None:
    plan = plan_range(NOON - timedelta(days=30), NOON, "1h")
    check_size(plan, metrics=2, series_devices=0)
    check_size(plan, metrics=2, series_devices=MAX_SERIES_DEVICES)
    with pytest.raises(RangeError, match="at most 100"):
        check_size(plan, metrics=1, series_devices=MAX_SERIES_DEVICES + 1)
    with pytest.raises(RangeError, match="points asked"):
        check_size(plan, metrics=8, series_devices=MAX_SERIES_DEVICES)


starts = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001 - and the time zone apart
    timezones=st.just(UTC),
)
lengths = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3_000))


@given(starts, lengths)
def test_auto_plans_cover_the_range_within_the_target(start: datetime, length: timedelta) -> None:
    plan = plan_range(start, start + length, AUTO)
    assert plan.start <= start
    assert plan.end >= start + length
    assert (plan.start - ORIGIN) % plan.stride == timedelta(0)
    assert plan.end - plan.start == plan.points * plan.stride
    assert plan.points <= (AUTO_TARGET_POINTS if plan.bucket != "7d" else MAX_POINTS)
    if length > RAW_MAX_RANGE:
        assert plan.source is not Source.RAW
    finer = [name for name, seconds in BUCKETS.items() if seconds < plan.bucket_s]
    for name in finer:  # no finer bucket would have done
        if length > RAW_MAX_RANGE and source_for(BUCKETS[name]) is Source.RAW:
            continue
        assert bucket_count(start, start + length, BUCKETS[name]) > AUTO_TARGET_POINTS


@given(starts, lengths, st.sampled_from(list(BUCKETS)))
def test_explicit_plans_are_whole_buckets_or_refused(
    start: datetime, length: timedelta, bucket: str
) -> None:
    if bucket_count(start, start + length, BUCKETS[bucket]) > MAX_POINTS:
        with pytest.raises(RangeError, match="choose a wider bucket"):
            plan_range(start, start + length, bucket)
        return
    plan = plan_range(start, start + length, bucket)
    assert plan.points <= MAX_POINTS
    assert plan.start <= start < start + length <= plan.end
    assert plan.end - plan.start < length + 2 * plan.stride
