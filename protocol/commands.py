"""The commands each device class accepts, and their parameters.

A command travels as a :class:`protocol.payloads.CommandPayload` (id, issue and expiry times,
``action``, ``params``). This module says which actions a class knows and what their
parameters must be, so the platform can refuse a bad command before sending it and the agent
can refuse it on arrival with the same words.

Every override a command sets is held for ``hold_s`` seconds, then the device returns to its
own local behaviour: a platform that stops talking never leaves a lamp dark or a boiler on.
"""

from __future__ import annotations

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


class _Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
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
    """Signage: fix the brightness; ``level`` absent returns to following ambient light."""

    level: Percent | None = None
    hold_s: HoldSeconds = DEFAULT_HOLD_S


class HvacMode(StrEnum):
    OFF = "off"
    HEAT = "heat"
    COOL = "cool"
    AUTO = "auto"


class SetHvac(_Params, frozen=True):
    """Building zone: mode and setpoints, held for ``hold_s``; frost protection always holds."""

    mode: HvacMode
    heating_setpoint: Celsius = 20.0
    cooling_setpoint: Celsius = 26.0
    hold_s: HoldSeconds = DEFAULT_HOLD_S

    def __post_init__(self) -> None:
        if self.mode is HvacMode.AUTO and self.heating_setpoint >= self.cooling_setpoint:
            raise ValueError(
                f"heating_setpoint {self.heating_setpoint} must be below cooling_setpoint "
                f"{self.cooling_setpoint}: a zone is never heated and cooled at once"
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
