"""The reference every strategy is measured against: the building run as EN 15232 class C.

EN 15232-1:2017 (ISO 52120-1:2022) rates a building's automation from D (none) to A (high
energy performance); class C is "standard" automation, what a well-run municipal building has
without the platform:

- individual room control: each zone's thermostat holds its setpoint (function 1.1, level 2);
- heating water compensated for the outdoor temperature (1.2, level 1);
- intermittent operation on a fixed time programme: no optimum start or stop (1.6, level 1);
- heating and cooling interlocked, seasonal changeover (1.8 / 3.8, partial interlock).

Here, per zone, as a caretaker would set the timer up:

- the strategy's comfort setpoints while its programme runs: the strategy's opening hours on
  the strategy's calendar and the booked events, each day's programme starting a **fixed**
  pre-heat (in the heating season) or pre-cool (in the cooling season) before opening;
- those fixed leads sized once, at commissioning, so that the zone is comfortable at opening on
  the design day (:func:`size_fixed_starts`);
- :data:`NIGHT_SETBACK_C` outside the programme, cooling off;
- heating only in the heating season and cooling only in the cooling season, by the same
  changeover as the strategy's, and the strategy's heating curve without a boost.

It has no presence detection, no standby, no optimum start or stop, no power cap and no
automatic night ventilation or solar protection: motorised windows stay shut and external
blinds up. Where zones have external blinds, a caretaker could as well put them on a timer:
the ``blinds_timer`` variant lowers them all cooling season, the strongest reference for a
summer with blinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from control.hvac import Zones, running_mean, season_of, weather_compensated_supply
from control.opening import ZonePlace, calendar_for, open_grid
from control.strategy import Hvac, Strategy
from edge_agents.control import ThermostatSettings
from simulators.sky import Place, clear_sky_ghi
from whatif.plant import Plant, PlantState, step_plant

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NIGHT_SETBACK_C: Final = 16.0
"""Heating setpoint outside the programme: nights, weekends, holidays [C]."""
LEAD_RESOLUTION_S: Final = 900
"""A timer's programme is set in quarter hours [s]."""
LONGEST_LEAD_S: Final = 8 * 3_600
"""No timer starts earlier than this before opening [s]."""
DESIGN_COOLING_DAY: Final = (19.0, 37.0)
"""Sefrou's design summer day: lowest and highest outdoor temperature [C], the highest at
15:00 local time, under a clear July sky."""
DESIGN_DATE: Final = date(2027, 7, 12)
"""A Monday in the middle of the cooling season (no holiday that week)."""
SIZING_STEP_S: Final = 150


@dataclass(frozen=True, slots=True)
class FixedStarts:
    """How long before opening each zone's programme starts [h], by zone."""

    preheat_h: FloatArray
    precool_h: FloatArray


@dataclass(frozen=True, slots=True)
class ClassCState:
    """What the class C controls carry between decisions: the outdoor running mean [C]."""

    outdoor_mean: float = math.nan
    last_time: float = math.nan


def class_c_settings(
    hvac: Hvac,
    zones: Zones,
    starts: FixedStarts,
    state: ClassCState,
    *,
    now_s: float,
    outdoor: float,
    scheduled: BoolArray,
    hours_to_start: FloatArray,
    blinds_timer: bool = False,
) -> tuple[ClassCState, ThermostatSettings, FloatArray]:
    """The zones' thermostat settings and supply water setpoint [C] (NaN: the boiler's own
    curve) at ``now_s``, and the state for the next call. blinds_timer: the zones' external
    blinds are lowered all cooling season (by the same changeover), day and night."""
    elapsed = now_s - state.last_time if not math.isnan(state.last_time) else 0.0
    mean = running_mean(state.outdoor_mean, outdoor, elapsed)
    heat_season, cool_season = season_of(hvac, mean)
    heats = zones.can_heat & heat_season
    cools = zones.can_cool & cool_season
    heating_on = scheduled | (heats & (hours_to_start <= starts.preheat_h))
    cooling_on = scheduled | (cools & (hours_to_start <= starts.precool_h))
    size = zones.size
    settings = ThermostatSettings(
        heats=heats,
        cools=cools & cooling_on,
        heating_setpoint=np.where(heating_on, hvac.comfort.heating, NIGHT_SETBACK_C),
        cooling_setpoint=np.full(size, hvac.comfort.cooling),
        deadband_k=np.full(size, hvac.deadband_k),
        min_on_s=np.full(size, hvac.min_on),
        min_off_s=np.full(size, hvac.min_off),
        shade=zones.can_shade & (blinds_timer and cool_season and not heat_season),
    )
    supply = np.where(heats, weather_compensated_supply(hvac, outdoor), math.nan)
    return ClassCState(mean, now_s), settings, supply


def size_fixed_starts(
    strategy: Strategy,
    *,
    plant: Plant,
    zones: Zones,
    places: tuple[ZonePlace, ...],
    location: Place,
    tz: str,
) -> FixedStarts:
    """Each zone's fixed pre-heat and pre-cool, the shortest in whole quarter hours that
    brings it into the comfort band by opening on the design day (at most
    :data:`LONGEST_LEAD_S`).

    Heating: the outdoor air at the heating curve's design temperature all day, no sun, the
    zone held at :data:`NIGHT_SETBACK_C` before (EN 12831's sizing conditions). Cooling:
    :data:`DESIGN_COOLING_DAY` three days running, the zone closed with cooling off for two,
    opening on the third at its first opening time of the design week.
    """
    hvac = strategy.hvac
    band = hvac.comfort_band
    week = pd.date_range(
        pd.Timestamp(DESIGN_DATE).tz_localize(tz), periods=7 * 96, freq=f"{LEAD_RESOLUTION_S}s"
    )
    unix = week.tz_convert("UTC").asi8 // 1_000_000_000
    grid = open_grid(strategy, places, unix, calendar_for(unix), tz)
    first = np.where(grid.any(axis=1), grid.argmax(axis=1), 8 * 4)  # never open: 08:00
    opening_minute = (first % 96) * (LEAD_RESOLUTION_S // 60)

    days = pd.date_range(
        pd.Timestamp(DESIGN_DATE).tz_localize(tz) - pd.Timedelta(days=2),
        pd.Timestamp(DESIGN_DATE).tz_localize(tz) + pd.Timedelta(days=1),
        freq=f"{SIZING_STEP_S}s",
        inclusive="left",
    )
    local_hour = days.hour + days.minute / 60
    low, high = DESIGN_COOLING_DAY
    hot = (low + high) / 2 + (high - low) / 2 * np.cos(2 * np.pi * (local_hour - 15.0) / 24)
    design_outdoor = hvac.weather_compensation.design_outdoor
    preheat = _shortest_leads(
        plant,
        zones.can_heat,
        opening_minute,
        outdoor=np.full(len(days), design_outdoor),
        ghi=np.zeros(len(days)),
        start_c=NIGHT_SETBACK_C,
        heating=True,
        hvac=hvac,
        meets=lambda temperature: temperature >= band.low,
    )
    precool = _shortest_leads(
        plant,
        zones.can_cool,
        opening_minute,
        outdoor=np.asarray(hot, dtype=np.float64),
        ghi=clear_sky_ghi(days.tz_convert("UTC"), location),
        start_c=(low + high) / 2,
        heating=False,
        hvac=hvac,
        meets=lambda temperature: temperature <= band.high,
    )
    return FixedStarts(preheat_h=preheat, precool_h=precool)


def _shortest_leads(
    plant: Plant,
    concerned: BoolArray,
    opening_minute: npt.NDArray[np.int64],
    *,
    outdoor: FloatArray,
    ghi: FloatArray,
    start_c: float,
    heating: bool,
    hvac: Hvac,
    meets: Callable[[FloatArray], BoolArray],
) -> FloatArray:
    """[h] by zone: every candidate lead is simulated at once, one copy of the zones each."""
    count = concerned.size
    leads = np.arange(0, LONGEST_LEAD_S + 1, LEAD_RESOLUTION_S)
    copies = leads.size
    big = plant.copies(copies)
    opening_step = (2 * 86_400 + opening_minute * 60) // SIZING_STEP_S
    switch_on = (opening_step[None, :] - leads[:, None] // SIZING_STEP_S).ravel()
    opening = np.tile(opening_step, copies)
    total = count * copies
    state = PlantState.initial(np.full(total, start_c))
    at_opening = np.full(total, np.nan)
    supply = np.full(total, weather_compensated_supply(hvac, float(outdoor[0])))
    for k in range(int(opening.max()) + 1):
        on = k >= switch_on
        settings = ThermostatSettings(
            heats=np.full(total, heating),
            cools=on & (not heating),
            heating_setpoint=np.where(on, hvac.comfort.heating, NIGHT_SETBACK_C),
            cooling_setpoint=np.full(total, hvac.comfort.cooling),
            deadband_k=np.full(total, hvac.deadband_k),
            min_on_s=np.zeros(total),
            min_off_s=np.zeros(total),
        )
        at_opening = np.where(k == opening, state.temperature, at_opening)
        state, _, _ = step_plant(
            big,
            state,
            settings,
            supply if heating else np.full(total, math.nan),
            outdoor=float(outdoor[k]),
            ghi=float(ghi[k]),
            occupants=np.zeros(total),
            seconds=SIZING_STEP_S,
        )
    met = meets(at_opening.reshape(copies, count))
    shortest = np.where(met.any(axis=0), leads[met.argmax(axis=0)], LONGEST_LEAD_S)
    hours: FloatArray = np.where(concerned, shortest / 3_600, 0.0)
    return hours
