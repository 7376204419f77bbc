"""The sun and the sky over a site: solar position, clear-sky and cloudy irradiance.

Solar position and clear-sky irradiance come from pvlib (NREL SPA position, Ineichen-Perez
clear sky with the Linke turbidity climatology pvlib ships). Clouds are a model of our own:
a daily clearness index, the day's irradiance as a fraction of the clear-sky day, drawn from an
autocorrelated random process whose mean and spread follow the season, so that cloudy days
come in runs as they do in a Middle-Atlas winter.

Every function takes time as an argument; nothing reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from simulators.randomness import persistent_noise

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Place:
    latitude: float
    """[deg], north positive"""
    longitude: float
    """[deg], east positive"""
    altitude: float
    """[m] above sea level"""


SEFROU: Final = Place(latitude=33.83, longitude=-4.84, altitude=850.0)


@dataclass(frozen=True, slots=True)
class ClimateParameters:
    """Daily clearness index K = GHI(day) / clear-sky GHI(day) [-].

    K's mean follows a cosine over the year, highest on ``clearest_day_of_year``; its spread
    is largest in the cloudiest season; day-to-day persistence is an AR(1) coefficient.
    """

    mean_clearness: float
    seasonal_amplitude: float
    clearest_day_of_year: int
    spread_summer: float
    spread_winter: float
    persistence: float
    """AR(1) coefficient of the daily anomaly [-]: 0 independent days, near 1 long runs."""


FES_REGION: Final = ClimateParameters(
    mean_clearness=0.81,
    seasonal_amplitude=0.12,
    clearest_day_of_year=196,
    spread_summer=0.06,
    spread_winter=0.13,
    persistence=0.6,
)
"""Calibrated so that a simulated year gives the region's 1,800-1,900 kWh/m^2 of global
horizontal irradiation (about 3,000 hours of sunshine; cloudy, wetter winters)."""


def _times(times: pd.DatetimeIndex) -> pd.DatetimeIndex:
    if times.tz is None:
        raise ValueError("times must carry a time zone (UTC recommended)")
    return times


def sun_elevation(times: pd.DatetimeIndex, place: Place) -> FloatArray:
    """Apparent solar elevation above the horizon, refraction included [deg]."""
    position = pvlib.solarposition.get_solarposition(
        _times(times), place.latitude, place.longitude, altitude=place.altitude
    )
    return np.asarray(position["apparent_elevation"], dtype=np.float64)


def clear_sky_ghi(times: pd.DatetimeIndex, place: Place) -> FloatArray:
    """Global horizontal irradiance under a clear sky [W/m^2]."""
    location = pvlib.location.Location(place.latitude, place.longitude, altitude=place.altitude)
    clear = location.get_clearsky(_times(times), model="ineichen")
    return np.asarray(clear["ghi"], dtype=np.float64)


def daily_clearness(
    days_of_year: npt.NDArray[np.int64],
    climate: ClimateParameters,
    rng: np.random.Generator,
) -> FloatArray:
    """One clearness index per consecutive day [-], in [0.08, 1].

    ``days_of_year``: day of year (1-366) of each consecutive day simulated.
    """
    phase = 2 * np.pi * (days_of_year - climate.clearest_day_of_year) / 365.25
    seasonal = np.cos(phase)  # +1 at the clearest day, -1 half a year later
    mean = climate.mean_clearness + climate.seasonal_amplitude * seasonal
    spread = (
        climate.spread_summer + (climate.spread_winter - climate.spread_summer) * (1 - seasonal) / 2
    )
    anomaly = persistent_noise(len(days_of_year), climate.persistence, rng)
    clearness: FloatArray = np.clip(mean + spread * anomaly, 0.08, 1.0)
    return clearness


def cloudy_ghi(
    times: pd.DatetimeIndex,
    place: Place,
    climate: ClimateParameters,
    rng: np.random.Generator,
) -> FloatArray:
    """Global horizontal irradiance with the day's clouds [W/m^2].

    Each calendar day (UTC) gets one clearness index, applied to that day's clear-sky curve.
    """
    times = _times(times)
    day_numbers = (times.normalize() - times[0].normalize()).days.to_numpy()
    first_day = times[0].normalize()
    calendar = pd.date_range(first_day, periods=int(day_numbers.max()) + 1, freq="D")
    clearness = daily_clearness(calendar.day_of_year.to_numpy().astype(np.int64), climate, rng)
    ghi: FloatArray = clear_sky_ghi(times, place) * clearness[day_numbers]
    return ghi
