"""Who is in a municipal building: schedules by building kind, day of week and hour.

A building kind has an opening-day profile per day of the week (the expected share of its
capacity present, piecewise linear in local time, nothing outside opening hours), another set
for Ramadan, when administrations keep shorter hours, one for public holidays, and maybe
occasional events (a concert, a wedding, a council meeting) that happen on a day with a
probability depending on the day of the week. The simulator adds busy and quiet days and
people coming and going; the controller can use the regular opening hours alone.

Ramadan and holidays are inputs: the Islamic calendar moves each year, and the energy-control
side reads public holidays from the ``holidays`` package (any container of dates will do).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulators.randomness import persistent_noise

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
CountArray = npt.NDArray[np.int64]

SITE_TIMEZONE: Final = "Africa/Casablanca"
PRESENCE_PERSISTENCE: Final = 1_800.0
"""Time over which the people present renew themselves [s]: sets how fast counts wander."""
PRESENCE_SPREAD: Final = 0.15
"""Relative spread of the people present around the day's expected count [-]."""


@dataclass(frozen=True, slots=True)
class DayProfile:
    """Expected share of capacity present through a day [-], piecewise linear in local time.

    hours: local times [h] of the points, increasing, the first the opening, the last the
    closing; shares [-] at those times. Nobody is in before the opening nor from the closing.
    """

    hours: tuple[float, ...]
    shares: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.hours) < 2 or len(self.hours) != len(self.shares):
            raise ValueError("a day profile needs at least two (hour, share) points")
        if any(b <= a for a, b in zip(self.hours, self.hours[1:], strict=False)):
            raise ValueError(f"profile hours must increase: {self.hours}")
        if self.hours[0] < 0 or self.hours[-1] > 24:
            raise ValueError(f"profile hours must lie within one day, 0 to 24: {self.hours}")
        if any(not 0 <= share <= 1 for share in self.shares):
            raise ValueError(f"shares must lie in [0, 1]: {self.shares}")

    def is_open(self, hours: FloatArray) -> BoolArray:
        """Whether local times ``hours`` [h] fall within opening hours."""
        inside: BoolArray = (hours >= self.hours[0]) & (hours < self.hours[-1])
        return inside

    def share(self, hours: FloatArray) -> FloatArray:
        """Expected share of capacity present at local times ``hours`` [h] [-]."""
        share: FloatArray = np.where(
            self.is_open(hours), np.interp(hours, self.hours, self.shares), 0.0
        )
        return share

    def scaled(self, factor: float) -> DayProfile:
        """The same day with ``factor`` times the people, at most all the capacity."""
        return DayProfile(self.hours, tuple(min(1.0, share * factor) for share in self.shares))


def _profile(*points: tuple[float, float]) -> DayProfile:
    return DayProfile(tuple(hour for hour, _ in points), tuple(share for _, share in points))


Week = tuple[DayProfile | None, ...]
"""One profile per day, Monday first; None: closed."""


def _week(
    weekdays: DayProfile | None, saturday: DayProfile | None, sunday: DayProfile | None
) -> Week:
    return (weekdays,) * 5 + (saturday, sunday)


@dataclass(frozen=True, slots=True)
class Events:
    """Occasional events: each day, with its weekday's probability, one event of a profile."""

    probability: tuple[float, ...]
    """Chance of an event on a Monday, ..., a Sunday [-]; holidays count as Sundays."""
    profile: DayProfile
    """Share of capacity present at a full event [-]; each event draws 50-100 % of it."""
    ramadan_profile: DayProfile
    """The same in Ramadan, typically after the evening meal."""

    def __post_init__(self) -> None:
        if len(self.probability) != 7 or any(not 0 <= p <= 1 for p in self.probability):
            raise ValueError("events need seven probabilities in [0, 1], Monday first")


@dataclass(frozen=True, slots=True)
class BuildingSchedule:
    """When a kind of building is used."""

    week: Week
    ramadan_week: Week
    holiday: DayProfile | None
    """Profile on public holidays; None: closed."""
    events: Events | None = None
    day_spread: float = 0.15
    """Relative spread of a day's attendance around the profile, busy and quiet days [-]."""

    def __post_init__(self) -> None:
        if len(self.week) != 7 or len(self.ramadan_week) != 7:
            raise ValueError("a week has seven days, Monday first")


_OFFICE_DAY: Final = _profile(
    (8.5, 0.35), (9.25, 0.85), (12.5, 0.85), (13.0, 0.6), (14.0, 0.85), (16.0, 0.7), (16.5, 0.3)
)
_OFFICE_RAMADAN: Final = _profile((9.0, 0.3), (9.75, 0.8), (14.0, 0.7), (15.0, 0.3))
_AFTERNOON_ACTIVITIES: Final = _profile(
    (14.0, 0.2), (15.0, 0.45), (17.0, 0.7), (19.0, 0.6), (20.0, 0.2)
)
_WEEKEND_ACTIVITIES: Final = _profile(
    (10.0, 0.3), (11.0, 0.75), (13.0, 0.55), (14.5, 0.8), (18.0, 0.85), (20.0, 0.3)
)
_RAMADAN_ACTIVITIES: Final = _profile((14.0, 0.15), (16.0, 0.35), (17.5, 0.15))
_EVENING_EVENT: Final = _profile((18.5, 0.1), (19.0, 0.85), (22.0, 0.8), (22.5, 0.1))
_RAMADAN_EVENT: Final = _profile((21.5, 0.1), (22.0, 0.8), (23.25, 0.7), (23.5, 0.1))
_LIBRARY_DAY: Final = _profile(
    (9.0, 0.2), (10.0, 0.5), (12.5, 0.6), (13.5, 0.35), (14.5, 0.6), (17.0, 0.7), (18.0, 0.2)
)
_LIBRARY_RAMADAN: Final = _profile((9.5, 0.2), (11.0, 0.4), (15.0, 0.4), (15.5, 0.15))
_ASSOCIATIONS: Final = _profile((15.0, 0.05), (16.0, 0.15), (18.0, 0.15), (18.5, 0.05))
_SLAUGHTER_DAY: Final = _profile((5.0, 0.5), (5.5, 0.9), (9.0, 0.9), (10.5, 0.6), (12.0, 0.3))
_CLUB_TRAINING: Final = _profile((17.0, 0.3), (18.0, 0.6), (21.0, 0.6), (22.0, 0.2))
_WEEKEND_SPORT: Final = _profile((9.0, 0.3), (10.0, 0.6), (13.0, 0.4), (14.0, 0.6), (19.0, 0.3))
_RAMADAN_NIGHT_SPORT: Final = _profile((21.5, 0.3), (22.0, 0.7), (23.5, 0.6), (23.75, 0.2))
_MATCH: Final = _profile((15.0, 0.2), (15.5, 0.9), (17.5, 0.8), (18.0, 0.1))
_RAMADAN_TOURNAMENT: Final = _profile((22.0, 0.3), (22.25, 0.9), (23.5, 0.8), (23.75, 0.1))
_ROAD_STATION_DAY: Final = _profile(
    (6.0, 0.1),
    (7.5, 0.6),
    (9.0, 0.35),
    (12.0, 0.3),
    (13.0, 0.45),
    (15.0, 0.3),
    (17.0, 0.6),
    (19.0, 0.4),
    (21.0, 0.15),
    (22.0, 0.05),
)
_ROAD_STATION_RAMADAN: Final = _profile(
    (6.0, 0.1),
    (8.0, 0.5),
    (12.0, 0.3),
    (16.0, 0.55),
    (18.5, 0.35),
    (19.0, 0.05),  # the evening meal: the roads empty at sunset
    (20.5, 0.05),
    (21.0, 0.3),
    (22.0, 0.1),
)

SCHEDULES: Final = MappingProxyType(
    {
        "town_hall": BuildingSchedule(
            week=_week(_OFFICE_DAY, None, None),
            ramadan_week=_week(_OFFICE_RAMADAN, None, None),
            holiday=None,
        ),
        "cultural_centre": BuildingSchedule(
            week=_week(_AFTERNOON_ACTIVITIES, _WEEKEND_ACTIVITIES, _WEEKEND_ACTIVITIES),
            ramadan_week=_week(_RAMADAN_ACTIVITIES, _RAMADAN_ACTIVITIES, _RAMADAN_ACTIVITIES),
            holiday=_WEEKEND_ACTIVITIES,
            events=Events(
                probability=(0.1, 0.15, 0.15, 0.2, 0.45, 0.6, 0.35),
                profile=_EVENING_EVENT,
                ramadan_profile=_RAMADAN_EVENT,
            ),
        ),
        "library": BuildingSchedule(
            week=(None,) + (_LIBRARY_DAY,) * 5 + (None,),
            ramadan_week=(None,) + (_LIBRARY_RAMADAN,) * 5 + (None,),
            holiday=None,
        ),
        "multipurpose_hall": BuildingSchedule(
            week=_week(_ASSOCIATIONS, _ASSOCIATIONS, None),
            ramadan_week=_week(None, None, None),
            holiday=None,
            events=Events(
                probability=(0.15, 0.15, 0.15, 0.2, 0.3, 0.5, 0.3),
                profile=_EVENING_EVENT,
                ramadan_profile=_RAMADAN_EVENT,
            ),
        ),
        "slaughterhouse": BuildingSchedule(
            week=_week(_SLAUGHTER_DAY, _SLAUGHTER_DAY, None),
            ramadan_week=_week(_SLAUGHTER_DAY, _SLAUGHTER_DAY, None),
            holiday=None,
        ),
        "district_annex": BuildingSchedule(
            week=_week(_OFFICE_DAY, None, None),
            ramadan_week=_week(_OFFICE_RAMADAN, None, None),
            holiday=None,
        ),
        "sports_hall": BuildingSchedule(
            week=_week(_CLUB_TRAINING, _WEEKEND_SPORT, _WEEKEND_SPORT),
            # Ramadan: evening sport after the meal, the neighbourhood tournaments.
            ramadan_week=(_RAMADAN_NIGHT_SPORT,) * 7,
            holiday=_WEEKEND_SPORT,
            events=Events(
                probability=(0.0, 0.0, 0.05, 0.0, 0.0, 0.4, 0.5),
                profile=_MATCH,
                ramadan_profile=_RAMADAN_TOURNAMENT,
            ),
        ),
        "road_station": BuildingSchedule(
            week=(_ROAD_STATION_DAY,) * 7,
            ramadan_week=(_ROAD_STATION_RAMADAN,) * 7,
            holiday=_ROAD_STATION_DAY.scaled(1.4),  # families travel on holidays
            day_spread=0.25,
        ),
    }
)
"""The kinds of municipal building, by the ``kind`` of a site's buildings."""


@dataclass(frozen=True, slots=True)
class ZoneUse:
    """How a zone follows its building [-]: share of the regular use, of the events."""

    regular: float
    events: float


ZONE_USES: Final = MappingProxyType(
    {
        "archives": ZoneUse(regular=0.05, events=0.0),  # a clerk looking something up
        "stacks": ZoneUse(regular=0.1, events=0.0),
        "cold-room": ZoneUse(regular=0.15, events=0.0),  # carcasses in and out
        "council-chamber": ZoneUse(regular=0.15, events=0.0),  # meetings, a few a week
        "theatre": ZoneUse(regular=0.1, events=1.0),  # rehearsals by day, shows at night
        "heritage-hall": ZoneUse(regular=0.6, events=0.2),
        "multimedia-hall": ZoneUse(regular=0.8, events=0.2),
        "music-institute": ZoneUse(regular=1.0, events=0.0),
        "childrens-library": ZoneUse(regular=1.0, events=0.0),
        "foyer": ZoneUse(regular=0.3, events=0.4),  # crowds before a show and in the interval
        "meeting-room": ZoneUse(regular=1.0, events=0.0),
        "changing-rooms": ZoneUse(regular=0.3, events=0.2),
    }
)
"""Zones used unlike their building, by the zone names of the site files; other zones follow
their building fully."""
_WHOLE_BUILDING: Final = ZoneUse(regular=1.0, events=1.0)


def schedule(kind: str) -> BuildingSchedule:
    """The schedule of a building ``kind``; ValueError naming the known kinds if unknown."""
    try:
        return SCHEDULES[kind]
    except KeyError:
        known = ", ".join(sorted(SCHEDULES))
        raise ValueError(f"unknown building kind {kind!r}; known kinds: {known}") from None


@dataclass(frozen=True, slots=True)
class _Calendar:
    """Local-time facts about each time and each calendar day spanned."""

    hours: FloatArray
    """Local time of day [h]."""
    weekday: npt.NDArray[np.int64]
    """0 Monday to 6 Sunday."""
    ramadan: BoolArray
    holiday: BoolArray
    day: npt.NDArray[np.int64]
    """Index of each time's local day in the days spanned, from 0."""
    days: int


def _calendar(
    times: pd.DatetimeIndex,
    ramadan: BoolArray | bool | None,
    holidays: Container[dt.date] | None,
    tz: str,
) -> _Calendar:
    if times.tz is None:
        raise ValueError("times must carry a time zone (UTC recommended)")
    local = times.tz_convert(tz)
    hours = (
        local.hour.to_numpy() + local.minute.to_numpy() / 60 + local.second.to_numpy() / 3_600
    ).astype(np.float64)
    in_ramadan = np.broadcast_to(np.asarray(False if ramadan is None else ramadan), hours.shape)
    codes, days = pd.factorize(local.normalize(), sort=True)
    holiday_days = np.array(
        [holidays is not None and day.date() in holidays for day in days], dtype=np.bool_
    )
    day = codes.astype(np.int64)
    return _Calendar(
        hours=hours,
        weekday=local.dayofweek.to_numpy().astype(np.int64),
        ramadan=in_ramadan.astype(np.bool_),
        holiday=holiday_days[day] if len(day) else np.zeros(0, dtype=np.bool_),
        day=day,
        days=len(days),
    )


def _days_by_profile(
    plan: BuildingSchedule, calendar: _Calendar
) -> list[tuple[BoolArray, DayProfile]]:
    """The times each day profile of ``plan`` applies to; times of closed days in none."""
    chosen = []
    for weekday in range(7):
        for in_ramadan, week in ((False, plan.week), (True, plan.ramadan_week)):
            profile = week[weekday]
            if profile is not None:
                mask = (
                    (calendar.weekday == weekday)
                    & (calendar.ramadan == in_ramadan)
                    & ~calendar.holiday
                )
                chosen.append((mask, profile))
    if plan.holiday is not None:
        chosen.append((calendar.holiday, plan.holiday))
    return chosen


def _regular_share(plan: BuildingSchedule, calendar: _Calendar) -> FloatArray:
    share = np.zeros(calendar.hours.shape)
    for mask, profile in _days_by_profile(plan, calendar):
        share[mask] = profile.share(calendar.hours[mask])
    return share


def is_occupied_hours(
    times: pd.DatetimeIndex,
    kind: str,
    *,
    ramadan: BoolArray | bool | None = None,
    holidays: Container[dt.date] | None = None,
    tz: str = SITE_TIMEZONE,
) -> BoolArray:
    """Whether each of ``times`` falls within the regular opening hours of a ``kind``.

    times: tz-aware; ramadan: one flag per time, or one for all; holidays: public holidays,
    as local dates (a ``holidays.Morocco()`` works); tz: the site's time zone. Occasional
    events are not opening hours.
    """
    plan = schedule(kind)
    calendar = _calendar(times, ramadan, holidays, tz)
    opened = np.zeros(calendar.hours.shape, dtype=np.bool_)
    for mask, profile in _days_by_profile(plan, calendar):
        opened[mask] = profile.is_open(calendar.hours[mask])
    return opened


def occupancy(
    times: pd.DatetimeIndex,
    kind: str,
    capacity: int,
    rng: np.random.Generator,
    *,
    ramadan: BoolArray | bool | None = None,
    holidays: Container[dt.date] | None = None,
    zone: str | None = None,
    tz: str = SITE_TIMEZONE,
) -> CountArray:
    """People present at each of ``times`` in a building of ``kind``, or one of its zones.

    times: tz-aware, in order; capacity: the most people the building or zone holds;
    rng: all randomness comes from it, so a seed replays the same days; ramadan: one flag
    per time, or one for all; holidays: public holidays as local dates (a
    ``holidays.Morocco()`` works); zone: a zone name of :data:`ZONE_USES` (other names
    follow the building); tz: the site's time zone.

    Each day draws how busy it is and, for kinds with events, whether an event takes place
    and how full it is; within the day people come and go around the profile, persistently
    over about half an hour, and counts are whole people: a zone rarely used (archives) is
    now and then occupied by one person rather than always by a fraction of one.
    """
    if capacity < 0:
        raise ValueError(f"capacity must not be negative, not {capacity}")
    plan = schedule(kind)
    use = _WHOLE_BUILDING if zone is None else ZONE_USES.get(zone, _WHOLE_BUILDING)
    calendar = _calendar(times, ramadan, holidays, tz)
    day_factor = np.clip(1.0 + plan.day_spread * rng.standard_normal(calendar.days), 0.3, 1.7)
    share = use.regular * day_factor[calendar.day] * _regular_share(plan, calendar)
    if plan.events is not None:
        share += use.events * _event_share(plan.events, calendar, rng)
    share = np.clip(share, 0.0, 1.0)
    persistence = _persistence(times)
    wander = persistent_noise(len(times), persistence, rng)
    # A uniform draw that persists too: whole people, the fraction rounded up now and then.
    rounding = np.clip(
        1.0 / (1.0 + np.exp(-1.7 * persistent_noise(len(times), persistence, rng))),
        0.0,
        1.0 - 1e-9,
    )
    expected = capacity * share * np.maximum(0.0, 1.0 + PRESENCE_SPREAD * wander)
    people = np.where(share > 0, np.floor(expected + rounding), 0.0)
    counts: CountArray = np.clip(people, 0, capacity).astype(np.int64)
    return counts


def _event_share(events: Events, calendar: _Calendar, rng: np.random.Generator) -> FloatArray:
    """Share of capacity at each time's event, if its day has one [-]."""
    day_weekday = np.full(calendar.days, 6, dtype=np.int64)
    day_weekday[calendar.day] = np.where(calendar.holiday, 6, calendar.weekday)
    happens = rng.random(calendar.days) < np.asarray(events.probability)[day_weekday]
    fullness = rng.uniform(0.5, 1.0, calendar.days)
    share = np.where(
        calendar.ramadan,
        events.ramadan_profile.share(calendar.hours),
        events.profile.share(calendar.hours),
    )
    on: FloatArray = np.where(happens, fullness, 0.0)[calendar.day] * share
    return on


def ramadan_flags(
    times: pd.DatetimeIndex, ramadan_days: Container[dt.date], tz: str = SITE_TIMEZONE
) -> BoolArray:
    """Whether each of ``times`` (tz-aware) falls on a local day of ``ramadan_days``."""
    days = times.tz_convert(tz).normalize()
    unique, codes = np.unique(days.asi8, return_inverse=True)
    fasting = np.array(
        [pd.Timestamp(day, tz="UTC").tz_convert(tz).date() in ramadan_days for day in unique],
        dtype=np.bool_,
    )
    flags: BoolArray = fasting[codes] if len(unique) else np.zeros(0, dtype=np.bool_)
    return flags


def _persistence(times: pd.DatetimeIndex) -> float:
    if len(times) < 2:
        return 0.0
    spacing = float(np.median((times[1:] - times[:-1]).total_seconds()))  # [s]
    return float(np.exp(-max(spacing, 0.0) / PRESENCE_PERSISTENCE))
