"""Outdoor air temperature at a site: seasonal and daily cycles, weather that persists.

The daily mean follows a cosine over the year; the day-night swing is wider in summer and on
clear days; a persistent daily anomaly gives warm and cold spells. Defaults are Sefrou's
climate (850 m, Middle Atlas foothills): summer afternoons of 33-37 C, winter nights near 0 C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from simulators.randomness import persistent_noise
from simulators.sky import FloatArray, Place


@dataclass(frozen=True, slots=True)
class TemperatureClimate:
    annual_mean: float
    """Mean air temperature over the year [C]."""
    seasonal_amplitude: float
    """Half the difference between the warmest and the coldest daily means [K]."""
    warmest_day_of_year: int
    daily_swing_summer: float
    """Half the day-night difference on a clear summer day [K]."""
    daily_swing_winter: float
    """Half the day-night difference on a clear winter day [K]."""
    warmest_solar_hour: float
    """Local solar time of the daily maximum [h]."""
    anomaly_spread: float
    """Standard deviation of a day's mean around the season's [K]."""
    anomaly_persistence: float
    """AR(1) coefficient of the daily anomaly [-]."""


SEFROU_CLIMATE: Final = TemperatureClimate(
    annual_mean=16.5,
    seasonal_amplitude=9.5,
    warmest_day_of_year=205,
    daily_swing_summer=9.5,
    daily_swing_winter=6.0,
    warmest_solar_hour=15.0,
    anomaly_spread=2.0,
    anomaly_persistence=0.7,
)


def air_temperature(
    times: pd.DatetimeIndex,
    place: Place,
    climate: TemperatureClimate,
    daily_clearness: FloatArray,
    daily_anomaly: FloatArray,
    *,
    first_day: pd.Timestamp | None = None,
) -> FloatArray:
    """Air temperature at ``times`` [C].

    daily_clearness: one clearness index per calendar day (UTC) from ``first_day`` (default:
    the day of the first of ``times``) [-], as :func:`simulators.sky.daily_clearness` gives;
    clouds narrow the day-night swing.
    daily_anomaly: the same days' departures from the seasonal mean [K], as
    :func:`temperature_anomaly` gives: warm and cold spells. Each day's values hold at its
    noon (UTC) and blend linearly into the next day's, so the air warms and cools without a
    jump at midnight (given the day after the last of ``times``, it is used for the blend).
    """
    if times.tz is None:
        raise ValueError("times must carry a time zone (UTC recommended)")
    origin = times[0].normalize() if first_day is None else first_day
    day_numbers = (times.normalize() - origin).days.to_numpy()
    days = int(day_numbers.max()) + 1
    for name, daily in (("daily_clearness", daily_clearness), ("daily_anomaly", daily_anomaly)):
        if len(daily) < days:
            raise ValueError(f"{name} has {len(daily)} days; {days} needed")
    day_of_year = (
        times.day_of_year.to_numpy()
        + (times - times.normalize()).total_seconds().to_numpy() / 86_400
    )
    seasonal = np.cos(2 * np.pi * (day_of_year - climate.warmest_day_of_year) / 365.25)
    mean = climate.annual_mean + climate.seasonal_amplitude * seasonal
    clear_swing = (
        climate.daily_swing_winter
        + (climate.daily_swing_summer - climate.daily_swing_winter) * (1 + seasonal) / 2
    )
    # Day values hold at noon (UTC) and blend linearly between: no jump at midnight.
    position = (times - origin).total_seconds().to_numpy() / 86_400 - 0.5
    day_index = np.arange(days + 1 if len(daily_clearness) > days else days)
    clearness = np.interp(position, day_index, daily_clearness[: len(day_index)])
    anomaly = np.interp(position, day_index, daily_anomaly[: len(day_index)])
    swing = clear_swing * (0.4 + 0.6 * clearness)
    utc_hours = times.hour.to_numpy() + times.minute.to_numpy() / 60
    solar_hours = utc_hours + place.longitude / 15.0
    daily_cycle = np.cos(2 * np.pi * (solar_hours - climate.warmest_solar_hour) / 24)
    temperature: FloatArray = mean + anomaly + swing * daily_cycle
    return temperature


def temperature_anomaly(
    days: int, climate: TemperatureClimate, rng: np.random.Generator
) -> FloatArray:
    """One departure of the daily mean from the season's per consecutive day [K]."""
    return climate.anomaly_spread * persistent_noise(days, climate.anomaly_persistence, rng)
