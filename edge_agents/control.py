"""What a device does on its own: the agent's local control, pure functions of state and time.

The platform steers devices with commands that hold for a while; between and after them the
device follows its own program. That program is also what keeps the city safe when the
platform is unreachable: lamps switch at dusk and dawn from the sun's position, signs follow
ambient light, and a building zone runs a safe thermostat with frost protection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from protocol.commands import (
    DEFAULT_SCHEDULE,
    HvacMode,
    Params,
    SetBrightness,
    SetDimming,
    SetHvac,
    SetMessage,
    SetSchedule,
)

STANDING_MESSAGE: Final = SetMessage(message_id=1, lit_fraction=0.3)
"""What a sign shows until told otherwise: its standing message 1 (place name, speed limit)."""

FROST_PROTECTION_C: Final = 7.0
"""A zone is heated below this temperature whatever it was told [C]."""
THERMOSTAT_DEADBAND_K: Final = 0.5
"""Half-width of the band around a setpoint in which the plant keeps its state [K]."""
VALVE_PROPORTIONAL_BAND_K: Final = 2.0
"""The heating valve opens fully this far below the setpoint [K]."""

LOCAL_THERMOSTAT: Final = SetHvac(mode=HvacMode.AUTO, heating_setpoint=18.0, cooling_setpoint=28.0)
"""The zone's own program when the platform holds no setting: moderate comfort, no waste."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A command's override and when it lapses."""

    params: Params
    until: datetime


@dataclass(frozen=True, slots=True)
class LocalState:
    """Everything the local controller remembers between ticks."""

    schedule: SetSchedule = DEFAULT_SCHEDULE
    hold: Hold | None = None
    message: SetMessage = STANDING_MESSAGE
    heating_on: bool = False
    cooling_on: bool = False


def apply_command(state: LocalState, params: Params, now: datetime) -> LocalState:
    """The state after a valid command (see :func:`protocol.commands.check_command`)."""
    if isinstance(params, SetSchedule):
        return replace(state, schedule=params)
    if isinstance(params, SetMessage):
        return replace(state, message=params)
    if isinstance(params, SetBrightness) and params.level is None:
        return replace(state, hold=None)
    hold_s = params.hold_s if isinstance(params, SetDimming | SetBrightness | SetHvac) else 0
    return replace(state, hold=Hold(params, now + timedelta(seconds=hold_s)))


def current_hold(state: LocalState, now: datetime, autonomous: bool) -> Params | None:
    """The override in force, or None when it lapsed or the device runs on its own."""
    if state.hold is None or autonomous or now >= state.hold.until:
        return None
    return state.hold.params


def scheduled_level(schedule: SetSchedule, local_time: time) -> float:
    """The dimming level of the night's profile at ``local_time`` [%]."""
    steps = sorted(schedule.steps, key=lambda step: step.start)
    clock = f"{local_time.hour:02d}:{local_time.minute:02d}"
    level = steps[-1].level  # before the first step of the day, the last one still runs
    for step in steps:
        if step.start <= clock:
            level = step.level
    return level


def lamp_level(
    state: LocalState, now: datetime, sun_elevation: float, zone: ZoneInfo, autonomous: bool
) -> float:
    """Streetlight output [%]: an override, else the schedule while it is dark, else off.

    sun_elevation [deg]: see :func:`protocol.sun.solar_elevation`.
    """
    hold = current_hold(state, now, autonomous)
    if isinstance(hold, SetDimming):
        return hold.level
    if sun_elevation >= state.schedule.dark_below_elevation:
        return 0.0
    return scheduled_level(state.schedule, now.astimezone(zone).time())


def sign_brightness_for_ambient(ambient_lux: float) -> float:
    """Brightness a sign's photocell asks for [%]: legible at night, full in sunshine.

    Logarithmic in illuminance: 15 % below 10 lx, 100 % from 40,000 lx.
    """
    lux = max(ambient_lux, 10.0)
    share = math.log10(lux / 10.0) / math.log10(40_000 / 10.0)
    return 15.0 + 85.0 * min(1.0, share)


def sign_brightness(
    state: LocalState, now: datetime, ambient_lux: float, autonomous: bool
) -> float:
    """Sign brightness [%]: a held level, else following ambient light."""
    hold = current_hold(state, now, autonomous)
    if isinstance(hold, SetBrightness) and hold.level is not None:
        return hold.level
    return sign_brightness_for_ambient(ambient_lux)


@dataclass(frozen=True, slots=True)
class ZoneOutputs:
    heating: bool
    cooling: bool
    valve_position: float
    """Heating valve opening [%]."""


def zone_outputs(
    state: LocalState, now: datetime, temperature: float, autonomous: bool
) -> tuple[LocalState, ZoneOutputs]:
    """Thermostat of one building zone: heating and cooling with a deadband, never both.

    temperature: the zone's measured air temperature [C]. Frost protection overrides every
    mode, including ``off``.
    """
    hold = current_hold(state, now, autonomous)
    setting = hold if isinstance(hold, SetHvac) else LOCAL_THERMOSTAT
    heats = setting.mode in (HvacMode.HEAT, HvacMode.AUTO)
    cools = setting.mode in (HvacMode.COOL, HvacMode.AUTO)
    heating_setpoint = setting.heating_setpoint if heats else FROST_PROTECTION_C
    heating = (
        _hysteresis(state.heating_on, heating_setpoint - temperature, THERMOSTAT_DEADBAND_K)
        or temperature < FROST_PROTECTION_C
    )
    cooling = (
        cools
        and not heating
        and _hysteresis(
            state.cooling_on, temperature - setting.cooling_setpoint, THERMOSTAT_DEADBAND_K
        )
    )
    valve = 0.0
    if heating:
        opening = (
            heating_setpoint + THERMOSTAT_DEADBAND_K - temperature
        ) / VALVE_PROPORTIONAL_BAND_K
        valve = 100.0 * min(1.0, max(0.2, opening))
    if (heating, cooling) != (state.heating_on, state.cooling_on):
        state = replace(state, heating_on=heating, cooling_on=cooling)
    return state, ZoneOutputs(heating, cooling, round(valve, 1))


def _hysteresis(was_on: bool, demand: float, deadband: float) -> bool:
    """On above +deadband of demand, off below -deadband, unchanged in between."""
    if demand > deadband:
        return True
    if demand < -deadband:
        return False
    return was_on
