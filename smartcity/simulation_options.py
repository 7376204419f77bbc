"""Options shared by the commands that simulate the city over a period (``smartcity history``,
``smartcity rules score``, ``smartcity energy lights``): a forced overcast run, and who
schedules the streetlights."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from smartcity.cli_support import fail

if TYPE_CHECKING:
    from protocol.sites import SiteInventory
    from simulators.environment import CloudyRun
    from simulators.history import LightingProgram


class Lighting(StrEnum):
    PLATFORM = "platform"
    """The lighting service's nightly schedules, as ``smartcity up`` runs them."""
    AGENTS = "agents"
    """Every light on its agent's own program: no platform."""


CloudyFromOption = Annotated[
    str | None, typer.Option(help="First day of a forced overcast run (ISO date).")
]
CloudyDaysOption = Annotated[int, typer.Option(help="Length of the overcast run (days).")]
ClearnessOption = Annotated[
    float, typer.Option(help="Clearness index of the overcast days (0-1; clear ~0.75).")
]
LightingOption = Annotated[
    Lighting,
    typer.Option(
        help="Who schedules the streetlights: the platform's lighting service (each night"
        " planned from the battery, as live) or the agents' own program."
    ),
]


def overcast_run(
    cloudy_from: str | None,
    cloudy_days: int,
    clearness: float,
    period: tuple[datetime, datetime],
    zone: ZoneInfo,
) -> CloudyRun | None:
    """The overcast run the options ask for, checked against the period (aware instants);
    a typer.Exit (code 2) saying what is wrong."""
    from simulators.environment import CloudyRun

    if cloudy_from is None:
        return None
    try:
        first_day = date.fromisoformat(cloudy_from)
    except ValueError:
        raise fail(f"--cloudy-from {cloudy_from!r} is not an ISO date (e.g. 2026-12-10)") from None
    if cloudy_days < 1:
        raise fail(f"--cloudy-days {cloudy_days}: give at least 1 day")
    if not 0.0 <= clearness <= 1.0:
        raise fail(f"--clearness {clearness}: a clearness index is between 0 and 1")
    start, end = period
    last_day = first_day + timedelta(days=cloudy_days - 1)
    first_local = start.astimezone(zone).date()
    last_local = (end - timedelta(seconds=1)).astimezone(zone).date()
    if first_day < first_local or last_day > last_local:
        raise fail(
            f"the overcast run {first_day} to {last_day} is not within the period "
            f"{first_local} to {last_local}: move --cloudy-from or shorten --cloudy-days"
        )
    return CloudyRun(first_day, cloudy_days, clearness)


def lighting_program(lighting: Lighting, inventory: SiteInventory) -> LightingProgram | None:
    """The schedules a history's streetlights run; None for the agents' own program."""
    if lighting is Lighting.AGENTS:
        return None
    from whatif.lighting import PlatformLighting

    return PlatformLighting(inventory)
