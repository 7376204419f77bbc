"""Every signage panel of a site, stepped together, faults included (see simulators.signage)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from protocol.faults import FaultType
from protocol.sites import Device
from simulators.environment import Now
from simulators.errors import SimulatorError
from simulators.signage import (
    PIXEL_FAILURE_RATE,
    SIGN_RATINGS,
    BoolArray,
    FloatArray,
    SignRating,
    ambient_illuminance,
    enclosure_temperature_step,
    fan_thermostat,
    fault_bits,
    led_power,
    over_temperature_derate,
    pixel_failures_step,
    pixel_fault,
    power_fault,
    supply_voltage,
    temperature_fault,
)

Faults = Mapping[FaultType, BoolArray]

FAILING_PIXEL_RATE: Final = 2e-3
"""Failure rate of the pixels of a failing LED board [1/h]: visible within hours."""
RUNAWAY_ABOVE_CRITICAL_K: Final = 8.0
"""An overheating cabinet (dead fan, a failing power supply cooking inside) settles this far
above the controller's critical temperature whatever the weather [K]."""


def sign_rating_of(device: Device) -> SignRating:
    key = device.rating.id if device.rating is not None and hasattr(device.rating, "id") else ""
    rating = SIGN_RATINGS.get(key) or SIGN_RATINGS.get(device.model)
    if rating is None:
        known = ", ".join(SIGN_RATINGS)
        raise SimulatorError(
            f"sign {device.id}: no simulated rating for model {device.model!r} ({known})"
        )
    return rating


class SignageFleet:
    def __init__(
        self, devices: Sequence[Device], air_temperature: float, rng: np.random.Generator
    ) -> None:
        self.ids = [device.id for device in devices]
        count = len(devices)
        ratings = [sign_rating_of(device) for device in devices]
        self._groups = {
            rating: np.array([i for i, r in enumerate(ratings) if r == rating])
            for rating in dict.fromkeys(ratings)
        }
        self.pixel_count = np.array([r.pixel_count for r in ratings], dtype=np.int64)
        self.temperature = np.full(count, air_temperature + 3.0)
        self.fan_on = np.zeros(count, dtype=bool)
        self.failed_pixels = rng.integers(0, 3, count).astype(np.int64)
        self.brightness_command = np.full(count, 50.0)
        self.message_id = np.zeros(count)
        self.lit_fraction = np.zeros(count)
        self._rng = rng
        self._values: dict[str, FloatArray] = {}

    def actuate(
        self, index: int, brightness: float, message_id: float, lit_fraction: float
    ) -> None:
        self.brightness_command[index] = brightness
        self.message_id[index] = message_id
        self.lit_fraction[index] = lit_fraction

    def step(self, weather: Now, seconds: float, faults: Faults) -> None:
        """Advance every sign by ``seconds`` [s] under the site's weather."""
        ghi, air_temperature = weather.ghi, weather.air_temperature
        count = len(self.ids)
        hours = seconds / 3_600
        supply_ok = ~faults[FaultType.SUPPLY_FAILURE]
        volts = supply_voltage(supply_ok, self._rng)
        overheating = faults[FaultType.OVER_TEMPERATURE]
        door = faults[FaultType.DOOR_OPEN]
        failing = faults[FaultType.PIXEL_FAILURES]
        brightness = np.zeros(count)
        power = np.zeros(count)
        too_hot = np.zeros(count, dtype=bool)
        for rating, members in self._groups.items():
            for rate, who in (
                (PIXEL_FAILURE_RATE, members[~failing[members]]),
                (FAILING_PIXEL_RATE, members[failing[members]]),
            ):
                if len(who):
                    self.failed_pixels[who] = pixel_failures_step(
                        self.failed_pixels[who], rating.pixel_count, hours, rate, self._rng
                    )
            temperature = self.temperature[members]
            cap = over_temperature_derate(temperature, rating)
            on = supply_ok[members]
            level = np.where(on, np.minimum(self.brightness_command[members], cap), 0.0)
            draw = led_power(level, self.lit_fraction[members], rating, self.failed_pixels[members])
            draw = np.where(on, draw, 0.0)
            hot = overheating[members]
            fan = fan_thermostat(temperature, self.fan_on[members], rating) & ~hot
            # The runaway: as much extra heat as keeps the sealed cabinet past critical.
            sun = rating.absorptance * rating.sun_area * max(ghi, 0.0)
            runaway = (
                (rating.critical_temperature + RUNAWAY_ABOVE_CRITICAL_K - air_temperature)
                / rating.thermal_resistance
                - draw
                - sun
            )
            heat = draw + np.where(hot, np.maximum(runaway, 0.0), 0.0)
            self.temperature[members] = enclosure_temperature_step(
                temperature,
                np.full(len(members), air_temperature),
                np.full(len(members), ghi),
                heat,
                rating=rating,
                seconds=seconds,
                fan_on=fan,
                door_open=door[members],
            )
            self.fan_on[members] = fan
            brightness[members] = level
            power[members] = draw
            too_hot[members] = temperature_fault(self.temperature[members], rating)
        bits = fault_bits(
            power=power_fault(volts),
            pixel=pixel_fault(self.failed_pixels, self.pixel_count),
            temperature=too_hot,
        )
        noise = self._rng.standard_normal(count)
        self._values = {
            "power": power,
            "supply_voltage": volts,
            "enclosure_temperature": self.temperature + 0.1 * noise,
            "ambient_light": ambient_illuminance(np.full(count, ghi)),
            "brightness_level": brightness,
            "message_id": self.message_id.copy(),
            "failed_pixels": self.failed_pixels.astype(float),
            "door_open": door.astype(float),
            "fault_bits": bits.astype(float),
        }

    def values(self) -> dict[str, FloatArray]:
        return self._values
