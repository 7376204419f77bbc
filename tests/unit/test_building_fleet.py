"""The simulated zones' motorised windows and blinds: they move only where a zone has them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from protocol.faults import FaultType
from protocol.sites import parse_site
from simulators.building_fleet import BuildingFleet
from simulators.environment import Now

SITE = """
site: {id: simtown, name: Simtown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
buildings:
  - {id: new, name: Retrofitted, kind: town_hall, latitude: 33.83, longitude: -4.84,
     motorised_windows: true, external_blinds: true, zones: [a]}
  - {id: old, name: As built, kind: town_hall, latitude: 33.83, longitude: -4.84, zones: [a]}
"""
NIGHT = datetime(2026, 7, 14, 23, tzinfo=UTC)


def fleet() -> BuildingFleet:
    zones = BuildingFleet(parse_site(SITE).devices, 30.0, np.random.default_rng(1))
    zones.temperature[:] = 30.0
    return zones


def no_faults(count: int) -> dict[FaultType, np.ndarray]:
    return {fault: np.zeros(count, dtype=bool) for fault in FaultType}


def test_night_ventilation_cools_only_the_zone_with_motorised_windows() -> None:
    zones = fleet()
    for index in range(2):
        zones.actuate(index, {"vents_open": 1.0})
    now = NIGHT
    for _ in range(60):
        now += timedelta(minutes=1)
        zones.step(Now(ghi=0.0, air_temperature=18.0, sun_elevation=-20.0), now, 60.0, no_faults(2))
    retrofitted, as_built = zones.temperature
    assert retrofitted < as_built - 0.3
    assert list(zones.values()["vents_open"]) == [1.0, 0.0]
    assert list(zones.values()["window_open"]) == [0.0, 0.0], "no window contact is open"


def test_lowered_blinds_keep_the_sun_out_only_where_a_zone_has_them() -> None:
    zones = fleet()
    for index in range(2):
        zones.actuate(index, {"blinds_down": 1.0})
    now = NIGHT.replace(hour=11)
    for _ in range(60):
        now += timedelta(minutes=1)
        zones.step(
            Now(ghi=900.0, air_temperature=30.0, sun_elevation=70.0), now, 60.0, no_faults(2)
        )
    retrofitted, as_built = zones.temperature
    assert retrofitted < as_built - 0.1
    assert list(zones.values()["blinds_down"]) == [1.0, 0.0]
