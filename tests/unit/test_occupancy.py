"""Occupancy schedules of Sefrou's municipal buildings: working week, Ramadan, evenings."""

from __future__ import annotations

import datetime as dt
import typing

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

from protocol.sites import BuildingKind
from simulators.occupancy import SCHEDULES, DayProfile, is_occupied_hours, occupancy

SITE = "Africa/Casablanca"


def local_week(start: str = "2026-04-06", weeks: int = 1, freq: str = "10min") -> pd.DatetimeIndex:
    """Whole local days from a Monday, expressed in UTC as the simulators pass them."""
    local = pd.date_range(start, periods=weeks * 7 * 24 * 6, freq=freq, tz=SITE)
    return local.tz_convert("UTC")


def local(times: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return times.tz_convert(SITE)


def between(times: pd.DatetimeIndex, start: str, end: str) -> np.ndarray:
    moments = local(times)
    clock = moments.hour * 60 + moments.minute
    first, last = (int(t[:2]) * 60 + int(t[3:]) for t in (start, end))
    return np.asarray((clock >= first) & (clock < last))


def test_the_town_hall_works_monday_to_friday_and_is_empty_at_weekends() -> None:
    times = local_week()
    people = occupancy(times, "town_hall", 40, np.random.default_rng(1))
    weekday = np.asarray(local(times).dayofweek)
    mornings = between(times, "09:30", "12:00")
    assert people[(weekday < 5) & mornings].mean() > 25
    assert np.all(people[weekday >= 5] == 0)
    assert np.all(people <= 40)


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_every_building_is_empty_at_night(kind: str) -> None:
    times = local_week(weeks=3)
    for ramadan in (False, True):
        people = occupancy(times, kind, 100, np.random.default_rng(2), ramadan=ramadan)
        assert np.all(people[between(times, "00:00", "04:30")] == 0)
        assert people.sum() > 0


def test_ramadan_office_hours_are_nine_to_three() -> None:
    day = pd.DatetimeIndex(
        [f"2026-02-23 {clock}" for clock in ("08:45", "09:30", "14:30", "15:30", "16:15")],
        tz=SITE,
    )
    assert_array_equal(is_occupied_hours(day, "town_hall"), [True, True, True, True, True])
    assert_array_equal(
        is_occupied_hours(day, "town_hall", ramadan=True), [False, True, True, False, False]
    )
    times = local_week("2026-02-23")
    people = occupancy(times, "town_hall", 40, np.random.default_rng(3), ramadan=True)
    assert np.all(people[~between(times, "09:00", "15:00")] == 0)
    assert people[between(times, "10:00", "14:00")].mean() > 20
    normal = occupancy(times, "town_hall", 40, np.random.default_rng(3))
    assert people.sum() < 0.8 * normal.sum()


def test_ramadan_flags_may_change_within_the_times() -> None:
    times = local_week("2026-02-16", weeks=2)
    from_the_second_week = np.asarray(local(times) >= pd.Timestamp("2026-02-23", tz=SITE))
    hours = is_occupied_hours(times, "town_hall", ramadan=from_the_second_week)
    late_afternoon = between(times, "15:30", "16:30")
    assert hours[late_afternoon & ~from_the_second_week].any()
    assert not hours[late_afternoon & from_the_second_week].any()


def test_times_are_read_in_the_site_time_zone() -> None:
    # Morocco is UTC+1 outside Ramadan: 07:45 UTC is 08:45 in Sefrou, the offices are open.
    utc = pd.DatetimeIndex(["2026-04-08 07:45", "2026-04-08 07:15"], tz="UTC")
    assert_array_equal(is_occupied_hours(utc, "town_hall"), [True, False])
    # ...and UTC+0 during Ramadan (4 March 2026): 08:45 UTC is 08:45 there, still shut.
    in_ramadan = pd.DatetimeIndex(["2026-03-04 08:45", "2026-03-04 09:15"], tz="UTC")
    assert_array_equal(is_occupied_hours(in_ramadan, "town_hall", ramadan=True), [False, True])
    with pytest.raises(ValueError, match="time zone"):
        occupancy(
            pd.date_range("2026-03-04", periods=3, freq="h"),
            "town_hall",
            10,
            np.random.default_rng(),
        )


def test_the_cultural_centre_lives_in_the_afternoons_and_some_evenings() -> None:
    times = local_week(weeks=8)
    people = occupancy(times, "cultural_centre", 200, np.random.default_rng(4))
    weekday = np.asarray(local(times).dayofweek)
    assert np.all(people[(weekday < 5) & between(times, "08:00", "14:00")] == 0)
    assert people[(weekday >= 5) & between(times, "10:30", "13:00")].mean() > 60, "busy weekends"
    assert np.all(people[between(times, "22:30", "23:59")] == 0)
    at_nine = between(times, "21:00", "21:10")
    evenings_with_events = people[at_nine] > 0
    by_weekday = weekday[at_nine]
    assert 8 <= evenings_with_events.sum() <= 30, "some evenings, not all"
    assert (
        evenings_with_events[by_weekday >= 4].mean() > evenings_with_events[by_weekday < 4].mean()
    )
    assert people[at_nine].max() > 100, "a full house"
    # The theatre hosts the events; the music institute closes at eight.
    music = occupancy(
        times, "cultural_centre", 60, np.random.default_rng(4), zone="music-institute"
    )
    assert np.all(music[at_nine] == 0)


def test_ramadan_evening_events_move_after_the_evening_meal() -> None:
    times = local_week(weeks=6)
    people = occupancy(times, "multipurpose_hall", 300, np.random.default_rng(5), ramadan=True)
    assert np.all(people[between(times, "18:30", "21:30")] == 0)
    assert people[between(times, "22:00", "23:00")].max() > 100


def test_library_opens_tuesday_to_saturday() -> None:
    times = local_week()
    opened = is_occupied_hours(times, "library")
    weekday = np.asarray(local(times).dayofweek)
    midday = between(times, "11:00", "11:10")
    assert_array_equal(opened[midday], (weekday[midday] >= 1) & (weekday[midday] <= 5))
    assert not opened[between(times, "18:00", "23:59") | between(times, "00:00", "09:00")].any()


def test_the_slaughterhouse_works_early_mornings_and_road_stations_every_day() -> None:
    times = local_week()
    weekday = np.asarray(local(times).dayofweek)
    slaughter = is_occupied_hours(times, "slaughterhouse")
    assert slaughter[(weekday < 6) & between(times, "05:00", "12:00")].all()
    assert not slaughter[(weekday == 6) | ~between(times, "05:00", "12:00")].any()
    station = is_occupied_hours(times, "road_station")
    assert_array_equal(station, between(times, "06:00", "22:00"))


def test_holidays_close_offices_and_fill_road_stations() -> None:
    times = local_week("2026-07-27")  # Throne Day, a public holiday, is Thursday 30 July
    holidays = {dt.date(2026, 7, 30)}
    dates = np.array([moment.date() for moment in local(times)])
    holiday = dates == dt.date(2026, 7, 30)
    office = occupancy(times, "town_hall", 40, np.random.default_rng(6), holidays=holidays)
    assert np.all(office[holiday] == 0)
    assert office[dates == dt.date(2026, 7, 29)].sum() > 0
    open_hours = is_occupied_hours(times, "road_station", holidays=holidays)
    assert_array_equal(open_hours, between(times, "06:00", "22:00"))


def test_rarely_used_zones_are_occupied_now_and_then() -> None:
    times = local_week(weeks=4)
    office_hours = is_occupied_hours(times, "town_hall")
    rng = np.random.default_rng(7)
    archives = occupancy(times, "town_hall", 4, rng, zone="archives")[office_hours]
    offices = occupancy(times, "town_hall", 30, rng, zone="offices-ground")[office_hours]
    assert 0.01 < (archives > 0).mean() < 0.35
    assert (offices > 0).mean() > 0.95


def test_the_same_seed_gives_the_same_people() -> None:
    times = local_week(weeks=2)
    first = occupancy(times, "cultural_centre", 150, np.random.default_rng(8))
    again = occupancy(times, "cultural_centre", 150, np.random.default_rng(8))
    other = occupancy(times, "cultural_centre", 150, np.random.default_rng(9))
    assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.int64


def test_every_kind_a_site_may_name_has_a_schedule() -> None:
    assert set(SCHEDULES) == set(typing.get_args(BuildingKind))


def test_sport_in_ramadan_moves_to_the_night() -> None:
    times = local_week(weeks=2)
    normal = occupancy(times, "sports_hall", 80, np.random.default_rng(10))
    ramadan = occupancy(times, "sports_hall", 80, np.random.default_rng(10), ramadan=True)
    assert normal[between(times, "22:00", "23:59")].sum() == 0
    assert ramadan[between(times, "22:00", "23:30")].mean() > 30
    assert ramadan[between(times, "06:00", "21:30")].sum() == 0


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown building kind 'mosque'; known kinds: cultural"):
        occupancy(local_week(), "mosque", 10, np.random.default_rng())
    with pytest.raises(ValueError, match="road_station, slaughterhouse, sports_hall, town_hall"):
        is_occupied_hours(local_week(), "mosque")


def test_day_profiles_check_themselves() -> None:
    with pytest.raises(ValueError, match="must increase"):
        DayProfile((9.0, 8.0), (0.5, 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DayProfile((8.0, 9.0), (0.5, 1.5))
    office = DayProfile((8.0, 12.0), (0.2, 0.6))
    assert office.share(np.array([7.9, 8.0, 10.0, 12.0])).tolist() == pytest.approx(
        [0.0, 0.2, 0.4, 0.0]
    )
