"""The zones' plant stepped as the replays see it: each zone's thermostat, its heating water,
its radiators and split unit, its motorised windows and blinds, and the room's heat balance,
for many zones at once."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from edge_agents.control import ThermostatSettings, thermostat, vents
from simulators.building import (
    Coupling,
    HvacOutput,
    ThermalStep,
    ZoneParameters,
    advance,
    concatenate_zones,
    hvac,
    internal_gains,
    supply_water_step,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PlantState:
    """The zones between two steps; arrays by zone."""

    temperature: FloatArray
    """Air [C]."""
    supply_water: FloatArray
    """Heating water reaching the radiators [C]."""
    heating_on: BoolArray
    cooling_on: BoolArray
    heating_for_s: FloatArray
    """How long heating has been in its present state [s]; inf when unknown."""
    cooling_for_s: FloatArray
    power_kw: FloatArray
    """Meter power over the last step [kW]."""
    vents_open: BoolArray
    """The motorised windows are open (night ventilation)."""

    @classmethod
    def initial(cls, temperature: FloatArray) -> PlantState:
        zones = temperature.size
        off = np.zeros(zones, dtype=np.bool_)
        return cls(
            temperature=temperature.astype(np.float64),
            supply_water=np.full(zones, 20.0),
            heating_on=off,
            cooling_on=off,
            heating_for_s=np.full(zones, np.inf),
            cooling_for_s=np.full(zones, np.inf),
            power_kw=np.zeros(zones),
            vents_open=off,
        )


@dataclass(frozen=True, slots=True)
class Plant:
    """The zones' physics: thermal parameters and how their rooms exchange heat."""

    params: ZoneParameters
    coupling: Coupling

    def copies(self, count: int) -> Plant:
        """``count`` independent copies of these zones side by side, stepped as one plant:
        each copy's zones exchange heat among themselves only."""
        return Plant(
            concatenate_zones([self.params] * count),
            Coupling(np.kron(np.eye(count), self.coupling.conductance).astype(np.float64)),
        )


def step_plant(
    plant: Plant,
    state: PlantState,
    settings: ThermostatSettings,
    supply_setpoint: FloatArray,
    *,
    outdoor: float,
    ghi: float,
    occupants: npt.NDArray[np.int64] | FloatArray,
    seconds: int,
) -> tuple[PlantState, HvacOutput, ThermalStep]:
    """The zones ``seconds`` later under ``settings``; supply_setpoint [C] per zone, NaN for
    the boiler's own curve. Returns the new state, what the plants did and the heat balance."""
    outputs = thermostat(
        state.temperature,
        settings,
        heating_on=state.heating_on,
        cooling_on=state.cooling_on,
        heating_for_s=state.heating_for_s,
        cooling_for_s=state.cooling_for_s,
    )
    vents_open = vents(
        state.temperature,
        outdoor,
        settings,
        were_open=state.vents_open,
        heating=outputs.heating,
    )
    boiler_on = (outputs.valve_position > 0) & (plant.params.rated_heating > 0)
    supply_water = supply_water_step(
        state.supply_water,
        boiler_on,
        outdoor,
        seconds,
        setpoint=np.where(outputs.heating, supply_setpoint, np.nan),
    )
    plants = hvac(
        state.temperature,
        outdoor,
        valve_position=outputs.valve_position,
        supply_water_temperature=supply_water,
        cooling_command=np.where(outputs.cooling, 100.0, 0.0),
        params=plant.params,
    )
    stepped = advance(
        state.temperature,
        outdoor_temperature=outdoor,
        ghi=ghi,
        heating_power=plants.heating,
        cooling_power=plants.cooling,
        internal_gains=internal_gains(occupants, plant.params.floor_area),
        window_open=vents_open,
        params=plant.params,
        coupling=plant.coupling,
        seconds=seconds,
        blinds_down=settings.shade,
    )
    state = replace(
        state,
        temperature=stepped.temperature,
        supply_water=supply_water,
        heating_on=outputs.heating,
        cooling_on=outputs.cooling,
        heating_for_s=np.where(
            outputs.heating != state.heating_on, seconds, state.heating_for_s + seconds
        ),
        cooling_for_s=np.where(
            outputs.cooling != state.cooling_on, seconds, state.cooling_for_s + seconds
        ),
        power_kw=plants.meter_power,
        vents_open=vents_open,
    )
    return state, plants, stepped
