"""The commands each device class accepts, and their parameters.

A command travels as a :class:`protocol.payloads.CommandPayload` (id, issue and expiry times,
``action``, ``params``). This module says which actions a class knows and what their
parameters must be, so the platform can refuse a bad command before sending it and the agent
can refuse it on arrival with the same words.

Every override a command sets is held for ``hold_s`` seconds, then the device returns to its
own local behaviour: a platform that stops talking never leaves a lamp dark or a boiler on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

import msgspec

from protocol.payloads import CommandPayload
from protocol.topics import DeviceClass

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
HoldSeconds = Annotated[int, msgspec.Meta(ge=60, le=7 * 86_400)]
Celsius = Annotated[float, msgspec.Meta(ge=5, le=35)]
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]

DEFAULT_HOLD_S: Final = 3_600
VENT_OPEN_DIFFERENCE_K: Final = 2.0
"""Motorised windows open for night ventilation when the outdoor air is this much cooler than
the room [K]..."""
VENT_CLOSE_DIFFERENCE_K: Final = 1.0
"""...and shut when it is no longer this much cooler [K]."""
FROST_PROTECTION_C: Final = 7.0
"""A zone is heated below this temperature whatever it was told (agents, whatever their setting)
[C]."""


class _Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Parameters left at their default are not sent: an agent that predates a parameter
    still accepts commands that leave it alone (it refuses unknown fields)."""

    pass


class SetDimming(_Params, frozen=True):
    """Streetlight: hold the lamp at ``level`` (0 switches it off), day or night."""

    level: Percent
    hold_s: HoldSeconds = DEFAULT_HOLD_S


class DimmingStep(_Params, frozen=True):
    start: ClockTime
    """Local time from which ``level`` applies, until the next step."""
    level: Percent


class SetSchedule(_Params, frozen=True):
    """Streetlight: the dimming profile of the night (local times), kept until replaced."""

    steps: Annotated[list[DimmingStep], msgspec.Meta(min_length=1, max_length=24)]
    dark_below_elevation: Annotated[float, msgspec.Meta(ge=-12, le=5)] = -1.0
    """The lamp is on while the sun is below this elevation [deg]."""


DEFAULT_SCHEDULE: Final = SetSchedule(
    steps=[
        DimmingStep(start="17:00", level=100.0),
        DimmingStep(start="23:00", level=60.0),
        DimmingStep(start="05:00", level=90.0),
    ]
)
"""The program every streetlight runs until told otherwise: full light in the evening, dimmed
in the small hours, brighter for the morning. Agents run it; rules compare lamps with it."""


class SetMessage(_Params, frozen=True):
    """Signage: show message ``message_id`` (its text, when given, for the log)."""

    message_id: Annotated[int, msgspec.Meta(ge=0, le=65_535)]
    text: Annotated[str, msgspec.Meta(max_length=200)] = ""
    lit_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.3
    """Share of the panel's pixels the message lights [-]."""


class SetBrightness(_Params, frozen=True):
    """Signage: fix the brightness; ``level`` absent returns to following ambient light, from
    ``lowest`` in the dark to ``highest`` in full sun (:func:`photocell_brightness`)."""

    level: Percent | None = None
    hold_s: HoldSeconds = DEFAULT_HOLD_S
    lowest: Percent = 15.0
    highest: Percent = 100.0

    def __post_init__(self) -> None:
        if self.lowest > self.highest:
            raise ValueError(f"lowest {self.lowest} must not be above highest {self.highest}")


SIGN_DARK_LUX: Final = 10.0
"""At and below this illuminance a sign shows its lowest brightness [lx]..."""
SIGN_FULL_SUN_LUX: Final = 40_000.0
"""...and from this one its highest [lx]."""
SIGN_LOWEST_LEVEL: Final = 15.0
"""The photocell's level in the dark: legible, not dazzling [%]."""


def photocell_brightness(
    ambient_lux: float, lowest: float = SIGN_LOWEST_LEVEL, highest: float = 100.0
) -> float:
    """Brightness a sign's photocell asks for [%]: legible at night, full in sunshine.

    Logarithmic in illuminance, from ``lowest`` [%] at or below :data:`SIGN_DARK_LUX` to
    ``highest`` [%] from :data:`SIGN_FULL_SUN_LUX`. Agents follow it with the default levels
    when no brightness is held; the platform's lighting policy may choose other levels.
    """
    lux = max(ambient_lux, SIGN_DARK_LUX)
    share = min(
        1.0, math.log10(lux / SIGN_DARK_LUX) / math.log10(SIGN_FULL_SUN_LUX / SIGN_DARK_LUX)
    )
    return lowest + (highest - lowest) * share


class HvacMode(StrEnum):
    OFF = "off"
    HEAT = "heat"
    COOL = "cool"
    AUTO = "auto"

    @property
    def heats(self) -> bool:
        """The mode lets the zone be heated (frost protection heats in every mode)."""
        return self in (HvacMode.HEAT, HvacMode.AUTO)

    @property
    def cools(self) -> bool:
        return self in (HvacMode.COOL, HvacMode.AUTO)


DeadbandKelvin = Annotated[float, msgspec.Meta(ge=0.2, le=3)]
CycleSeconds = Annotated[int, msgspec.Meta(ge=0, le=3_600)]
SupplyCelsius = Annotated[float, msgspec.Meta(ge=25, le=85)]


class SetHvac(_Params, frozen=True):
    """Building zone: mode and setpoints, held for ``hold_s``; frost protection always holds.

    The zone's thermostat switches heating on ``deadband_k`` below the heating setpoint and off
    as far above it (cooling the other way round); once switched, a plant stays on at least
    ``min_on_s`` and off at least ``min_off_s``, except that frost protection never waits.
    ``supply_temperature``, when given, is the heating water the boiler should aim at (the
    platform's weather compensation), instead of its own heating curve.

    ``ventilate_to``, when given, lets a zone with motorised windows cool itself with outdoor
    air (night ventilation): the agent opens them while the room is more than ``deadband_k``
    warmer than this and the outdoor air at least :data:`VENT_OPEN_DIFFERENCE_K` cooler, and
    shuts them once the room is down to it, the outdoor air no longer
    :data:`VENT_CLOSE_DIFFERENCE_K` cooler, frost protection heats or the hold lapses; only in
    modes ``cool`` and ``off`` (a heating mode with it is refused). ``shade``
    lowers a zone's external blinds for as long as the setting holds. A zone without the
    equipment ignores both.
    """

    mode: HvacMode
    heating_setpoint: Celsius = 20.0
    cooling_setpoint: Celsius = 26.0
    hold_s: HoldSeconds = DEFAULT_HOLD_S
    deadband_k: DeadbandKelvin = 0.5
    min_on_s: CycleSeconds = 0
    min_off_s: CycleSeconds = 0
    supply_temperature: SupplyCelsius | None = None
    ventilate_to: Celsius | None = None
    shade: bool = False

    def __post_init__(self) -> None:
        if self.ventilate_to is not None and self.mode.heats:
            raise ValueError(
                f"ventilate_to needs mode cool or off, not {self.mode}: a zone is not heated"
                " and aired with the night's cold at once"
            )
        gap = 2 * self.deadband_k
        if self.mode is HvacMode.AUTO and self.cooling_setpoint - self.heating_setpoint < gap:
            raise ValueError(
                f"heating_setpoint {self.heating_setpoint} must be at least {gap:g} K (twice the "
                f"deadband) below cooling_setpoint {self.cooling_setpoint}: a zone is never "
                "heated and cooled at once"
            )


Params = SetDimming | SetSchedule | SetMessage | SetBrightness | SetHvac

ACTIONS: Final[dict[DeviceClass, dict[str, type[Params]]]] = {
    DeviceClass.STREETLIGHT: {"set_dimming": SetDimming, "set_schedule": SetSchedule},
    DeviceClass.SIGNAGE: {"set_message": SetMessage, "set_brightness": SetBrightness},
    DeviceClass.BUILDING: {"set_hvac": SetHvac},
}


@dataclass(frozen=True, slots=True)
class ValidCommand:
    id: str
    action: str
    params: Params
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Refusal:
    outcome: Literal["rejected", "expired"]
    reason: str


def check_command(
    device_class: DeviceClass, command: CommandPayload, now: datetime
) -> ValidCommand | Refusal:
    """Validate a decoded command for a device of ``device_class`` at ``now`` (pure)."""
    if command.issued_at.tzinfo is None or command.expires_at.tzinfo is None:
        return Refusal(
            "rejected",
            "issued_at and expires_at need a UTC offset, like 2026-11-28T18:00:00Z",
        )
    if command.expires_at <= now:
        return Refusal("expired", f"command expired at {command.expires_at.isoformat()}")
    if command.expires_at <= command.issued_at:
        return Refusal("rejected", "expires_at must be after issued_at")
    known = ACTIONS[device_class]
    params_type = known.get(command.action)
    if params_type is None:
        return Refusal(
            "rejected",
            f"unknown action {command.action!r} for a {device_class}; "
            f"expected one of {', '.join(sorted(known))}",
        )
    try:
        params = msgspec.convert(command.params, params_type)
    except (msgspec.ValidationError, ValueError) as error:
        return Refusal("rejected", f"invalid params for {command.action}: {error}")
    return ValidCommand(command.id, command.action, params, command.expires_at)
