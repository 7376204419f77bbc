"""Every solar streetlight of a site, stepped together, faults included.

The physics is :mod:`simulators.streetlight`; this module keeps the fleet's state (charge,
disconnects, lamp commands) and turns it into what each light's controller would report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from protocol.catalogue import CHARGE_CONTROLLER_STATUS_BITS
from protocol.faults import FaultType
from protocol.sites import Device, StreetlightModel
from simulators.environment import Now
from simulators.errors import SimulatorError
from simulators.signage import DAYLIGHT_EFFICACY
from simulators.streetlight import (
    BoolArray,
    FloatArray,
    StreetlightRating,
    battery_voltage,
    panel_power,
    step,
)

Faults = Mapping[FaultType, BoolArray]

SOILED_SHARE: Final = 0.45
"""Light reaching the cells of a soiled panel (dust after the dry season, bird droppings) [-]."""
SHADED_SHARE: Final = 0.15
"""Light reaching a shaded panel while the sun is low behind a tree or a building [-]."""
SHADE_BELOW_ELEVATION: Final = 30.0
"""The obstacle shades the panel while the sun is below this elevation [deg]."""
FADED_CAPACITY: Final = 0.3
"""Share of its capacity a worn-out battery still holds [-]."""
TILT_DEGREES: Final = 18.0
KNOCKED_DOWN_DEGREES: Final = 85.0
PV_MPP_VOLTAGE: Final = 17.8
"""Maximum power point voltage of the 36-cell panels [V]."""
PV_OPEN_CIRCUIT_VOLTAGE: Final = 21.6
_BIT: Final = {name: 1 << index for index, name in enumerate(CHARGE_CONTROLLER_STATUS_BITS)}


def rating_of(device: Device) -> StreetlightRating:
    model = device.rating
    if not isinstance(model, StreetlightModel):
        raise SimulatorError(f"streetlight {device.id} has no streetlight model in the site file")
    return StreetlightRating(
        panel_wp=model.panel_wp,
        battery_wh=model.battery_ah * model.battery_voltage,
        lamp_w=model.lamp_w,
    )


class StreetlightFleet:
    """State and readings of ``devices`` (all streetlights), one array element each."""

    def __init__(self, devices: Sequence[Device], rng: np.random.Generator) -> None:
        self.ids = [device.id for device in devices]
        count = len(devices)
        ratings = [rating_of(device) for device in devices]
        self._groups: dict[StreetlightRating, np.ndarray] = {}
        for rating in dict.fromkeys(ratings):
            self._groups[rating] = np.array([i for i, r in enumerate(ratings) if r == rating])
        self.lamp_w = np.array([r.lamp_w for r in ratings])
        self.soc = rng.uniform(60.0, 95.0, count)
        self.disconnected = np.zeros(count, dtype=bool)
        self.lamp_level = np.zeros(count)
        """Commanded output [%], set through the drivers."""
        self.clean_share = rng.uniform(0.93, 1.0, count)
        """Each panel's ordinary dust [-]."""
        self._noise = rng
        self._noise_seed = int(rng.integers(2**32))
        self._steps = 0
        self._values: dict[str, FloatArray] = {}
        self._pending: tuple[Now, FloatArray, FloatArray, FloatArray, BoolArray, Faults] | None = (
            None
        )

    def actuate(self, index: int, lamp_level: float) -> None:
        self.lamp_level[index] = lamp_level

    def step(self, weather: Now, seconds: float, faults: Faults) -> None:
        """Advance every light by ``seconds`` [s] under the site's weather.

        faults: which lights have each fault now.
        """
        ghi, air_temperature = weather.ghi, weather.air_temperature
        count = len(self.ids)
        soiling = self.clean_share.copy()
        soiling[faults[FaultType.PANEL_SOILING]] *= SOILED_SHARE
        if weather.sun_elevation < SHADE_BELOW_ELEVATION:
            soiling[faults[FaultType.PANEL_SHADING]] *= SHADED_SHARE
        broken_controller = faults[FaultType.CHARGE_CONTROLLER_FAULT]
        # The relay: a stuck one keeps the lamp on; a dead lamp or driver draws nothing.
        level = np.where(faults[FaultType.DAY_BURNING], 100.0, self.lamp_level)
        switched_on = level > 0
        flicker = faults[FaultType.CYCLING_DRIVER] & (self._noise.random(count) < 0.5)
        dead = faults[FaultType.LAMP_FAILURE] | faults[FaultType.KNOCK_DOWN] | flicker
        demand = np.where(dead, 0.0, self.lamp_w * level / 100.0)
        capacity_share = np.where(faults[FaultType.BATTERY_FADE], FADED_CAPACITY, 1.0)
        pv = np.zeros(count)
        drawn = np.zeros(count)
        charge = np.zeros(count)
        hours = seconds / 3_600
        for rating, members in self._groups.items():
            panel = panel_power(
                np.full(len(members), ghi),
                np.full(len(members), air_temperature),
                rating,
                soiling[members],
            )
            panel = np.where(broken_controller[members], 0.0, panel)
            share = capacity_share[members]
            # A battery holding a share h of its capacity behaves as the full one would under
            # flows divided by h: the step is linear in its flows.
            soc, disconnected, lamp, energy = step(
                self.soc[members],
                self.disconnected[members],
                panel / share,
                demand[members] / share,
                rating=rating,
                hours=hours,
            )
            self.soc[members] = soc
            self.disconnected[members] = disconnected
            pv[members] = panel
            drawn[members] = lamp * share
            charge[members] = np.maximum(energy.stored * share, 0.0) / hours
        self._steps += 1
        self._pending = (weather, pv, drawn, charge, switched_on, faults)
        self._values = {}

    def _readings(
        self,
        weather: Now,
        pv: FloatArray,
        drawn: FloatArray,
        charge_watts: FloatArray,
        *,
        switched_on: BoolArray,
        faults: Faults,
    ) -> None:
        count = len(self.ids)
        ghi, air_temperature = weather.ghi, weather.air_temperature
        # Reading noise has its own stream per step, so reading a light or not never changes
        # what the physics draws next: the same seed gives the same city however it is read.
        noise = np.random.default_rng((self._noise_seed, self._steps)).standard_normal((4, count))
        daylight = ghi > 5
        broken_controller = faults[FaultType.CHARGE_CONTROLLER_FAULT]
        pv_voltage = np.where(
            pv > 0.5,
            PV_MPP_VOLTAGE + 0.3 * noise[0],
            np.where(daylight, PV_OPEN_CIRCUIT_VOLTAGE, 0.4),
        )
        pv_voltage = np.where(broken_controller & daylight, PV_OPEN_CIRCUIT_VOLTAGE, pv_voltage)
        battery_current = (charge_watts - drawn) / 13.0
        volts = battery_voltage(self.soc, battery_current)
        lamp_on = switched_on & ~self.disconnected
        tilt = np.abs(0.6 + 0.3 * noise[1])
        tilt = np.where(faults[FaultType.TILT], TILT_DEGREES + noise[1], tilt)
        tilt = np.where(faults[FaultType.KNOCK_DOWN], KNOCKED_DOWN_DEGREES + noise[1], tilt)
        status = (
            np.where(self.disconnected, _BIT["low_voltage_disconnect"], 0)
            | np.where(self.soc < 5, _BIT["battery_under_voltage"], 0)
            | np.where(broken_controller, _BIT["charge_mosfet_fault"], 0)
        )
        self._values = {
            "pv_voltage": np.clip(pv_voltage, 0, 60),
            "pv_current": np.clip(pv / PV_MPP_VOLTAGE, 0, 20),
            "pv_power": pv,
            "battery_voltage": volts,
            "battery_soc": self.soc,
            "battery_temperature": air_temperature + 2.0 + 0.2 * noise[2],
            "charge_current": np.clip(charge_watts / volts, 0, 40),
            "lamp_power": np.clip(drawn * (1 + 0.01 * noise[3]), 0, 200),
            "lamp_on": lamp_on.astype(float),
            "dimming_level": np.where(lamp_on, self.lamp_level, 0.0),
            "ambient_light": np.full(count, ghi * DAYLIGHT_EFFICACY),
            "tilt": np.clip(tilt, 0, 90),
            "controller_status": status.astype(float),
        }

    def values(self) -> dict[str, FloatArray]:
        """Every metric of every light after the last step, metric name to array."""
        if not self._values and self._pending is not None:
            weather, pv, drawn, charge, switched_on, faults = self._pending
            self._readings(weather, pv, drawn, charge, switched_on=switched_on, faults=faults)
        return self._values
