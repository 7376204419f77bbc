"""Where the sun is, computed on the device: the NOAA formulas, no tables, no network.

A streetlight must switch at dusk and dawn even when it has never heard from the platform,
so the agent computes the sun's elevation itself. The NOAA "general solar position"
equations are accurate to a fraction of a degree, which is a minute or two of switching time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
SECONDS_PER_DAY: Final = 86_400.0


def solar_elevation(when: datetime, latitude: float, longitude: float) -> float:
    """Apparent elevation of the sun's centre above the horizon [deg], without refraction.

    when: an aware datetime; latitude [deg north]; longitude [deg east].
    """
    return float(elevation_at(np.array([when.timestamp()]), latitude, longitude)[0])


def elevation_at(unix_s: Floats, latitude: float, longitude: float) -> Floats:
    """:func:`solar_elevation` at each UNIX time [s] of an array (the rules' backtests)."""
    gamma, hours = gamma_and_hours(np.asarray(unix_s, dtype=np.float64))
    declination, equation_of_time = declination_and_equation_of_time(gamma)
    return elevation_from(hours, declination, equation_of_time, latitude, longitude)


def elevation_from(
    hours: Floats, declination: Floats, equation_of_time: Floats, latitude: float, longitude: float
) -> Floats:
    """The elevation [deg] from the UTC hour, declination [rad] and equation of time [min]
    (:func:`gamma_and_hours`, :func:`declination_and_equation_of_time`)."""
    true_solar_minutes = hours * 60 + equation_of_time + 4 * longitude
    hour_angle = np.radians(true_solar_minutes / 4 - 180)
    phi = np.radians(latitude)
    cos_zenith = np.sin(phi) * np.sin(declination) + np.cos(phi) * np.cos(declination) * np.cos(
        hour_angle
    )
    elevation: Floats = 90.0 - np.degrees(np.arccos(np.clip(cos_zenith, -1.0, 1.0)))
    return elevation


def gamma_and_hours(unix_s: Floats) -> tuple[Floats, Floats]:
    """The fractional year [rad] and the UTC hour of the day of each time."""
    days = np.floor(unix_s / SECONDS_PER_DAY)
    hours = (unix_s - days * SECONDS_PER_DAY) / 3_600.0
    dates = days.astype("datetime64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.float64) + 1.0
    gamma = 2 * np.pi / 365 * (day_of_year - 1 + (hours - 12) / 24)
    return gamma, hours


def declination_and_equation_of_time(gamma: Floats) -> tuple[Floats, Floats]:
    """The sun's declination [rad] and the equation of time [min] (NOAA's series)."""
    equation_of_time = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
    )
    declination = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    return declination, equation_of_time
