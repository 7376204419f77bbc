"""The EN 15232 class C reference: its timer, its seasons, and its fixed pre-heat sized on the
design day."""

from __future__ import annotations

import math

import numpy as np

from control.hvac import Zones
from control.opening import ZonePlace
from control.strategy import PACKAGED_STRATEGY, load_strategy
from edge_agents.control import ThermostatSettings
from simulators.building import building_coupling, zone_parameters
from simulators.sky import Place
from whatif.class_c import (
    NIGHT_SETBACK_C,
    ClassCState,
    FixedStarts,
    class_c_settings,
    size_fixed_starts,
)
from whatif.plant import Plant, PlantState, step_plant

STRATEGY = load_strategy(PACKAGED_STRATEGY)
HVAC = STRATEGY.hvac
SEFROU = Place(33.83, -4.83, 850.0)
ZONES = Zones(
    ids=("open", "soon", "later"),
    building=np.zeros(3, dtype=np.intp),
    buildings=("town-hall",),
    can_heat=np.ones(3, dtype=np.bool_),
    can_cool=np.ones(3, dtype=np.bool_),
    can_ventilate=np.zeros(3, dtype=np.bool_),
    can_shade=np.zeros(3, dtype=np.bool_),
)
STARTS = FixedStarts(preheat_h=np.full(3, 4.75), precool_h=np.full(3, 1.5))


def settings_at(outdoor: float, *, mean: float) -> tuple[ThermostatSettings, np.ndarray]:
    _, settings, supply = class_c_settings(
        HVAC,
        ZONES,
        STARTS,
        ClassCState(outdoor_mean=mean, last_time=0.0),
        now_s=300.0,
        outdoor=outdoor,
        scheduled=np.array([True, False, False]),
        hours_to_start=np.array([0.0, 4.5, 5.0]),
    )
    return settings, supply


def test_in_winter_the_timer_heats_from_its_fixed_start_and_sets_back_before() -> None:
    settings, supply = settings_at(-3.0, mean=5.0)
    assert settings.heating_setpoint.tolist() == [
        HVAC.comfort.heating,
        HVAC.comfort.heating,  # 4.5 h before opening, within the 4.75 h pre-heat
        NIGHT_SETBACK_C,  # 5 h before: the timer has not started yet
    ]
    assert settings.heats.all()
    assert not settings.cools.any()  # no cooling in the heating season
    # The heating curve's design point, with no boost for the pre-heat.
    assert supply.tolist() == [HVAC.weather_compensation.design_supply] * 3


def test_in_summer_cooling_runs_only_within_the_programme_and_nothing_heats() -> None:
    settings, supply = settings_at(33.0, mean=27.0)
    assert settings.cools.tolist() == [True, False, False]  # 1.5 h pre-cool: not yet for 4.5 h
    assert settings.cooling_setpoint.tolist() == [HVAC.comfort.cooling] * 3
    assert not settings.heats.any()
    assert np.isnan(supply).all()


def test_the_changeover_follows_the_outdoor_running_mean_not_one_cold_morning() -> None:
    state = ClassCState(outdoor_mean=27.0, last_time=0.0)
    state, settings, _ = class_c_settings(
        HVAC,
        ZONES,
        STARTS,
        state,
        now_s=300.0,
        outdoor=5.0,
        scheduled=np.ones(3, dtype=np.bool_),
        hours_to_start=np.zeros(3),
    )
    assert not settings.heats.any()
    assert 26.0 < state.outdoor_mean < 27.0


def one_zone() -> Plant:
    return Plant(zone_parameters(np.array([200.0])), building_coupling(np.zeros(1, np.intp)))


def temperature_at_opening(plant: Plant, lead_s: int) -> float:
    """One zone held at the night setback at the design temperature, then at comfort from
    ``lead_s`` before opening."""
    design = HVAC.weather_compensation.design_outdoor
    state = PlantState.initial(np.array([NIGHT_SETBACK_C]))
    night, step = 12 * 3_600, 150
    for k in range((night + 8 * 3_600) // step):
        on = k * step >= night + 8 * 3_600 - lead_s
        settings = ThermostatSettings(
            heats=np.array([True]),
            cools=np.array([False]),
            heating_setpoint=np.array([HVAC.comfort.heating if on else NIGHT_SETBACK_C]),
            cooling_setpoint=np.array([HVAC.comfort.cooling]),
            deadband_k=np.array([HVAC.deadband_k]),
            min_on_s=np.zeros(1),
            min_off_s=np.zeros(1),
        )
        state, _, _ = step_plant(
            plant,
            state,
            settings,
            np.array([HVAC.weather_compensation.design_supply]),
            outdoor=design,
            ghi=0.0,
            occupants=np.zeros(1),
            seconds=step,
        )
    return float(state.temperature[0])


def test_the_fixed_pre_heat_is_the_shortest_quarter_hour_that_is_comfortable_at_opening() -> None:
    plant = one_zone()
    zones = Zones(
        ids=("office",),
        building=np.zeros(1, dtype=np.intp),
        buildings=("town-hall",),
        can_heat=np.ones(1, dtype=np.bool_),
        can_cool=np.ones(1, dtype=np.bool_),
        can_ventilate=np.zeros(1, dtype=np.bool_),
        can_shade=np.zeros(1, dtype=np.bool_),
    )
    starts = size_fixed_starts(
        STRATEGY,
        plant=plant,
        zones=zones,
        places=(ZonePlace("town_hall", "town-hall", "offices"),),
        location=SEFROU,
        tz="Africa/Casablanca",
    )
    lead_s = round(float(starts.preheat_h[0]) * 3_600)
    assert 0 < lead_s < 8 * 3_600
    assert lead_s % 900 == 0
    low = HVAC.comfort_band.low
    assert temperature_at_opening(plant, lead_s) >= low
    assert temperature_at_opening(plant, lead_s - 900) < low
    assert 0 < starts.precool_h[0] < 8
    assert not math.isnan(float(starts.precool_h[0]))
