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

import numpy as np
import numpy.typing as npt

from protocol.commands import (
    DEFAULT_SCHEDULE,
    FROST_PROTECTION_C,
    SIGN_LOWEST_LEVEL,
    VENT_CLOSE_DIFFERENCE_K,
    VENT_OPEN_DIFFERENCE_K,
    HvacMode,
    Params,
    SetBrightness,
    SetDimming,
    SetHvac,
    SetMessage,
    SetSchedule,
    photocell_brightness,
)

STANDING_MESSAGE: Final = SetMessage(message_id=1, lit_fraction=0.3)
"""What a sign shows until told otherwise: its standing message 1 (place name, speed limit)."""

THERMOSTAT_DEADBAND_K: Final = 0.5
"""Half-width of the band around a setpoint in which the plant keeps its state [K]."""
VALVE_PROPORTIONAL_BAND_K: Final = 2.0
"""The heating valve opens fully this far below the setpoint [K]."""

LOCAL_THERMOSTAT: Final = SetHvac(
    mode=HvacMode.AUTO,
    heating_setpoint=18.0,
    cooling_setpoint=28.0,
    deadband_k=THERMOSTAT_DEADBAND_K,
)
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
    heating_switched_at: datetime | None = None
    cooling_switched_at: datetime | None = None
    vents_open: bool = False
    """The zone's motorised windows are open (night ventilation)."""
    sign_levels: tuple[float, float] = (SIGN_LOWEST_LEVEL, 100.0)
    """The photocell's lowest and highest brightness [%] (the last ``set_brightness``)."""


def apply_command(state: LocalState, params: Params, now: datetime) -> LocalState:
    """The state after a valid command (see :func:`protocol.commands.check_command`)."""
    if isinstance(params, SetSchedule):
        return replace(state, schedule=params)
    if isinstance(params, SetMessage):
        return replace(state, message=params)
    if isinstance(params, SetBrightness) and params.level is None:
        return replace(state, hold=None, sign_levels=(params.lowest, params.highest))
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

    Logarithmic in illuminance: 15 % below 10 lx, 100 % from 40,000 lx
    (:func:`protocol.commands.photocell_brightness` with its default levels).
    """
    return photocell_brightness(ambient_lux)


def sign_brightness(
    state: LocalState, now: datetime, ambient_lux: float, autonomous: bool
) -> float:
    """Sign brightness [%]: a held level, else following ambient light between the levels
    last set."""
    hold = current_hold(state, now, autonomous)
    if isinstance(hold, SetBrightness) and hold.level is not None:
        return hold.level
    return photocell_brightness(ambient_lux, *state.sign_levels)


FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ThermostatSettings:
    """What each zone's thermostat aims at; one element per zone (scalars broadcast)."""

    heats: BoolArray
    """Heating allowed (mode heat or auto); frost protection heats regardless."""
    cools: BoolArray
    """Cooling allowed (mode cool or auto)."""
    heating_setpoint: FloatArray
    cooling_setpoint: FloatArray
    deadband_k: FloatArray
    min_on_s: FloatArray
    min_off_s: FloatArray
    ventilate_to: FloatArray | float = math.nan
    """Night ventilation down to this room temperature [C]; NaN: motorised windows shut."""
    shade: BoolArray | bool = False
    """External blinds down."""

    @classmethod
    def of(cls, setting: SetHvac) -> ThermostatSettings:
        """One zone's settings from a held command (or the local program)."""
        return cls(
            heats=np.array([setting.mode.heats]),
            cools=np.array([setting.mode.cools]),
            heating_setpoint=np.array([setting.heating_setpoint]),
            cooling_setpoint=np.array([setting.cooling_setpoint]),
            deadband_k=np.array([setting.deadband_k]),
            min_on_s=np.array([float(setting.min_on_s)]),
            min_off_s=np.array([float(setting.min_off_s)]),
            ventilate_to=np.array(
                [math.nan if setting.ventilate_to is None else setting.ventilate_to]
            ),
            shade=np.array([setting.shade]),
        )


@dataclass(frozen=True, slots=True)
class ThermostatOutputs:
    heating: BoolArray
    cooling: BoolArray
    valve_position: FloatArray
    """Heating valve opening [%]."""


def thermostat(
    temperature: FloatArray,
    settings: ThermostatSettings,
    *,
    heating_on: BoolArray,
    cooling_on: BoolArray,
    heating_for_s: FloatArray,
    cooling_for_s: FloatArray,
) -> ThermostatOutputs:
    """Heating and cooling of many zones at once: deadband, minimum times, never both.

    temperature: measured air [C]; heating_on / cooling_on: the plants' states now, held for
    heating_for_s / cooling_for_s [s] (inf when unknown). Heating comes on ``deadband_k``
    below its setpoint and goes off as far above it; cooling mirrors it. A plant that just
    switched keeps its state for its minimum on or off time, but frost protection (below
    :data:`FROST_PROTECTION_C`) heats at once in every mode, and cooling never runs while
    heating does. The valve opens in proportion to the shortfall, at least 20 % when heating.
    """
    heating_setpoint = np.where(
        settings.heats,
        np.maximum(settings.heating_setpoint, FROST_PROTECTION_C),
        FROST_PROTECTION_C,
    )
    deadband = settings.deadband_k
    wants_heat = _hysteresis(heating_on, heating_setpoint - temperature, deadband)
    frost = temperature < FROST_PROTECTION_C
    heating = _held(heating_on, wants_heat, heating_for_s, settings) | frost
    wants_cool = settings.cools & _hysteresis(
        cooling_on, temperature - settings.cooling_setpoint, deadband
    )
    cooling = _held(cooling_on, wants_cool, cooling_for_s, settings) & ~heating
    opening = (heating_setpoint + deadband - temperature) / VALVE_PROPORTIONAL_BAND_K
    valve: FloatArray = np.where(heating, 100.0 * np.clip(opening, 0.2, 1.0), 0.0)
    return ThermostatOutputs(heating, cooling, np.round(valve, 1).astype(np.float64))


def vents(
    temperature: FloatArray,
    outdoor: FloatArray | float,
    settings: ThermostatSettings,
    *,
    were_open: BoolArray,
    heating: BoolArray,
) -> BoolArray:
    """Whether each zone's motorised windows are open for night ventilation.

    They open where ``settings.ventilate_to`` is set, the room is more than the deadband
    above it and the outdoor air [C] at least :data:`VENT_OPEN_DIFFERENCE_K` cooler than the
    room; they stay open until the room is down to ``ventilate_to`` or the outdoor air is no
    longer :data:`VENT_CLOSE_DIFFERENCE_K` cooler; never while heating, nor with the outdoor
    temperature unknown (NaN).
    """
    target = np.broadcast_to(np.asarray(settings.ventilate_to, dtype=np.float64), temperature.shape)
    cooler_by = temperature - np.asarray(outdoor, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        opens = (temperature > target + settings.deadband_k) & (cooler_by >= VENT_OPEN_DIFFERENCE_K)
        stays = were_open & (temperature > target) & (cooler_by >= VENT_CLOSE_DIFFERENCE_K)
    open_now: BoolArray = (opens | stays) & ~heating
    return open_now


def _held(
    was_on: BoolArray, wants: BoolArray, held_for_s: FloatArray, settings: ThermostatSettings
) -> BoolArray:
    """``wants``, except that a plant keeps its state until its minimum time has passed."""
    keep_on = was_on & (held_for_s < settings.min_on_s)
    stay_off = ~was_on & (held_for_s < settings.min_off_s)
    held: BoolArray = (wants | keep_on) & ~stay_off
    return held


def _hysteresis(was_on: BoolArray, demand: FloatArray, deadband: FloatArray) -> BoolArray:
    """On above +deadband of demand, off below -deadband, unchanged in between."""
    on: BoolArray = np.where(demand > deadband, True, np.where(demand < -deadband, False, was_on))
    return on


@dataclass(frozen=True, slots=True)
class ZoneOutputs:
    heating: bool
    cooling: bool
    valve_position: float
    """Heating valve opening [%]."""
    supply_temperature: float | None = None
    """Heating water the boiler should aim at [C]; None: its own heating curve."""
    vents_open: bool = False
    """Open the motorised windows (night ventilation, :func:`vents`)."""
    blinds_down: bool = False
    """Lower the external blinds."""


def zone_outputs(
    state: LocalState,
    now: datetime,
    temperature: float,
    autonomous: bool,
    outdoor: float = math.nan,
) -> tuple[LocalState, ZoneOutputs]:
    """Thermostat of one building zone (see :func:`thermostat`) under the setting in force,
    with its motorised windows (:func:`vents`) and blinds.

    temperature: the zone's measured air temperature [C]; outdoor: the building's outdoor
    sensor [C], NaN when it has none (the windows then stay shut). Frost protection overrides
    every mode, including ``off``.
    """
    hold = current_hold(state, now, autonomous)
    setting = hold if isinstance(hold, SetHvac) else LOCAL_THERMOSTAT
    settings = ThermostatSettings.of(setting)
    outputs = thermostat(
        np.array([temperature]),
        settings,
        heating_on=np.array([state.heating_on]),
        cooling_on=np.array([state.cooling_on]),
        heating_for_s=np.array([_held_for(state.heating_switched_at, now)]),
        cooling_for_s=np.array([_held_for(state.cooling_switched_at, now)]),
    )
    heating, cooling = bool(outputs.heating[0]), bool(outputs.cooling[0])
    if heating != state.heating_on:
        state = replace(state, heating_on=heating, heating_switched_at=now)
    if cooling != state.cooling_on:
        state = replace(state, cooling_on=cooling, cooling_switched_at=now)
    vents_open = bool(
        vents(
            np.array([temperature]),
            outdoor,
            settings,
            were_open=np.array([state.vents_open]),
            heating=outputs.heating,
        )[0]
    )
    state = replace(state, vents_open=vents_open)
    supply = setting.supply_temperature if heating else None
    return state, ZoneOutputs(
        heating,
        cooling,
        float(outputs.valve_position[0]),
        supply,
        vents_open=vents_open,
        blinds_down=setting.shade,
    )


def _held_for(switched_at: datetime | None, now: datetime) -> float:
    return math.inf if switched_at is None else (now - switched_at).total_seconds()
