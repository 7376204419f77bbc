"""The Moroccan calendar as building schedules need it: public holidays and Ramadan.

Public holidays, the Islamic ones included, come from the ``holidays`` package, which
estimates the lunar dates a few years ahead; the government confirms each one only days before,
so a strategy file can correct them (its ``calendar`` section: holidays added or removed, and
Ramadan's first and last days as announced). Ramadan is otherwise the 30 days before the first
day of Eid al-Fitr (the month has 29 or 30 days; the first day may then be one early).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Final

import holidays

RAMADAN_DAYS: Final = 30
EID_AL_FITR: Final = "Eid al-Fitr"


class DayKind(StrEnum):
    """What kind of day a date is for opening hours."""

    WORKING = "working"
    RAMADAN = "ramadan"
    HOLIDAY = "holiday"


@lru_cache(maxsize=64)
def _morocco(year: int) -> dict[dt.date, str]:
    return dict(holidays.country_holidays("MA", years=year).items())


def public_holidays(years: Iterable[int]) -> dict[dt.date, str]:
    """Morocco's public holidays in ``years``, by date, with their names (English)."""
    found: dict[dt.date, str] = {}
    for year in years:
        found.update(_morocco(year))
    return found


def ramadan_days(years: Iterable[int]) -> frozenset[dt.date]:
    """The days of Ramadan that end in ``years`` (or begin in them): see the module docstring."""
    days: set[dt.date] = set()
    for year in sorted(set(years)):
        for candidate in (year, year + 1):
            for day, name in _morocco(candidate).items():
                if name.startswith(EID_AL_FITR) and _is_first_day(day):
                    days.update(day - dt.timedelta(days=n) for n in range(1, RAMADAN_DAYS + 1))
    return frozenset(day for day in days if day.year in set(years))


def _is_first_day(day: dt.date) -> bool:
    """Eid al-Fitr lasts two days here: the first is the one whose eve is not Eid."""
    before = day - dt.timedelta(days=1)
    return not _morocco(before.year).get(before, "").startswith(EID_AL_FITR)


@dataclass(frozen=True, slots=True)
class MoroccanCalendar:
    """Holidays and Ramadan for a span of years, with a site's corrections applied.

    extra_holidays / not_holidays: dates the site adds or removes (a confirmed Eid that
    fell a day later than estimated); ramadans: the first and last days of Ramadans as
    announced, each replacing the estimated one of that year.
    """

    years: tuple[int, ...]
    extra_holidays: frozenset[dt.date] = frozenset()
    not_holidays: frozenset[dt.date] = frozenset()
    ramadans: tuple[tuple[dt.date, dt.date], ...] = ()
    holidays: frozenset[dt.date] = field(init=False)
    ramadan_days: frozenset[dt.date] = field(init=False)

    def __post_init__(self) -> None:
        estimated = set(public_holidays(self.years)) | self.extra_holidays
        object.__setattr__(self, "holidays", frozenset(estimated - self.not_holidays))
        fasting = set(ramadan_days(self.years))
        for first, last in self.ramadans:
            near = {d for d in fasting if abs((d - first).days) <= RAMADAN_DAYS + 10}
            announced = {first + dt.timedelta(days=n) for n in range((last - first).days + 1)}
            fasting = (fasting - near) | announced
        object.__setattr__(self, "ramadan_days", frozenset(fasting))

    @classmethod
    def spanning(cls, first: dt.date, last: dt.date) -> MoroccanCalendar:
        """The estimated calendar of every year from ``first`` to ``last``."""
        return cls(tuple(range(first.year, last.year + 1)))

    def kind(self, day: dt.date) -> DayKind:
        """A holiday wins over Ramadan (Eid al-Fitr itself is a holiday, not a fasting day)."""
        if day in self.holidays:
            return DayKind.HOLIDAY
        if day in self.ramadan_days:
            return DayKind.RAMADAN
        return DayKind.WORKING
