"""When each zone is open: opening hours by the Moroccan calendar, plus booked events.

Works on a grid of times at once (UNIX seconds: a day ahead for the live service, a season
for a what-if), and tells, for each zone and time, whether it is open, how long until it
opens, and how long until it closes: what the optimum start and stop need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from control.strategy import CalendarCorrections, Schedule, Strategy, day_periods, week_periods
from protocol.calendar import DayKind, MoroccanCalendar
from protocol.localtime import utc_offsets

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
EPOCH_DAY: Final = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class ZonePlace:
    """Where a zone is, as schedules name it."""

    kind: str
    """The building's kind (town_hall, library...)."""
    building: str
    zone: str


def calendar_for(
    unix_s: npt.ArrayLike, corrections: CalendarCorrections | None = None
) -> MoroccanCalendar:
    """The Moroccan calendar spanning ``unix_s`` (and the year before), with a strategy's
    corrections."""
    times = np.asarray(unix_s, dtype=np.int64)
    first, last = (datetime.fromtimestamp(int(t), UTC).year for t in (times[0], times[-1]))
    years = tuple(range(first - 1, last + 1))
    if corrections is None:
        return MoroccanCalendar(years)
    return MoroccanCalendar(
        years,
        extra_holidays=frozenset(corrections.holidays_added),
        not_holidays=frozenset(corrections.holidays_removed),
        ramadans=tuple((period.first, period.last) for period in corrections.ramadan),
    )


def open_grid(
    strategy: Strategy,
    places: Sequence[ZonePlace],
    unix_s: npt.ArrayLike,
    calendar: MoroccanCalendar,
    tz: str,
) -> BoolArray:
    """(zones, times): whether each zone is open at each time (UNIX seconds), by the clock of
    time zone ``tz``.

    A zone without a schedule is never open by the clock (it follows its occupancy sensor).
    """
    stamps = np.asarray(unix_s, dtype=np.int64)
    local = stamps + utc_offsets(stamps, tz).astype(np.int64)
    minutes = (local // 60) % 1_440
    days = local // 86_400
    weekday = (days + 3) % 7  # 1 January 1970 was a Thursday; Monday is 0
    unique_days, codes = np.unique(days, return_inverse=True)
    kinds = np.array(
        [calendar.kind(EPOCH_DAY + timedelta(days=int(day))).value for day in unique_days],
        dtype=object,
    )
    day_kind = kinds[codes] if len(unique_days) else np.zeros(0, dtype=object)
    grid = np.zeros((len(places), len(stamps)), dtype=np.bool_)
    by_schedule: dict[int, BoolArray] = {}
    for row, place in enumerate(places):
        schedule = strategy.schedule_for(place.kind, place.building, place.zone)
        if schedule is None:
            continue
        key = id(schedule)
        if key not in by_schedule:
            by_schedule[key] = _open(schedule, minutes, weekday, day_kind)
        grid[row] = by_schedule[key]
    for event in strategy.events:
        start, end = _unix(event.start), _unix(event.end)
        during = (stamps >= start) & (stamps < end)
        for row, place in enumerate(places):
            if place.building == event.building and (not event.zones or place.zone in event.zones):
                grid[row] |= during
    return grid


def _unix(moment: datetime) -> int:
    """A strategy's time as UNIX seconds; one without a zone is UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp())


def _open(
    schedule: Schedule,
    minutes: npt.NDArray[np.int64],
    weekday: npt.NDArray[np.int64],
    day_kind: npt.NDArray[np.object_],
) -> BoolArray:
    opened = np.zeros(minutes.shape, dtype=np.bool_)
    ramadan_week = schedule.ramadan if schedule.ramadan is not None else schedule.week
    for kind, week in ((DayKind.WORKING, schedule.week), (DayKind.RAMADAN, ramadan_week)):
        for day, periods in week_periods(week).items():
            chosen = (day_kind == kind.value) & (weekday == day)
            for start, end in periods:
                opened |= chosen & (minutes >= start) & (minutes < end)
    holiday = day_kind == DayKind.HOLIDAY.value
    for start, end in day_periods(schedule.holidays):
        opened |= holiday & (minutes >= start) & (minutes < end)
    return opened


def outlook(grid: BoolArray, step_s: float) -> tuple[FloatArray, FloatArray]:
    """For each zone and time: hours until it opens (0 while open) and until it closes (0
    while closed); inf when the grid shows no such change ahead."""
    count = grid.shape[1]
    index = np.arange(count)

    def next_index(mask: BoolArray) -> npt.NDArray[np.int64]:
        marked = np.where(mask, index, count)
        found: npt.NDArray[np.int64] = np.minimum.accumulate(marked[:, ::-1], axis=1)[:, ::-1]
        return found

    hours = step_s / 3_600
    opens_at = next_index(grid)
    closes_at = next_index(~grid)
    to_start = np.where(opens_at >= count, np.inf, (opens_at - index) * hours)
    to_end = np.where(grid, np.where(closes_at >= count, np.inf, (closes_at - index) * hours), 0.0)
    return to_start.astype(np.float64), to_end.astype(np.float64)
