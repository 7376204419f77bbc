"""Every zone of every municipal building of a site, stepped together, faults included.

The physics is :mod:`simulators.building` and the people :mod:`simulators.occupancy`; this
module keeps the zones' state (temperatures, supply water, air quality, meters) and the
commands their agents gave, and turns them into what each zone's sensors report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

import numpy as np
import pandas as pd

from edge_agents.drivers import Outputs
from protocol.calendar import MoroccanCalendar
from protocol.faults import FaultType
from protocol.sites import Device
from simulators.building import (
    BoolArray,
    Coupling,
    FloatArray,
    ZoneParameters,
    advance,
    building_coupling,
    co2_step,
    concatenate_zones,
    hvac,
    internal_gains,
    moisture_step,
    relative_humidity,
    supply_water_step,
    vapour_density,
    ventilation_rate,
    zone_parameters,
)
from simulators.environment import Now
from simulators.occupancy import SITE_TIMEZONE, occupancy, ramadan_flags

Faults = Mapping[FaultType, BoolArray]

PEOPLE_PER_M2: Final = 0.1
"""Design occupancy of a zone: one person per 10 m^2 [1/m^2]."""
OUTDOOR_HUMIDITY: Final = 55.0
"""Outdoor relative humidity, a yearly mean for Sefrou [%RH]."""
STUCK_VALVE_POSITION: Final = 100.0
"""A stuck valve in these simulations is jammed wide open [%]."""
SHORT_CYCLE_S: Final = 240.0
"""A short-cycling zone's heating runs the first half of every such period and drops out the
second half, for as long as the zone calls for heat [s]."""
HEATING_FAILURE_SHARE: Final = 0.03
"""What an air-locked radiator still gives, as a share of a working one's heat [-]."""


def zone_plant(devices: Sequence[Device]) -> tuple[ZoneParameters, Coupling]:
    """The thermal parameters of a site's zones (one building device each) and their coupling.

    A zone's ``area_m2``, ``heating`` and ``cooling`` come from its device's metadata; zones of
    the same building exchange heat.
    """
    parts = [
        zone_parameters(
            np.array([float(device.metadata.get("area_m2", 100.0))]),
            heated=bool(device.metadata.get("heating", True)),
            cooled=bool(device.metadata.get("cooling", True)),
        )
        for device in devices
    ]
    buildings = {name: i for i, name in enumerate(dict.fromkeys(d.building for d in devices))}
    params = concatenate_zones(parts) if parts else zone_parameters(np.zeros(0))
    coupling = building_coupling(np.array([buildings[d.building] for d in devices], dtype=np.intp))
    return params, coupling


def zone_capacity(device: Device) -> int:
    """The most people a zone holds: one per 10 m^2 of floor, at least one."""
    return max(1, round(float(device.metadata.get("area_m2", 100.0)) * PEOPLE_PER_M2))


class BuildingFleet:
    def __init__(
        self, devices: Sequence[Device], air_temperature: float, rng: np.random.Generator
    ) -> None:
        self.ids = [device.id for device in devices]
        count = len(devices)
        self._rng = rng
        self._kinds = [str(device.metadata.get("building_kind", "town_hall")) for device in devices]
        self._zones = [device.zone or "" for device in devices]
        self.params, self.coupling = zone_plant(devices)
        self._capacity = [zone_capacity(device) for device in devices]
        self.temperature = np.full(count, max(air_temperature + 4.0, 14.0))
        self.supply_water = np.full(count, 20.0)
        self.co2 = np.full(count, 450.0)
        self.moisture = vapour_density(self.temperature, 45.0)
        self.energy_kwh = rng.uniform(1_000.0, 20_000.0, count)
        self.valve_command = np.zeros(count)
        self.supply_setpoint = np.full(count, np.nan)
        self.heating_command = np.zeros(count, dtype=bool)
        self.cooling_command = np.zeros(count, dtype=bool)
        self.vents_command = np.zeros(count, dtype=bool)
        self.blinds_command = np.zeros(count, dtype=bool)
        self.has_vents = np.array(
            [bool(d.metadata.get("motorised_windows", False)) for d in devices], dtype=bool
        )
        self.has_blinds = np.array(
            [bool(d.metadata.get("external_blinds", False)) for d in devices], dtype=bool
        )
        self._day = -1
        self._occupancy = np.zeros((count, 1), dtype=np.int64)
        self._values: dict[str, FloatArray] = {}

    def actuate(self, index: int, outputs: Outputs) -> None:
        self.heating_command[index] = outputs.get("heating", 0.0) >= 0.5
        self.cooling_command[index] = outputs.get("cooling", 0.0) >= 0.5
        self.valve_command[index] = outputs.get("valve_position", 0.0)
        self.supply_setpoint[index] = outputs.get("supply_temperature", np.nan)
        self.vents_command[index] = outputs.get("vents_open", 0.0) >= 0.5
        self.blinds_command[index] = outputs.get("blinds_down", 0.0) >= 0.5

    def occupants(self, now: datetime, step_s: float) -> np.ndarray:
        """People in each zone now, drawn a whole day at a time so any run sees the same."""
        seconds = int(now.timestamp())
        day_seconds = seconds - seconds % 86_400
        steps_per_day = int(86_400 // max(step_s, 1))
        if day_seconds != self._day:
            self._day = day_seconds
            day = pd.Timestamp(day_seconds, unit="s", tz="UTC")
            times = pd.date_range(day, periods=steps_per_day, freq=f"{int(step_s)}s")
            calendar = MoroccanCalendar.spanning(times[0].date(), times[-1].date())
            fasting = ramadan_flags(times, calendar.ramadan_days, SITE_TIMEZONE)
            self._occupancy = np.array(
                [
                    occupancy(
                        times,
                        kind,
                        capacity,
                        self._rng,
                        zone=zone,
                        ramadan=fasting,
                        holidays=calendar.holidays,
                    )
                    for kind, capacity, zone in zip(
                        self._kinds, self._capacity, self._zones, strict=True
                    )
                ]
            ).reshape(len(self.ids), steps_per_day)
        index = int((seconds - day_seconds) // step_s)
        return self._occupancy[:, min(index, steps_per_day - 1)]

    def step(self, weather: Now, now: datetime, seconds: float, faults: Faults) -> None:
        """Advance every zone by ``seconds`` [s] to ``now`` under the site's weather."""
        count = len(self.ids)
        if count == 0:
            return
        people = self.occupants(now, seconds or 60.0)
        window = faults[FaultType.WINDOW_OPEN]
        vents = self.vents_command & self.has_vents
        blinds = self.blinds_command & self.has_blinds
        both = faults[FaultType.SIMULTANEOUS_HEATING_COOLING]
        valve = np.where(self.heating_command, self.valve_command, 0.0)
        cycled_off = now.timestamp() % SHORT_CYCLE_S >= SHORT_CYCLE_S / 2
        valve = np.where(faults[FaultType.SHORT_CYCLING] & cycled_off, 0.0, valve)
        valve = np.where(faults[FaultType.STUCK_VALVE], STUCK_VALVE_POSITION, valve)
        valve = np.where(both, 100.0, valve)
        cooling_command = np.where(self.cooling_command | both, 100.0, 0.0)
        boiler_on = (valve > 0) & self.params.rated_heating.astype(bool)
        self.supply_water = supply_water_step(
            self.supply_water,
            boiler_on,
            weather.air_temperature,
            seconds,
            setpoint=self.supply_setpoint,
        )
        plant = hvac(
            self.temperature,
            weather.air_temperature,
            valve_position=np.where(
                faults[FaultType.HEATING_FAILURE], HEATING_FAILURE_SHARE * valve, valve
            ),
            supply_water_temperature=self.supply_water,
            cooling_command=cooling_command,
            params=self.params,
        )
        gains = internal_gains(people, self.params.floor_area)
        if seconds > 0:
            self.temperature = advance(
                self.temperature,
                outdoor_temperature=weather.air_temperature,
                ghi=weather.ghi,
                heating_power=plant.heating,
                cooling_power=plant.cooling,
                internal_gains=gains,
                window_open=window | vents,
                params=self.params,
                coupling=self.coupling,
                seconds=seconds,
                blinds_down=blinds,
            ).temperature
            ventilation = ventilation_rate(window | vents, self.params)
            self.co2 = co2_step(
                self.co2,
                people,
                ventilation=ventilation,
                volume=self.params.volume,
                seconds=seconds,
            )
            self.moisture = moisture_step(
                self.moisture,
                people,
                outdoor_density=vapour_density(weather.air_temperature, OUTDOOR_HUMIDITY),
                ventilation=ventilation,
                volume=self.params.volume,
                seconds=seconds,
            )
            self.energy_kwh = self.energy_kwh + plant.meter_power * seconds / 3_600
        noise = self._rng.standard_normal((3, count))
        self._values = {
            "air_temperature": self.temperature + 0.05 * noise[0],
            "humidity": relative_humidity(self.temperature, self.moisture),
            "co2": self.co2 + 5.0 * noise[1],
            "occupancy": people.astype(float),
            "window_open": window.astype(float),
            "vents_open": vents.astype(float),
            "blinds_down": blinds.astype(float),
            "heating_active": plant.heating_active.astype(float),
            "cooling_active": plant.cooling_active.astype(float),
            "valve_position": valve,
            "supply_water_temperature": self.supply_water,
            "energy": self.energy_kwh.copy(),
            "power": plant.meter_power,
            "outdoor_temperature": np.full(count, weather.air_temperature) + 0.1 * noise[2],
        }

    def values(self) -> dict[str, FloatArray]:
        return self._values
