"""The simulated city: the weather, every device's physics and the faults, on one clock.

:class:`SimulatedCity` steps all devices together on a fixed grid (60 s by default), so the
same seed gives the same city whether it runs in real time, accelerated, or as a history
written straight to the database. Devices are read and driven through
:class:`SimulatedDriver`, the same :class:`edge_agents.drivers.Driver` interface that real
hardware drivers implement, so the edge agents cannot tell the difference.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd

from edge_agents.drivers import Outputs, Reading
from edge_agents.errors import DriverError
from protocol.catalogue import CATALOGUE, ValueKind
from protocol.faults import FaultType
from protocol.sites import SiteInventory
from protocol.topics import DeviceClass
from simulators.building_fleet import BuildingFleet
from simulators.environment import CloudyRun, Conditions, Now, SiteWeather
from simulators.faults import FaultEvent
from simulators.signage_fleet import SignageFleet
from simulators.sky import Place
from simulators.streetlight import BoolArray, FloatArray
from simulators.streetlight_fleet import StreetlightFleet

DEFAULT_STEP_S: Final = 60
SENSOR_DRIFT_K_PER_HOUR: Final = 0.25
"""How fast a drifting temperature sensor walks away from the truth [K/h], up or down (see
:func:`drift_sign`)..."""
SENSOR_DRIFT_MAX_K: Final = 8.0
"""...up to this offset [K]."""


def drift_sign(event: FaultEvent) -> float:
    """Which way a drifting sensor walks: +1 (reads high) or -1 (reads low), half the faults
    each, fixed by the fault's device and start so that a run can be repeated."""
    key = f"{event.device_id}@{event.start.isoformat()}".encode()
    return 1.0 if zlib.crc32(key) % 2 == 0 else -1.0


@dataclass(frozen=True, slots=True)
class _Placed:
    device_class: DeviceClass
    index: int


def grid_time(moment: datetime, step_s: int) -> datetime:
    """The grid instant at or before ``moment``."""
    seconds = int(moment.timestamp()) // step_s * step_s
    return datetime.fromtimestamp(seconds, tz=moment.tzinfo)


class SimulatedCity:
    def __init__(
        self,
        inventory: SiteInventory,
        *,
        start: datetime,
        seed: int,
        faults: Sequence[FaultEvent] = (),
        step_s: int = DEFAULT_STEP_S,
        light_step_s: int | None = None,
        overcast: CloudyRun | None = None,
    ) -> None:
        """light_step_s: step the streetlights only this often (a multiple of ``step_s``):
        a history that samples them every 5 minutes need not step them every minute;
        overcast: days forced overcast, as in the lighting what-if."""
        self.inventory = inventory
        self.step_s = step_s
        self.light_step_s = light_step_s or step_s
        if self.light_step_s % step_s:
            raise ValueError("light_step_s must be a multiple of step_s")
        self.now = grid_time(start, step_s)
        seeds = np.random.SeedSequence(seed).spawn(4)
        weather_rng, light_rng, sign_rng, zone_rng = (np.random.default_rng(s) for s in seeds)
        site = inventory.site
        self.place = Place(site.latitude, site.longitude, site.altitude)
        self.weather = SiteWeather(self.place, self.now, weather_rng)
        if overcast is not None:
            self.weather.force_overcast(overcast)
        self._day_seconds = -1
        self._day_conditions: Conditions | None = None
        first = self._weather_at(self.now)
        self.current = first
        self.lights = StreetlightFleet(inventory.by_class(DeviceClass.STREETLIGHT), light_rng)
        self.signs = SignageFleet(
            inventory.by_class(DeviceClass.SIGNAGE), first.air_temperature, sign_rng
        )
        self.zones = BuildingFleet(
            inventory.by_class(DeviceClass.BUILDING), first.air_temperature, zone_rng
        )
        self._placed: dict[str, _Placed] = {}
        for device_class, fleet_ids in (
            (DeviceClass.STREETLIGHT, self.lights.ids),
            (DeviceClass.SIGNAGE, self.signs.ids),
            (DeviceClass.BUILDING, self.zones.ids),
        ):
            for index, device_id in enumerate(fleet_ids):
                self._placed[device_id] = _Placed(device_class, index)
        self.faults: list[FaultEvent] = []
        self._active_faults: tuple[int, ...] | None = None
        for event in faults:
            self.add_fault(event)
        # One step brings every device's readings into being, so the city can be read at once.
        self._step_faults(self.now)
        self._step_all(self.step_s)

    # ----------------------------------------------------------------- faults

    def add_fault(self, event: FaultEvent) -> None:
        if event.device_id not in self._placed:
            raise ValueError(f"fault on unknown device {event.device_id!r}")
        self.faults.append(event)

    def faults_of(self, device_id: str, at: datetime) -> set[FaultType]:
        return {e.fault for e in self.faults if e.device_id == device_id and e.active(at)}

    def _masks(
        self, device_class: DeviceClass, count: int, at: datetime
    ) -> dict[FaultType, BoolArray]:
        masks = {fault: np.zeros(count, dtype=bool) for fault in FaultType}
        for event in self.faults:
            placed = self._placed[event.device_id]
            if placed.device_class is device_class and event.active(at):
                masks[event.fault][placed.index] = True
        return masks

    def _step_faults(self, at: datetime) -> None:
        active = tuple(index for index, event in enumerate(self.faults) if event.active(at))
        if active != self._active_faults:  # the masks change only when a fault starts or ends
            self._active_faults = active
            self._light_faults = self._masks(DeviceClass.STREETLIGHT, len(self.lights.ids), at)
            self._sign_faults = self._masks(DeviceClass.SIGNAGE, len(self.signs.ids), at)
            self._zone_faults = self._masks(DeviceClass.BUILDING, len(self.zones.ids), at)
        self._signed_drift_hours = np.zeros(len(self.zones.ids))
        for event in self.faults:
            placed = self._placed[event.device_id]
            if event.fault is FaultType.SENSOR_DRIFT and event.active(at):
                hours = (at - event.start).total_seconds() / 3_600
                self._signed_drift_hours[placed.index] = drift_sign(event) * hours

    # ----------------------------------------------------------------- time

    def _weather_at(self, moment: datetime) -> Now:
        seconds = int(moment.timestamp())
        day_seconds = seconds - seconds % 86_400
        if day_seconds != self._day_seconds or self._day_conditions is None:
            day = pd.Timestamp(day_seconds, unit="s", tz="UTC")
            times = pd.date_range(day, periods=86_400 // self.step_s, freq=f"{self.step_s}s")
            self._day_seconds = day_seconds
            self._day_conditions = self.weather.conditions(times)
        return Now.of(self._day_conditions, (seconds - day_seconds) // self.step_s)

    def advance(self, to: datetime) -> int:
        """Step the whole city up to the last grid instant at or before ``to``; return steps."""
        steps = 0
        step = timedelta(seconds=self.step_s)
        while self.now + step <= to:
            self.now += step
            self.current = self._weather_at(self.now)
            self._step_faults(self.now)
            self._step_all(self.step_s)
            steps += 1
        return steps

    def _step_all(self, seconds: float) -> None:
        if self.light_step_s == self.step_s:
            self.lights.step(self.current, seconds, self._light_faults)
        elif int(self.now.timestamp()) % self.light_step_s == 0:
            self.lights.step(self.current, self.light_step_s, self._light_faults)
        self.signs.step(self.current, seconds, self._sign_faults)
        self.zones.step(self.current, self.now, seconds, self._zone_faults)

    # ----------------------------------------------------------------- devices

    def class_values(self, device_class: DeviceClass) -> dict[str, FloatArray]:
        """Every metric of every device of a class, as reported now (faults included)."""
        if device_class is DeviceClass.STREETLIGHT:
            return self.lights.values()
        if device_class is DeviceClass.SIGNAGE:
            return self.signs.values()
        values = dict(self.zones.values())
        if not values:
            return values  # a site without buildings
        drift = SENSOR_DRIFT_K_PER_HOUR * self._signed_drift_hours
        drift = np.clip(drift, -SENSOR_DRIFT_MAX_K, SENSOR_DRIFT_MAX_K)
        values["air_temperature"] = values["air_temperature"] + drift
        return values

    def reading(self, device_id: str) -> Reading:
        placed = self._placed[device_id]
        metrics = CATALOGUE[placed.device_class].metrics
        reading: Reading = {}
        for name, column in self.class_values(placed.device_class).items():
            value = float(column[placed.index])
            kind = metrics[name].kind
            if kind is ValueKind.FLAG:
                reading[name] = value >= 0.5
            elif kind in (ValueKind.COUNT, ValueKind.BITS):
                reading[name] = round(value)
            else:
                reading[name] = value
        return reading

    def actuate(self, device_id: str, outputs: Outputs) -> None:
        placed = self._placed[device_id]
        if placed.device_class is DeviceClass.STREETLIGHT:
            self.lights.actuate(placed.index, outputs.get("lamp_level", 0.0))
        elif placed.device_class is DeviceClass.SIGNAGE:
            self.signs.actuate(
                placed.index,
                outputs.get("brightness_level", 50.0),
                outputs.get("message_id", 0.0),
                outputs.get("lit_fraction", 0.0),
            )
        else:
            self.zones.actuate(placed.index, outputs)

    def driver(self, device_id: str) -> SimulatedDriver:
        if device_id not in self._placed:
            raise KeyError(device_id)
        return SimulatedDriver(self, device_id)


class SimulatedDriver:
    """One simulated device behind the :class:`edge_agents.drivers.Driver` interface."""

    def __init__(self, city: SimulatedCity, device_id: str) -> None:
        self.city = city
        self.device_id = device_id

    def read(self, now: datetime) -> Reading:
        if now < self.city.now:
            raise DriverError(f"{self.device_id}: asked for {now}, the city is at {self.city.now}")
        return self.city.reading(self.device_id)

    def actuate(self, outputs: Outputs, now: datetime) -> None:
        del now  # the city applies outputs from its next step
        self.city.actuate(self.device_id, outputs)
