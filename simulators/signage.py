"""Variable message sign physics: LED power, photocell dimming, enclosure heat, pixel wear.

Small pure functions on numpy arrays, one element per sign, so a whole fleet steps at once;
a function taking a :class:`SignRating` steps the signs of one model. Temperatures are in
degrees Celsius, powers in watts, heat capacities in joules per kelvin, times in seconds unless
a name says hours.

The cabinet is one thermal node: the sun on its face and all the electrical power drawn heat it,
the outside air cools it through one thermal resistance, lower when the ventilation fan runs or
the door is open. The door state itself is set from outside (the fault injector); this module
only says what an open door does to the heat balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.catalogue import SIGN_FAULT_BITS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class SignRating:
    pixel_count: int
    """Pixels of the display matrix [-]."""
    led_w: float
    """LED power at 100 % brightness with every pixel lit [W]."""
    standby_w: float
    """Controller, modem, drivers and photocell, drawn whatever is displayed [W]."""
    thermal_resistance: float
    """Cabinet to outside air, sealed and fan off [K/W]."""
    fan_thermal_resistance: float
    """Cabinet to outside air while the ventilation fan runs [K/W]."""
    door_open_thermal_resistance: float
    """Cabinet to outside air with the service door open: outside air comes in [K/W]."""
    heat_capacity: float
    """Cabinet, LED boards and electronics together [J/K]."""
    sun_area: float
    """Area whose sunlight ends up inside the cabinet, per W/m^2 of global horizontal
    irradiance: the face and the roof, weighted by how they face the sun [m^2]."""
    absorptance: float
    """Share of the sunlight on ``sun_area`` absorbed (black face, louvres) [-]."""
    fan_on_temperature: float
    """Thermostat: the fan starts at this cabinet temperature [C]..."""
    fan_hysteresis: float
    """...and stops this much below it [K]."""
    derate_temperature: float
    """Above this cabinet temperature the controller caps brightness to protect the LEDs [C]..."""
    critical_temperature: float
    """...down to ``derate_floor`` at this one, where it also raises the temperature fault [C]."""
    derate_floor: float = 25.0
    """Brightness cap at and above ``critical_temperature`` [%]."""

    def __post_init__(self) -> None:
        if not self.critical_temperature > self.derate_temperature:
            raise ValueError("critical_temperature must lie above derate_temperature")
        if not (
            0
            < min(self.fan_thermal_resistance, self.door_open_thermal_resistance)
            <= max(self.fan_thermal_resistance, self.door_open_thermal_resistance)
            <= self.thermal_resistance
        ):
            raise ValueError("fan and open-door thermal resistances must be positive and lower")


# Ratings of the three models in sites/sefrou.yaml. Full-matrix signs at 25 mm (amber) and
# 10 mm (full-colour) pitch; the sun and thermal figures make a sealed amber sign run about
# 20 K above the air under a full summer sun, about 10 K with its fan.
VMS_3_LINE_AMBER: Final = SignRating(
    pixel_count=27 * 128,
    led_w=1_200.0,
    standby_w=45.0,
    thermal_resistance=0.008,
    fan_thermal_resistance=0.004,
    door_open_thermal_resistance=0.002,
    heat_capacity=250_000.0,
    sun_area=3.0,
    absorptance=0.85,
    fan_on_temperature=35.0,
    fan_hysteresis=5.0,
    derate_temperature=55.0,
    critical_temperature=70.0,
)
VMS_2_LINE_AMBER: Final = SignRating(
    pixel_count=18 * 128,
    led_w=800.0,
    standby_w=40.0,
    thermal_resistance=0.010,
    fan_thermal_resistance=0.005,
    door_open_thermal_resistance=0.0025,
    heat_capacity=180_000.0,
    sun_area=2.2,
    absorptance=0.85,
    fan_on_temperature=35.0,
    fan_hysteresis=5.0,
    derate_temperature=55.0,
    critical_temperature=70.0,
)
PARKING_GUIDANCE_FULL_COLOUR: Final = SignRating(
    pixel_count=64 * 96,
    led_w=600.0,
    standby_w=30.0,
    thermal_resistance=0.015,
    fan_thermal_resistance=0.0075,
    door_open_thermal_resistance=0.004,
    heat_capacity=100_000.0,
    sun_area=1.4,
    absorptance=0.9,
    fan_on_temperature=35.0,
    fan_hysteresis=5.0,
    derate_temperature=55.0,
    critical_temperature=70.0,
)

SIGN_RATINGS: Final[Mapping[str, SignRating]] = MappingProxyType(
    {
        "vms-3-line-amber": VMS_3_LINE_AMBER,
        "vms-2-line-amber": VMS_2_LINE_AMBER,
        "parking-full-colour": PARKING_GUIDANCE_FULL_COLOUR,
    }
)
"""Thermal and electrical ratings by model id of a site file's signage models; the site
file's pixel count and maximum power replace these models' own."""

DAYLIGHT_EFFICACY: Final = 110.0
"""Luminous efficacy of global daylight [lm/W]: 100-120 for sun and sky together."""

STREET_LIGHTING_LUX: Final = 5.0
"""Illuminance at a sign's photocell at night from the street lighting around it [lx]."""


def ambient_illuminance(
    ghi: FloatArray, street_lighting: FloatArray | float = STREET_LIGHTING_LUX
) -> FloatArray:
    """Illuminance at the photocell [lx].

    ghi: global horizontal irradiance [W/m^2]; street_lighting: what lamps nearby add [lx],
    which only matters at night.
    """
    lux: FloatArray = DAYLIGHT_EFFICACY * np.maximum(ghi, 0.0) + street_lighting
    return lux


def led_power(
    brightness_level: FloatArray,
    lit_fraction: FloatArray | float,
    rating: SignRating,
    failed_pixels: IntArray | int = 0,
) -> FloatArray:
    """Electrical power of the sign [W], LEDs and standby.

    brightness_level: PWM duty cycle of the LEDs [%]; lit_fraction: share of the pixels the
    message lights, its fill ratio [-], 0 for a blank sign; failed_pixels: pixels that draw
    nothing any more [-].
    """
    healthy_share = 1.0 - np.asarray(failed_pixels) / rating.pixel_count
    duty = np.clip(brightness_level, 0.0, 100.0) / 100.0
    power: FloatArray = rating.standby_w + rating.led_w * duty * lit_fraction * healthy_share
    return power


def fan_thermostat(temperature: FloatArray, fan_on: BoolArray, rating: SignRating) -> BoolArray:
    """Fan state after reading the cabinet temperature [C], with hysteresis.

    fan_on: the fan state before.
    """
    stop_below = rating.fan_on_temperature - rating.fan_hysteresis
    running: BoolArray = np.where(
        fan_on, temperature > stop_below, temperature >= rating.fan_on_temperature
    )
    return running


def enclosure_temperature_step(
    temperature: FloatArray,
    air_temperature: FloatArray,
    ghi: FloatArray,
    electrical_power: FloatArray,
    *,
    rating: SignRating,
    seconds: float,
    fan_on: BoolArray | bool | None = None,
    door_open: BoolArray | bool = False,
) -> FloatArray:
    """Cabinet temperature after ``seconds`` [s] [C].

    temperature: cabinet temperature now [C]; air_temperature: outside air [C]; ghi: global
    horizontal irradiance [W/m^2]; electrical_power: everything the sign draws [W], all of it
    turned to heat inside (the light leaving the face is a few percent of it).
    fan_on: ventilation fan running; ``None`` lets the thermostat decide from ``temperature``
    without hysteresis (use :func:`fan_thermostat` to keep it). door_open: the service door is
    open; fan and open door together cool as the better of the two.

    Inputs are held constant over the step and the first-order equation
    C dT/dt = P + a A G - (T - T_air) / R is solved exactly, so any step size is stable.
    """
    if fan_on is None:
        fan_on = temperature >= rating.fan_on_temperature
    resistance = np.where(fan_on, rating.fan_thermal_resistance, rating.thermal_resistance)
    resistance = np.where(
        door_open, np.minimum(resistance, rating.door_open_thermal_resistance), resistance
    )
    heat = electrical_power + rating.absorptance * rating.sun_area * np.maximum(ghi, 0.0)
    steady = air_temperature + resistance * heat
    decay = np.exp(-seconds / (resistance * rating.heat_capacity))
    new_temperature: FloatArray = steady + (temperature - steady) * decay
    return new_temperature


def over_temperature_derate(temperature: FloatArray, rating: SignRating) -> FloatArray:
    """Brightness cap the controller applies to protect its LEDs [%].

    temperature: cabinet temperature [C]. 100 up to ``rating.derate_temperature``, then
    linearly down to ``rating.derate_floor`` at ``rating.critical_temperature`` and above.
    """
    span = rating.critical_temperature - rating.derate_temperature
    position = np.clip((temperature - rating.derate_temperature) / span, 0.0, 1.0)
    cap: FloatArray = 100.0 - (100.0 - rating.derate_floor) * position
    return cap


PIXEL_FAILURE_RATE: Final = 1e-6
"""Failures per healthy pixel per hour of operation [1/h]: about 1 % of pixels a year."""


def pixel_failures_step(
    failed: IntArray,
    pixel_count: IntArray | int,
    hours: float,
    rate_per_pixel_hour: float,
    rng: np.random.Generator,
) -> IntArray:
    """Failed pixels after ``hours`` [h] more of operation [-].

    failed: pixels failed so far [-]; pixel_count: pixels of each sign [-];
    rate_per_pixel_hour: failure rate of one healthy pixel [1/h] (see PIXEL_FAILURE_RATE).
    Each healthy pixel fails independently within the step; failed pixels stay failed.
    """
    healthy = np.maximum(np.asarray(pixel_count) - failed, 0)
    probability = -np.expm1(-rate_per_pixel_hour * hours)
    new_failures = rng.binomial(healthy, probability)
    return (failed + new_failures).astype(np.int64)


NOMINAL_VOLTAGE: Final = 230.0
"""Moroccan low-voltage mains, single phase [V]."""

MINIMUM_VOLTAGE: Final = 207.0
"""Below this the supply is out of tolerance (EN 50160: nominal - 10 %) [V]."""


def supply_voltage(
    supply_ok: BoolArray,
    rng: np.random.Generator,
    *,
    nominal: float = NOMINAL_VOLTAGE,
    spread: float = 2.0,
) -> FloatArray:
    """Mains voltage at the sign's supply [V]: ``nominal`` with small noise, 0 when lost.

    supply_ok: the supply is present; spread: standard deviation of the noise [V].
    """
    noisy = nominal + spread * rng.standard_normal(np.shape(supply_ok))
    volts: FloatArray = np.where(supply_ok, np.maximum(noisy, 0.0), 0.0)
    return volts


def pixel_fault(
    failed: IntArray, pixel_count: IntArray | int, threshold_share: float = 0.005
) -> BoolArray:
    """Whether the failed pixels reach ``threshold_share`` [-] of the matrix."""
    fault: BoolArray = failed >= threshold_share * np.asarray(pixel_count)
    return fault


def temperature_fault(temperature: FloatArray, rating: SignRating) -> BoolArray:
    """Whether the cabinet temperature [C] reaches ``rating.critical_temperature``."""
    fault: BoolArray = temperature >= rating.critical_temperature
    return fault


def power_fault(voltage: FloatArray, minimum: float = MINIMUM_VOLTAGE) -> BoolArray:
    """Whether the supply voltage [V] is below ``minimum`` [V], lost included."""
    fault: BoolArray = voltage < minimum
    return fault


_BIT: Final = {name: 1 << index for index, name in enumerate(SIGN_FAULT_BITS)}


def fault_bits(
    *,
    communications: BoolArray | bool = False,
    power: BoolArray | bool = False,
    pixel: BoolArray | bool = False,
    photocell: BoolArray | bool = False,
    temperature: BoolArray | bool = False,
    controller: BoolArray | bool = False,
) -> IntArray:
    """The ``fault_bits`` word, bit i meaning ``SIGN_FAULT_BITS[i]`` [-].

    Each argument says whether that fault is present, per sign; arrays broadcast together.
    """
    flags = {
        "communications": communications,
        "power": power,
        "pixel": pixel,
        "photocell": photocell,
        "temperature": temperature,
        "controller": controller,
    }
    word = np.zeros(np.broadcast_shapes(*(np.shape(flag) for flag in flags.values())), np.int64)
    for name, flag in flags.items():
        word = word | np.where(flag, _BIT[name], 0)
    return word.astype(np.int64)
