"""The sun and a solar streetlight's charge, over arrays: elevation, time to the next sunrise,
clear-sky irradiance, the energy a battery holds above its low-voltage disconnect.

The edge agents' NOAA "general solar position" equations (``protocol/sun.py``), over numpy
arrays of UNIX times so a backtest computes a month of a fleet at once. A single reading goes
through the same code as a one-element array, so the streaming engine and the backtest agree
to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.sun import (
    declination_and_equation_of_time,
    elevation_at,
    elevation_from,
    gamma_and_hours,
)

Floats = npt.NDArray[np.float64]

LOW_VOLTAGE_DISCONNECT_SOC: Final = 10.0
"""State of charge [%] below which charge controllers cut the lamp to save the battery."""
LAMP_SWITCH_ELEVATION_DEG: Final = -1.0
"""The agents light their lamps while the sun is below this elevation (edge_agents.control)."""


def solar_elevation(unix_s: Floats, latitude: float, longitude: float) -> Floats:
    """Elevation of the sun's centre above the horizon [deg] at each UNIX time [s]."""
    return elevation_at(unix_s, latitude, longitude)


@dataclass(frozen=True, slots=True)
class SunHours:
    """The sun at each time, against one elevation (the agents' -1 deg by default)."""

    elevation: Floats
    """The sun's elevation [deg]."""
    until_sunrise: Floats
    """Hours until it next rises above the elevation; 0 while it is above."""
    until_sunset: Floats
    """Hours until it next sets below the elevation; 0 while it is below."""
    night: Floats
    """Length of the night of the time's date: 24 h less the time it spends above [h]."""


def sun_hours(
    unix_s: Floats,
    latitude: float,
    longitude: float,
    elevation_deg: float = LAMP_SWITCH_ELEVATION_DEG,
) -> SunHours:
    """Sunrise, sunset and the night's length at each time, the sun's position computed once.

    The crossings come from the hour angle at which the sun crosses ``elevation_deg``
    (declination and equation of time taken at the time asked, which is within a minute of
    exact for the hours of one night or day).
    """
    unix = np.asarray(unix_s, dtype=np.float64)
    gamma, hours = gamma_and_hours(unix)
    declination, equation_of_time = declination_and_equation_of_time(gamma)
    elevation = elevation_from(hours, declination, equation_of_time, latitude, longitude)
    half_day_deg = _half_day_deg(declination, latitude, elevation_deg)
    # true solar time of the crossings [min] -> UTC hours of the day
    noon_utc_h = (720.0 - 4 * longitude - equation_of_time) / 60.0
    half_day_h = 4 * half_day_deg / 60.0
    up = elevation >= elevation_deg
    return SunHours(
        elevation=elevation,
        until_sunrise=np.where(up, 0.0, np.mod(noon_utc_h - half_day_h - hours, 24.0)),
        until_sunset=np.where(up, np.mod(noon_utc_h + half_day_h - hours, 24.0), 0.0),
        night=24.0 - 2.0 * half_day_deg / 15.0,
    )


def hours_until_sunrise(
    unix_s: Floats,
    latitude: float,
    longitude: float,
    elevation_deg: float = LAMP_SWITCH_ELEVATION_DEG,
) -> Floats:
    """Hours from each time until the sun next rises above ``elevation_deg``; 0 by day."""
    return sun_hours(unix_s, latitude, longitude, elevation_deg).until_sunrise


def hours_until_sunset(
    unix_s: Floats,
    latitude: float,
    longitude: float,
    elevation_deg: float = LAMP_SWITCH_ELEVATION_DEG,
) -> Floats:
    """Hours from each time until the sun next sets below ``elevation_deg``; 0 by night."""
    return sun_hours(unix_s, latitude, longitude, elevation_deg).until_sunset


def night_hours(
    unix_s: Floats,
    latitude: float,
    longitude: float,
    elevation_deg: float = LAMP_SWITCH_ELEVATION_DEG,
) -> Floats:
    """Length of the night of each time's date [h]: 24 h less the time the sun spends above
    ``elevation_deg``."""
    return sun_hours(unix_s, latitude, longitude, elevation_deg).night


def _half_day_deg(declination: Floats, latitude: float, elevation_deg: float) -> Floats:
    """The hour angle at which the sun crosses ``elevation_deg`` [deg]: half the time it
    spends above it, at 15 deg an hour (0 where it never rises above, 180 never below)."""
    phi = np.radians(latitude)
    cos_hour_angle = (np.sin(np.radians(elevation_deg)) - np.sin(phi) * np.sin(declination)) / (
        np.cos(phi) * np.cos(declination)
    )
    half_day: Floats = np.degrees(np.arccos(np.clip(cos_hour_angle, -1.0, 1.0)))
    return half_day


def clear_sky_irradiance(elevation_deg: Floats) -> Floats:
    """Global horizontal irradiance under a clear sky [W/m2] (Haurwitz), 0 with the sun down."""
    sine = np.sin(np.radians(np.asarray(elevation_deg, dtype=np.float64)))
    up = sine > 0.01
    safe = np.where(up, sine, 1.0)
    irradiance: Floats = np.where(up, 1098.0 * safe * np.exp(-0.057 / safe), 0.0)
    return irradiance


def usable_energy_wh(battery_soc: npt.ArrayLike, battery_wh: npt.ArrayLike) -> Floats:
    """Charge above the low-voltage disconnect [Wh]; battery_soc [%], battery_wh: capacity [Wh]."""
    soc = np.asarray(battery_soc, dtype=np.float64)
    usable: Floats = (
        np.maximum(soc - LOW_VOLTAGE_DISCONNECT_SOC, 0.0)
        / 100.0
        * np.asarray(battery_wh, dtype=np.float64)
    )
    return usable
