"""Where the sun is, computed on the device: the NOAA formulas, no tables, no network.

A streetlight must switch at dusk and dawn even when it has never heard from the platform,
so the agent computes the sun's elevation itself. The NOAA "general solar position"
equations are accurate to a fraction of a degree, which is a minute or two of switching time.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


def solar_elevation(when: datetime, latitude: float, longitude: float) -> float:
    """Apparent elevation of the sun's centre above the horizon [deg], without refraction.

    when: an aware datetime; latitude [deg north]; longitude [deg east].
    """
    moment = when.astimezone(UTC)
    day_of_year = moment.timetuple().tm_yday
    hours = moment.hour + moment.minute / 60 + moment.second / 3600
    gamma = 2 * math.pi / 365 * (day_of_year - 1 + (hours - 12) / 24)
    equation_of_time = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    declination = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_minutes = hours * 60 + equation_of_time + 4 * longitude
    hour_angle = math.radians(true_solar_minutes / 4 - 180)
    phi = math.radians(latitude)
    cos_zenith = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(
        declination
    ) * math.cos(hour_angle)
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))
