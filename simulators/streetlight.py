"""Solar streetlight physics: panel, charge controller, LiFePO4 battery, LED lamp.

Small pure functions on numpy arrays, one element per streetlight, so a whole fleet steps at
once. Energy is tracked in watt-hours; every step reports where the energy went, so the
balance can be checked: harvested = stored + delivered to the lamp + losses + curtailed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

STC_IRRADIANCE: Final = 1_000.0
"""[W/m^2] irradiance of the standard test conditions that rate a panel's Wp"""


@dataclass(frozen=True, slots=True)
class StreetlightRating:
    panel_wp: float
    """Panel peak power at standard test conditions [W]."""
    battery_wh: float
    """Usable LiFePO4 capacity [Wh] (12.8 V nominal)."""
    lamp_w: float
    """LED lamp power at 100 % dimming level [W]."""
    panel_temperature_coefficient: float = -0.0037
    """Relative change of panel power per kelvin of cell temperature [1/K]."""
    nominal_operating_cell_temperature: float = 45.0
    """NOCT: cell temperature at 800 W/m^2 and 20 C ambient [C]."""
    mppt_efficiency: float = 0.96
    """Charge controller conversion efficiency [-]."""
    charge_efficiency: float = 0.97
    """Battery round-trip share kept when charging [-]."""
    discharge_efficiency: float = 0.97
    """Battery share delivered when discharging [-]."""
    disconnect_soc: float = 10.0
    """Low-voltage disconnect: the lamp is cut below this state of charge [%]."""
    reconnect_soc: float = 25.0
    """...and reconnected above this one [%]."""


# Ratings of the three models in sites/sefrou.yaml.
MODEL_60W: Final = StreetlightRating(panel_wp=200, battery_wh=1_300, lamp_w=60)
MODEL_40W: Final = StreetlightRating(panel_wp=150, battery_wh=1_000, lamp_w=40)
MODEL_30W: Final = StreetlightRating(panel_wp=120, battery_wh=800, lamp_w=30)


def cell_temperature(ghi: FloatArray, air_temperature: FloatArray, noct: float) -> FloatArray:
    """Cell temperature by the NOCT model [C]: T_air + (NOCT - 20) * G / 800.

    ghi [W/m^2], air_temperature [C], noct [C].
    """
    return air_temperature + (noct - 20.0) * ghi / 800.0


def panel_power(
    ghi: FloatArray,
    air_temperature: FloatArray,
    rating: StreetlightRating,
    soiling: FloatArray | float = 1.0,
) -> FloatArray:
    """Panel output at its maximum power point [W].

    ghi: plane irradiance [W/m^2] (panels lie nearly flat); air_temperature [C];
    soiling: share of light reaching the cells [-], 1 clean, lower when dirty or shaded.
    """
    temperature = cell_temperature(ghi, air_temperature, rating.nominal_operating_cell_temperature)
    derate = 1.0 + rating.panel_temperature_coefficient * (temperature - 25.0)
    power: FloatArray = np.maximum(0.0, rating.panel_wp * ghi / STC_IRRADIANCE * soiling * derate)
    return power


# Open-circuit voltage of a 4-cell LiFePO4 pack against state of charge [%] -> [V].
_OCV_SOC: Final = np.array([0.0, 5.0, 10.0, 20.0, 50.0, 90.0, 100.0])
_OCV_VOLTS: Final = np.array([10.0, 12.0, 12.8, 13.0, 13.2, 13.35, 13.6])


def battery_voltage(
    soc: FloatArray, current: FloatArray, internal_resistance: float = 0.02
) -> FloatArray:
    """Terminal voltage of a 12.8 V LiFePO4 pack [V].

    soc [%]; current [A], positive charging; internal_resistance [ohm].
    """
    volts: FloatArray = np.interp(soc, _OCV_SOC, _OCV_VOLTS) + current * internal_resistance
    return volts


@dataclass(frozen=True, slots=True)
class StepEnergy:
    """Where the energy of one step went, per light [Wh]."""

    harvested: FloatArray
    """Panel output after the charge controller."""
    stored: FloatArray
    """Change of the energy in the battery (negative when it discharged)."""
    delivered: FloatArray
    """Energy the lamp used."""
    losses: FloatArray
    """Controller, charging and discharging losses."""
    curtailed: FloatArray
    """Harvest refused because the battery was full."""


def step(
    soc: FloatArray,
    disconnected: BoolArray,
    panel_watts: FloatArray,
    lamp_demand_watts: FloatArray,
    *,
    rating: StreetlightRating,
    hours: float,
) -> tuple[FloatArray, BoolArray, FloatArray, StepEnergy]:
    """Advance the battery by ``hours`` [h].

    soc: state of charge [%]; disconnected: low-voltage disconnect in force;
    panel_watts: panel output [W]; lamp_demand_watts: what the lamp would draw, on and dimmed [W].
    Returns the new soc, the new disconnect state, the lamp power actually drawn [W] and the
    energy account of the step.
    """
    capacity = rating.battery_wh
    stored_before = soc / 100.0 * capacity
    harvest = panel_watts * rating.mppt_efficiency * hours
    controller_loss = panel_watts * hours - harvest
    # The low-voltage disconnect, with hysteresis: cut below one level, back above another.
    disconnected = np.where(disconnected, soc < rating.reconnect_soc, soc <= rating.disconnect_soc)
    demand = np.where(disconnected, 0.0, lamp_demand_watts) * hours
    # The harvest feeds the lamp directly first; the battery covers the rest or takes the excess.
    direct = np.minimum(harvest, demand)
    from_battery_needed = demand - direct
    available = stored_before * rating.discharge_efficiency
    from_battery = np.minimum(from_battery_needed, available)
    shortfall = from_battery_needed - from_battery
    delivered = direct + from_battery
    excess = harvest - direct
    room = capacity - stored_before
    into_battery = np.minimum(excess * rating.charge_efficiency, room)
    accepted = into_battery / rating.charge_efficiency
    curtailed = excess - accepted
    drawn = from_battery / rating.discharge_efficiency
    stored_after = np.clip(stored_before + into_battery - drawn, 0.0, capacity)
    new_soc = stored_after / capacity * 100.0
    # A battery run flat mid-step cuts the lamp for the next steps too.
    disconnected = disconnected | (shortfall > 1e-12)
    losses = controller_loss + (accepted - into_battery) + (drawn - from_battery)
    energy = StepEnergy(
        harvested=panel_watts * hours,
        stored=stored_after - stored_before,
        delivered=delivered,
        losses=losses,
        curtailed=curtailed,
    )
    return new_soc, disconnected, delivered / hours, energy
