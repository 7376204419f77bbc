"""Tonight's battery, foretold from a light's own readings: the names behind "will go dark".

A solar light goes dark at night when its battery holds less than the night asks of it. The
platform's lighting service plans each night from the charge the light reports and its
*rated* capacity (``control.lighting.plan_night``: never more than 90 % of the usable
energy, never below the minimum level unless the battery cannot carry even that), so two
things darken a street:

- a battery too low to carry the minimum level all night (a cloudy run, a dead charge
  controller, a soiled panel): the plan has to go below the minimum;
- a battery that holds less than its rating says (capacity fade): the plan spends what the
  rating promises and the lamp is cut before dawn.

The names here let a rule see both coming, hours before dusk, per light, from what the light
itself showed:

``learnt_battery_wh``
    the capacity its latest night's discharge shows: energy the lamp drew (over the discharge
    efficiency) per percent of charge lost, while the panel gave nothing [Wh], from the latest
    of the last :data:`LEARN_NIGHTS` nights that lost :data:`MIN_LEARNT_DROP` percent; NaN
    without one.
``tonight_battery_wh``
    the capacity tonight's discharge so far shows, the same way [Wh]; NaN until tonight lost
    :data:`MIN_LEARNT_DROP` percent: a battery that wears out shows it within the night.
``tonight_usable_energy_wh``
    the charge now above the low-voltage disconnect, in that capacity [Wh].
``dusk_battery_soc``
    the charge expected at the coming dusk, as the lighting service will see it when it plans
    the night (the setting sun at :data:`PLAN_ELEVATION_DEG`) [%]: the charge now, plus the
    rest of today's harvest until then: the last two hours' clearness (harvest over clear-sky
    harvest; the day's so far in the morning) times the clear-sky energy still to come,
    through the controller and into a battery of the learnt capacity (the rated one until
    learnt), less what a lamp lit by day draws until sunset; between 0 and 100.
``dusk_usable_energy_wh``
    that charge above the low-voltage disconnect, in the learnt capacity: what the battery
    will really give tonight [Wh].
``dusk_estimated_usable_energy_wh``
    the same charge counted in the rated capacity: what a plan made from the reported charge
    will count on [Wh].
``coming_night_hours``
    the length of the night, from the sun going below the lamps' switching elevation to its
    rising above it [h].
``last_night_mean_level``
    the lamp's mean dimming level while lit last night (local noon to noon) [%]: what its
    plans ask of it.

:func:`derive_forecast` computes them over a device's whole history (the backtest);
:class:`ForecastMemory` from each new reading (the streaming engine), the same values from
per-day and per-night sums.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.catalogue import CATALOGUE
from protocol.localtime import local_days, utc_offsets
from protocol.solar import (
    SunHours,
    clear_sky_irradiance,
    solar_elevation,
    sun_hours,
    usable_energy_wh,
)
from protocol.sun import SECONDS_PER_DAY
from protocol.topics import DeviceClass
from rules.names import FORECAST_NAMES

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

NAMES: Final = FORECAST_NAMES
READING_INTERVAL_S: Final = float(CATALOGUE[DeviceClass.STREETLIGHT].expected_interval_s)
MAX_GAP_S: Final = CATALOGUE[DeviceClass.STREETLIGHT].longest_counted_gap_s
"""A reading counts for the time since the previous one, at most this [s] (the first one for
a reading interval)."""
DISCHARGE_EFFICIENCY: Final = 0.97
"""Share of the energy taken from a LiFePO4 battery that reaches the lamp [-]."""
CHARGE_PATH_EFFICIENCY: Final = 0.96 * 0.97
"""Share of the panel's output that ends up in the battery: MPPT controller, then charging."""
LEARN_NIGHTS: Final = 3
"""The capacity comes from the latest of this many nights before the present one that lost
enough charge."""
MIN_LEARNT_DROP: Final = 5.0
"""Charge a night must have lost for the capacity it shows to count [%]."""
NO_HARVEST_W: Final = 0.5
"""Below this panel output a reading counts as discharge only [W]."""
PLAN_ELEVATION_DEG: Final = 6.0
"""The lighting service plans the night from the charge it sees when the setting sun passes
this elevation (``control.lighting_service``: 7 deg above the lamps' -1 deg)."""
RECENT_S: Final = 2 * 3_600.0
"""The rest of the day is expected as clear as the last this many seconds [s]."""
RECENT_MIN_CLEAR_WH: Final = 10.0
"""...if they could have harvested this much under a clear sky [Wh]; else as the day so far."""
CURVE_STEP_S: Final = 300
"""Step of the clear-sky curve of a day [s]."""


@dataclass(frozen=True, slots=True)
class LightPlace:
    """What the forecast needs to know of a light."""

    latitude: float
    longitude: float
    timezone: str
    panel_wp: float
    battery_wh: float


def nights(unix_s: Floats, timezone: str) -> Ints:
    """The night each time belongs to: local noon to the next local noon, as the day of its
    evening (days since 1970-01-01)."""
    local = np.asarray(unix_s, dtype=np.float64) + utc_offsets(unix_s, timezone)
    return np.floor((local - SECONDS_PER_DAY / 2) / SECONDS_PER_DAY).astype(np.int64)


def clear_day_curve(day: int, place: LightPlace) -> tuple[Floats, Floats]:
    """Local day ``day``'s clear-sky panel energy until the night is planned (the setting
    sun at :data:`PLAN_ELEVATION_DEG`): grid times [s] and the energy from the day's start to
    each of them [Wh]."""
    midnight = day * SECONDS_PER_DAY
    offset = float(utc_offsets(np.array([midnight]), place.timezone)[0])
    steps = np.arange(int(SECONDS_PER_DAY) // CURVE_STEP_S + 1, dtype=np.float64)
    grid: Floats = midnight - offset + CURVE_STEP_S * steps
    elevation = solar_elevation(grid, place.latitude, place.longitude)
    afternoon = np.arange(len(grid)) > np.argmax(elevation)
    planned = afternoon & (elevation < PLAN_ELEVATION_DEG)
    power = np.where(planned, 0.0, place.panel_wp * clear_sky_irradiance(elevation) / 1_000.0)
    energy = (power[1:] + power[:-1]) / 2 * CURVE_STEP_S / 3_600.0
    return grid, np.concatenate(([0.0], np.cumsum(energy)))


def _remaining_clear_wh(unix_s: Floats, curve: tuple[Floats, Floats]) -> Floats:
    """The clear-sky energy of the day still to come after each time [Wh]."""
    grid, energy = curve
    remaining: Floats = energy[-1] - np.interp(unix_s, grid, energy)
    return remaining


def gaps_h(unix_s: Floats) -> Floats:
    """Hours each reading counts for: since the previous one, at most :data:`MAX_GAP_S`."""
    gaps = np.diff(np.asarray(unix_s, dtype=np.float64), prepend=np.nan)
    gaps[:1] = READING_INTERVAL_S
    return np.minimum(gaps, MAX_GAP_S) / 3_600.0


@dataclass(frozen=True, slots=True)
class _Parts:
    """Per reading, what the forecast sums: the day's harvest and clear-sky harvest, the
    discharge (energy drawn, charge lost) and the lamp's level while lit."""

    harvest_wh: Floats
    clear_wh: Floats
    drawn_wh: Floats
    drop: Floats
    level: Floats
    lit: Floats


def _parts(gap_h: Floats, env: Mapping[str, Floats], count: int) -> _Parts:
    missing = np.full(count, np.nan)
    pv = env.get("pv_power", missing)
    clear = env["clear_sky_pv_power"]
    sunny = ~np.isnan(pv)
    soc, previous = env.get("battery_soc", missing), env.get("prev_battery_soc", missing)
    lamp = env.get("lamp_power", missing)
    discharging = (
        (np.nan_to_num(pv, nan=np.inf) <= NO_HARVEST_W)
        & ~np.isnan(soc)
        & ~np.isnan(previous)
        & ~np.isnan(lamp)
    )
    lit = env.get("lamp_on", missing) > 0.5
    level = env.get("dimming_level", missing)
    lit &= ~np.isnan(level)
    return _Parts(
        harvest_wh=np.where(sunny, pv * gap_h, 0.0),
        clear_wh=np.where(sunny, clear * gap_h, 0.0),
        drawn_wh=np.where(discharging, lamp * gap_h / DISCHARGE_EFFICIENCY, 0.0),
        drop=np.where(discharging, np.maximum(previous - soc, 0.0), 0.0),
        level=np.where(lit, level, 0.0),
        lit=lit.astype(np.float64),
    )


def _learnt(nights: Sequence[tuple[float, float]]) -> float:
    """The capacity the latest night that lost :data:`MIN_LEARNT_DROP` of charge shows
    (``nights``: energy drawn [Wh] and charge lost [%] of each, oldest first); NaN if none.
    The latest such night alone, so that a battery that has just worn out shows it the next
    day, not once its older nights have left the window."""
    for drawn, lost in reversed(nights):
        if lost >= MIN_LEARNT_DROP:
            return 100.0 * drawn / lost
    return float("nan")


def _names(  # noqa: PLR0917 - the parts of the forecast
    place: LightPlace,
    soc: Floats,
    learnt: Floats,
    net_wh: Floats,
    night_h: Floats,
    last_level: Floats,
    tonight: Floats,
) -> dict[str, Floats]:
    """net_wh: what the battery gains until dusk, harvest in less a lamp lit by day [Wh]."""
    capacity = np.where(np.isnan(learnt), place.battery_wh, learnt)
    with np.errstate(invalid="ignore", divide="ignore"):
        gained = net_wh / capacity * 100.0
    dusk_soc = np.clip(soc + np.nan_to_num(gained, nan=0.0), 0.0, 100.0)
    return {
        "learnt_battery_wh": learnt,
        "tonight_battery_wh": tonight,
        "tonight_usable_energy_wh": usable_energy_wh(soc, tonight),
        "dusk_battery_soc": dusk_soc,
        "dusk_usable_energy_wh": usable_energy_wh(dusk_soc, capacity),
        "dusk_estimated_usable_energy_wh": usable_energy_wh(dusk_soc, place.battery_wh),
        "coming_night_hours": night_h,
        "last_night_mean_level": last_level,
    }


@dataclass(frozen=True, slots=True)
class _Sky:
    """What the day has shown of the sky at each reading: harvest and clear-sky harvest [Wh],
    today so far and over the last :data:`RECENT_S`."""

    harvest_today: Floats
    clear_today: Floats
    harvest_recent: Floats
    clear_recent: Floats

    def clearness(self) -> Floats:
        """The recent hours' clearness, today's so far while they showed too little sky
        (mornings), 0 before the day showed any."""
        with np.errstate(invalid="ignore", divide="ignore"):
            today = np.where(self.clear_today > 0, self.harvest_today / self.clear_today, 0.0)
            recent = self.harvest_recent / self.clear_recent
        clearness: Floats = np.where(self.clear_recent >= RECENT_MIN_CLEAR_WH, recent, today)
        return clearness


def _net_until_dusk(
    sky: _Sky, remaining_clear: Floats, env: Mapping[str, Floats], until_dusk: Floats
) -> Floats:
    """What the battery gains from now until dusk [Wh]: the rest of today's harvest (the
    recent clearness times the clear-sky energy still to come, through the charge path; none
    while the controller reports that it cannot charge), less what a lamp lit now (by day: a
    stuck relay) draws until sunset."""
    clearness = sky.clearness()
    fault = env.get("status_charge_mosfet_fault")
    charging = 1.0 if fault is None else np.where(fault > 0.5, 0.0, 1.0)
    harvested = clearness * remaining_clear * charging * CHARGE_PATH_EFFICIENCY
    lamp = np.nan_to_num(env.get("lamp_power", np.zeros(len(until_dusk))), nan=0.0)
    net: Floats = harvested - lamp * until_dusk / DISCHARGE_EFFICIENCY
    return net


def derive_forecast(
    place: LightPlace, unix_s: Floats, env: Mapping[str, Floats], sun: SunHours
) -> dict[str, Floats]:
    """The forecast names of every reading of one light (``env``: its readings and
    ``clear_sky_pv_power``, ``prev_battery_soc``; ``sun``: :func:`protocol.solar.sun_hours`
    at the lamps' switching elevation), readings in time order."""
    count = len(unix_s)
    if count == 0:
        return {name: np.empty(0) for name in NAMES}
    parts = _parts(gaps_h(unix_s), env, count)
    days = local_days(unix_s, place.timezone)
    unique_days, day_index = np.unique(days, return_inverse=True)
    total_harvest, total_clear = np.cumsum(parts.harvest_wh), np.cumsum(parts.clear_wh)
    since = np.searchsorted(unix_s, unix_s - RECENT_S, "right") - 1
    before = np.clip(since, 0, None)
    sky = _Sky(
        harvest_today=_cumulative_within(parts.harvest_wh, day_index),
        clear_today=_cumulative_within(parts.clear_wh, day_index),
        harvest_recent=total_harvest - np.where(since >= 0, total_harvest[before], 0.0),
        clear_recent=total_clear - np.where(since >= 0, total_clear[before], 0.0),
    )
    remaining = np.empty(count)
    for position, day in enumerate(unique_days):
        members = day_index == position
        remaining[members] = _remaining_clear_wh(unix_s[members], clear_day_curve(int(day), place))
    night_of = nights(unix_s, place.timezone)
    unique_nights, night_index = np.unique(night_of, return_inverse=True)
    size = len(unique_nights)
    drawn = np.bincount(night_index, weights=parts.drawn_wh, minlength=size)
    dropped = np.bincount(night_index, weights=parts.drop, minlength=size)
    level_sum = np.bincount(night_index, weights=parts.level, minlength=size)
    lit_count = np.bincount(night_index, weights=parts.lit, minlength=size)
    learnt_by_night = np.empty(size)
    last_level_by_night = np.full(size, np.nan)
    for position, night in enumerate(unique_nights):
        window = np.flatnonzero((unique_nights < night) & (unique_nights >= night - LEARN_NIGHTS))
        learnt_by_night[position] = _learnt([(float(drawn[k]), float(dropped[k])) for k in window])
        previous = np.flatnonzero(unique_nights == night - 1)
        if len(previous) and lit_count[previous[0]] > 0:
            last_level_by_night[position] = level_sum[previous[0]] / lit_count[previous[0]]
    missing = np.full(count, np.nan)
    return _names(
        place,
        env.get("battery_soc", missing),
        learnt_by_night[night_index],
        _net_until_dusk(sky, remaining, env, sun.until_sunset),
        sun.night,
        last_level_by_night[night_index],
        _tonight(
            _cumulative_within(parts.drawn_wh, night_index),
            _cumulative_within(parts.drop, night_index),
        ),
    )


def _tonight(drawn_wh: Floats, lost: Floats) -> Floats:
    """The capacity tonight's discharge so far shows [Wh]; NaN until it lost
    :data:`MIN_LEARNT_DROP` of charge."""
    with np.errstate(invalid="ignore", divide="ignore"):
        capacity: Floats = np.where(lost >= MIN_LEARNT_DROP, 100.0 * drawn_wh / lost, np.nan)
    return capacity


def _cumulative_within(values: Floats, group: npt.NDArray[np.intp]) -> Floats:
    """Running sums of ``values`` restarting at each group (groups contiguous, in order)."""
    total = np.cumsum(values)
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    before = np.concatenate(([0.0], total))[starts]
    lengths = np.diff(np.append(starts, len(values)))
    running: Floats = total - np.repeat(before, lengths)
    return running


@dataclass
class ForecastMemory:
    """What the streaming engine keeps of one light for its forecast names."""

    place: LightPlace
    last_unix_s: float | None = None
    today: tuple[int, float, float] = (-1, 0.0, 0.0)
    """The local day of the latest reading, its harvest and clear-sky harvest so far [Wh]."""
    curve: tuple[Floats, Floats] | None = None
    """That day's :func:`clear_day_curve`."""
    night_sums: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    """Night -> (energy drawn [Wh], charge lost [%], sum of lit levels, lit readings)."""
    recent: deque[tuple[float, float, float]] = field(default_factory=deque)
    """The readings of the last :data:`RECENT_S`: time, harvest, clear-sky harvest."""

    def to_json(self) -> dict[str, object]:
        """Its sums as plain JSON (the day's clear-sky curve is computed again)."""
        return {
            "last_unix_s": self.last_unix_s,
            "today": list(self.today),
            "night_sums": {str(night): list(sums) for night, sums in self.night_sums.items()},
            "recent": [list(item) for item in self.recent],
        }

    @classmethod
    def from_json(cls, place: LightPlace, data: object) -> ForecastMemory:
        """A memory saved by :meth:`to_json`; a fresh one for anything that is not one (the
        forecast then learns again, as after a first start)."""
        if not isinstance(data, dict):
            return cls(place)
        try:
            last = data.get("last_unix_s")
            day, harvest, clear = _three(data["today"])
            memory = cls(
                place,
                last_unix_s=None if last is None else float(last),
                today=(int(day), harvest, clear),
                night_sums={
                    int(night): _four(sums) for night, sums in dict(data["night_sums"]).items()
                },
                recent=deque(_three(item) for item in data["recent"]),
            )
        except (KeyError, TypeError, ValueError):
            return cls(place)
        numbers = [memory.last_unix_s or 0.0, harvest, clear]
        numbers += [value for sums in memory.night_sums.values() for value in sums]
        numbers += [value for item in memory.recent for value in item]
        return memory if all(math.isfinite(value) for value in numbers) else cls(place)

    def derive(self, unix_s: float, env: Mapping[str, Floats]) -> dict[str, Floats]:
        """The forecast names of one new reading (``env``: its 1-element arrays)."""
        times = np.array([unix_s])
        gap = (
            READING_INTERVAL_S / 3_600.0
            if self.last_unix_s is None
            else min(unix_s - self.last_unix_s, MAX_GAP_S) / 3_600.0
        )
        self.last_unix_s = unix_s
        parts = _parts(np.array([gap]), env, 1)
        day = int(local_days(times, self.place.timezone)[0])
        if day != self.today[0] or self.curve is None:
            # A memory restored mid-day keeps the day's sums; only the curve is computed again.
            if day != self.today[0]:
                self.today = (day, 0.0, 0.0)
            self.curve = clear_day_curve(day, self.place)
        harvest = self.today[1] + float(parts.harvest_wh[0])
        clear = self.today[2] + float(parts.clear_wh[0])
        self.today = (day, harvest, clear)
        self.recent.append((unix_s, float(parts.harvest_wh[0]), float(parts.clear_wh[0])))
        while self.recent[0][0] <= unix_s - RECENT_S:
            self.recent.popleft()
        sky = _Sky(
            np.array([harvest]),
            np.array([clear]),
            np.array([sum(item[1] for item in self.recent)]),
            np.array([sum(item[2] for item in self.recent)]),
        )
        night = int(nights(times, self.place.timezone)[0])
        sun = sun_hours(times, self.place.latitude, self.place.longitude)
        drawn, lost, levels, lit = self.night_sums.get(night, (0.0, 0.0, 0.0, 0.0))
        self.night_sums[night] = (
            drawn + float(parts.drawn_wh[0]),
            lost + float(parts.drop[0]),
            levels + float(parts.level[0]),
            lit + float(parts.lit[0]),
        )
        for old in [old for old in self.night_sums if old < night - LEARN_NIGHTS]:
            del self.night_sums[old]
        learnt = _learnt(
            [(sums[0], sums[1]) for past, sums in sorted(self.night_sums.items()) if past < night]
        )
        last = self.night_sums.get(night - 1)
        last_level = last[2] / last[3] if last is not None and last[3] > 0 else float("nan")
        return _names(
            self.place,
            env.get("battery_soc", np.array([np.nan])),
            np.array([learnt]),
            _net_until_dusk(sky, _remaining_clear_wh(times, self.curve), env, sun.until_sunset),
            sun.night,
            np.array([last_level]),
            _tonight(np.array([self.night_sums[night][0]]), np.array([self.night_sums[night][1]])),
        )


def _numbers(values: object, count: int) -> list[float]:
    if not isinstance(values, list) or len(values) != count:
        raise ValueError(f"not {count} numbers: {values!r}")
    return [float(value) for value in values]


def _four(values: object) -> tuple[float, float, float, float]:
    first, second, third, fourth = _numbers(values, 4)
    return first, second, third, fourth


def _three(values: object) -> tuple[float, float, float]:
    first, second, third = _numbers(values, 3)
    return first, second, third
