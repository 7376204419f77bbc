"""The windows a rollup refresh is given: whole UTC hours and days."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from storage.rollups import whole_buckets

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def test_a_window_inside_one_hour_covers_that_hour() -> None:
    start = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    assert whole_buckets(start, start + timedelta(minutes=10), HOUR) == (
        datetime(2026, 11, 20, 10, tzinfo=UTC),
        datetime(2026, 11, 20, 11, tzinfo=UTC),
    )


def test_bounds_already_whole_are_kept() -> None:
    start, end = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)
    assert whole_buckets(start, end, DAY) == (start, end)
    assert whole_buckets(start, end, HOUR) == (start, end)


def test_days_are_utc_days_whatever_the_zone_of_the_bounds() -> None:
    casablanca = datetime(2026, 11, 20, 0, 30, tzinfo=UTC).astimezone(ZoneInfo("Africa/Casablanca"))
    low, high = whole_buckets(casablanca, casablanca + HOUR, DAY)
    assert (low, high) == (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))


def test_an_open_end_stays_open() -> None:
    start = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    assert whole_buckets(start, None, DAY) == (datetime(2026, 11, 20, tzinfo=UTC), None)
