"""The weather over a site, day after day: sunshine, clouds and air temperature.

Each day's clearness and temperature anomaly are drawn once, up front, from the seed, so any
stretch of time asks for the same weather however it is cut into pieces: a real-time run, an
accelerated one and a history generation with the same seed see the same sky.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import numpy as np
import pandas as pd

from simulators.sky import FES_REGION, ClimateParameters, FloatArray, Place, clear_sky_ghi
from simulators.sky import daily_clearness as draw_daily_clearness
from simulators.sky import sun_elevation as pvlib_sun_elevation
from simulators.weather import (
    SEFROU_CLIMATE,
    TemperatureClimate,
    air_temperature,
    temperature_anomaly,
)

DAYS_DRAWN: Final = 3 * 366
"""Days of weather drawn for a simulation; a run asking for more raises."""


@dataclass(frozen=True, slots=True)
class Conditions:
    """The weather at a series of moments; one element per moment."""

    ghi: FloatArray
    """Global horizontal irradiance [W/m^2]."""
    air_temperature: FloatArray
    """[C]"""
    sun_elevation: FloatArray
    """Apparent solar elevation [deg]."""
    clear_sky_ghi: FloatArray
    """What the irradiance would be without clouds [W/m^2]."""


@dataclass(frozen=True, slots=True)
class Now:
    """The weather at one moment."""

    ghi: float
    """[W/m^2]"""
    air_temperature: float
    """[C]"""
    sun_elevation: float
    """[deg]"""

    @classmethod
    def of(cls, conditions: Conditions, index: int) -> Now:
        return cls(
            float(conditions.ghi[index]),
            float(conditions.air_temperature[index]),
            float(conditions.sun_elevation[index]),
        )


@dataclass(frozen=True, slots=True)
class CloudyRun:
    """Days forced overcast: their clearness index replaced by ``clearness``."""

    first_day: date
    """First overcast day (local date; daylight in Morocco falls within the same UTC day)."""
    days: int
    clearness: float
    """Daily clearness index of those days: GHI over clear-sky GHI [-]."""


class SiteWeather:
    """Deterministic weather of one site from ``first_day`` on, for :data:`DAYS_DRAWN` days."""

    def __init__(
        self,
        place: Place,
        first_day: datetime,
        rng: np.random.Generator,
        sky: ClimateParameters = FES_REGION,
        climate: TemperatureClimate = SEFROU_CLIMATE,
    ) -> None:
        self.place = place
        self.first_day = pd.Timestamp(first_day).tz_convert("UTC").normalize()
        calendar = pd.date_range(self.first_day, periods=DAYS_DRAWN, freq="D")
        days_of_year = calendar.day_of_year.to_numpy().astype(np.int64)
        self.daily_clearness = draw_daily_clearness(days_of_year, sky, rng)
        self.daily_anomaly = temperature_anomaly(DAYS_DRAWN, climate, rng)
        self._climate = climate

    def force_overcast(self, run: CloudyRun) -> None:
        """Make the days of ``run`` overcast (those drawn before the first day are ignored)."""
        first = (run.first_day - self.first_day.date()).days
        self.daily_clearness[max(first, 0) : max(first + run.days, 0)] = run.clearness

    def conditions(self, times: pd.DatetimeIndex) -> Conditions:
        """The weather at ``times`` (aware, on or after the first day)."""
        times = times.tz_convert("UTC")
        first = int((times[0].normalize() - self.first_day).days)
        last = int((times[-1].normalize() - self.first_day).days)
        if first < 0 or last >= DAYS_DRAWN:
            raise ValueError(
                f"weather was drawn for {DAYS_DRAWN} days from {self.first_day.date()}; "
                f"{times[0]} to {times[-1]} is outside"
            )
        day_numbers = (times.normalize() - self.first_day).days.to_numpy()
        clear = clear_sky_ghi(times, self.place)
        ghi = clear * self.daily_clearness[day_numbers]
        before = max(first - 1, 0)  # the day before blends into the first one
        temperature = air_temperature(
            times,
            self.place,
            self._climate,
            self.daily_clearness[before:],
            self.daily_anomaly[before:],
            first_day=self.first_day + pd.Timedelta(days=before),
        )
        elevation = pvlib_sun_elevation(times, self.place)
        return Conditions(ghi, temperature, elevation, clear)
