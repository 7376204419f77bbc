"""Energy strategies: how the platform heats, cools and lights, as a file the energy manager edits.

A strategy file (YAML, format in docs/energy.md) holds the HVAC parameters (comfort, standby
and setback setpoints, optimum start and stop, weather compensation, power caps, cycle times),
the opening hours of each kind of building, zone and building exceptions, booked events, and
the lighting policy. :func:`parse_strategy` validates it and names the line of any mistake.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from control.errors import ControlError
from protocol.durations import parse_duration
from protocol.yamlfile import YamlLocator, read_yaml, short_repr

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PERIOD = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
PACKAGED_STRATEGY: Final = Path(__file__).resolve().parent / "default_strategy.yaml"


class StrategyFileError(ControlError):
    """A strategy file that cannot be used; the message names the file, the field and line."""


Celsius = Annotated[float, Field(ge=5, le=35)]


class _Strict(BaseModel):
    # NaN would pass every comparison unnoticed (a season that never heats); infinity is no
    # duration or temperature either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _seconds(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value).total_seconds()
    raise ValueError(f"expected a duration such as 30m or 2h, not {short_repr(value)}")


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
"""Seconds, written as a number of seconds or as 30s, 5m, 2h, 1d."""


class Setpoints(_Strict):
    heating: Celsius
    cooling: Celsius

    def model_post_init(self, context: Any, /) -> None:
        del context
        if self.cooling - self.heating < 1.0:
            raise ValueError(
                f"cooling {self.cooling} must be at least 1 K above heating {self.heating}: "
                "a zone is never heated and cooled at once"
            )


class ComfortBand(_Strict):
    low: Celsius
    high: Celsius


class OptimumStart(_Strict):
    enabled: bool = True
    max_preheat: Duration = 4 * 3_600.0
    """Never start heating earlier than this before opening [s]..."""
    max_precool: Duration = 8 * 3_600.0
    """...nor cooling earlier than this: a building that warmed up in the sun of the morning
    pulls down slowly in the afternoon, when the air conditioners have the least to spare [s]."""
    safety: float = Field(1.25, ge=1.0, le=3.0)
    """The learnt warm-up time is multiplied by this [-]..."""
    cool_down_safety: float = Field(1.5, ge=1.0, le=3.0)
    """...the learnt cool-down time by this: the morning sun on a building the optimum
    start cannot foresee makes cool-downs less certain [-]..."""
    margin: Duration = 900.0
    """...and this added to either [s]."""
    inside_band_k: float = Field(0.3, ge=0, le=3)
    """The warm-up is timed for the zone to be this far above the comfort band's low edge at
    opening, or at the comfort setpoint where that is lower [K]; the cool-down aims at the
    cooling setpoint (the afternoon's heat leaves the air conditioners no margin)."""


class OptimumStop(_Strict):
    enabled: bool = True
    max_early: Duration = 3_600.0
    """Never stop earlier than this before closing [s]."""


class WeatherCompensation(_Strict):
    """Heating water temperature against outdoor temperature: linear between two points."""

    enabled: bool = True
    design_outdoor: float = -3.0
    design_supply: float = Field(70.0, ge=25, le=85)
    mild_outdoor: float = 18.0
    mild_supply: float = Field(35.0, ge=25, le=85)
    boost_k: float = Field(10.0, ge=0, le=30)
    """Warmer water while pre-heating [K]."""

    def model_post_init(self, context: Any, /) -> None:
        del context
        if self.mild_outdoor <= self.design_outdoor:
            raise ValueError("mild_outdoor must be above design_outdoor")


class Seasons(_Strict):
    """Heating and cooling by the outdoor temperature of the last day (a running mean).

    Where the two overlap (``cooling_above`` below ``heating_below``), or while no outdoor
    temperature is known, both are allowed: the zones run in ``auto``."""

    heating_below: float = 17.0
    """No heating (but frost protection) when the day's mean outdoor is at or above this [C]."""
    cooling_above: float = 18.0
    """No cooling when the day's mean outdoor is at or below this [C]."""


class SitePowerCap(_Strict):
    """Highest demand of all the zones together [kW], by season (none: no cap).

    In either season warm-ups and cool-downs take turns under it. In the cooling season,
    zones calling for cold are also set back in turn when the site would exceed it, those
    furthest below the comfort band's top first: a zone set back on a hot afternoon warms
    slowly, and the peak is the afternoon's, every air conditioner running. Heated zones are
    not shed: a zone set back reheats flat out after, which moves the peak, not cuts it.
    """

    heating: Annotated[float, Field(gt=0)] | None = None
    cooling: Annotated[float, Field(gt=0)] | None = None


class NightVentilation(_Strict):
    """Cooling season: closed, empty zones with motorised windows cool with the night's air.

    The agents open the windows while the outdoor air is at least 2 K cooler than the room
    and shut them at the zone's ``ventilate_to`` (``down_to``, or higher where the zone
    would otherwise open cold), when the air outside is no longer cooler, or when the zone
    opens (see :class:`protocol.commands.SetHvac`)."""

    enabled: bool = True
    down_to: Celsius = 21.0
    """The coolest a zone is ventilated to [C]; never below the comfort band's low edge (a
    strategy that sets it lower is refused; left out, it is raised to that edge)."""


class Shading(_Strict):
    """Cooling season: zones with external blinds keep them lowered, the sun's heat out."""

    enabled: bool = True


class Hvac(_Strict):
    comfort: Setpoints
    """Occupied."""
    standby: Setpoints
    """Open, but nobody in the zone for ``standby_after``."""
    setback: Setpoints
    """Closed."""
    comfort_band: ComfortBand
    """What counts as comfortable while people are in [C]; for optimum stop and reports."""
    standby_after: Duration = 1_800.0
    deadband_k: float = Field(0.5, ge=0.2, le=3)
    min_on: Duration = 300.0
    min_off: Duration = 300.0
    window_open_after: Duration = 120.0
    """A window open this long suspends the zone (frost protection still holds)."""
    hold: Duration = 1_800.0
    """Commands hold this long; the zone returns to its own program if the platform stops."""
    optimum_start: OptimumStart = OptimumStart()
    optimum_stop: OptimumStop = OptimumStop()
    weather_compensation: WeatherCompensation = WeatherCompensation()
    seasons: Seasons = Seasons()
    power_caps: dict[str, Annotated[float, Field(gt=0)]] = {}
    """Highest demand of a building's zones together [kW], by building id."""
    site_power_cap: SitePowerCap = SitePowerCap()
    """Highest demand of all the zones together [kW], by season."""
    night_ventilation: NightVentilation = NightVentilation()
    shading: Shading = Shading()

    def model_post_init(self, context: Any, /) -> None:
        del context
        gap = 2 * self.deadband_k
        for name in ("comfort", "standby", "setback"):
            points: Setpoints = getattr(self, name)
            if points.cooling - points.heating < gap:
                raise ValueError(
                    f"{name}: cooling must be at least twice deadband_k ({gap:g} K) above heating"
                )
        if not self.setback.heating <= self.standby.heating <= self.comfort.heating:
            raise ValueError("heating setpoints must rise from setback to standby to comfort")
        if not self.setback.cooling >= self.standby.cooling >= self.comfort.cooling:
            raise ValueError("cooling setpoints must fall from setback to standby to comfort")
        if not 60 <= self.hold <= 7 * 86_400:
            raise ValueError("hold must lie between 1min and 7d (what agents accept)")
        if self.min_on > 3_600 or self.min_off > 3_600:
            raise ValueError("min_on and min_off must be at most 1h (what agents accept)")
        ventilation = self.night_ventilation
        if (
            "night_ventilation" in self.model_fields_set
            and ventilation.enabled
            and ventilation.down_to < self.comfort_band.low
        ):
            raise ValueError(
                f"night_ventilation.down_to ({self.night_ventilation.down_to:g} C) must not be"
                f" below comfort_band.low ({self.comfort_band.low:g} C): the zones would open"
                " too cold"
            )


Periods = list[str]


class Schedule(_Strict):
    week: dict[str, Periods]
    ramadan: dict[str, Periods] | None = None
    """Opening in Ramadan; absent: as the rest of the year."""
    holidays: Periods = []
    """Opening on public holidays; empty: closed."""

    @field_validator("week", "ramadan")
    @classmethod
    def _check_week(cls, week: dict[str, Periods] | None) -> dict[str, Periods] | None:
        for key, periods in (week or {}).items():
            _days_of(key)
            for period in periods:
                _minutes_of(period)
        return week

    @field_validator("holidays")
    @classmethod
    def _check_periods(cls, periods: Periods) -> Periods:
        for period in periods:
            _minutes_of(period)
        return periods


class Event(_Strict):
    building: str
    zones: list[str] = []
    """Empty: every zone of the building."""
    start: dt.datetime
    end: dt.datetime
    name: str = ""

    def model_post_init(self, context: Any, /) -> None:
        del context
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset, e.g. 2026-12-12T19:00+01:00")
        if self.end <= self.start:
            raise ValueError("end must be after start")


class RamadanDates(_Strict):
    first: dt.date
    last: dt.date

    def model_post_init(self, context: Any, /) -> None:
        del context
        if not 27 <= (self.last - self.first).days <= 30:
            raise ValueError("Ramadan lasts 29 or 30 days: check first and last")


class CalendarCorrections(_Strict):
    """What the site knows better than the estimated calendar (protocol/calendar.py)."""

    holidays_added: list[dt.date] = []
    holidays_removed: list[dt.date] = []
    ramadan: list[RamadanDates] = []
    """Ramadans as announced: each replaces the estimate of its year."""


class _StrategyFile(_Strict):
    strategy: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    hvac: Hvac
    schedules: dict[str, Schedule]
    """By building kind, building id, or ``building/zone`` (the most specific applies)."""
    events: list[Event] = []
    calendar: CalendarCorrections = CalendarCorrections()
    lighting: dict[str, Any] = {}
    """The lighting policy (see docs/lighting.md)."""


@dataclass(frozen=True, slots=True)
class Strategy:
    name: str
    description: str
    hvac: Hvac
    schedules: dict[str, Schedule]
    events: tuple[Event, ...]
    calendar: CalendarCorrections
    lighting: dict[str, Any]
    text: str
    """The file as written, kept with every stored version."""

    def schedule_for(self, kind: str, building: str, zone: str) -> Schedule | None:
        """The schedule of a zone: its own, else its building's, else its kind's."""
        for key in (f"{building}/{zone}", building, kind):
            if key in self.schedules:
                return self.schedules[key]
        return None


def _days_of(key: str) -> tuple[int, ...]:
    """Weekday numbers (0 Monday) of a key: ``mon``, ``mon-fri`` or ``daily``."""
    if key == "daily":
        return tuple(range(7))
    first, _, last = key.partition("-")
    if first not in WEEKDAYS or (last and last not in WEEKDAYS):
        raise ValueError(f"unknown day {key!r}: use mon..sun, a range such as mon-fri, or daily")
    start = WEEKDAYS.index(first)
    end = WEEKDAYS.index(last) if last else start
    if end < start:
        raise ValueError(f"day range {key!r} runs backwards: write it Monday first")
    return tuple(range(start, end + 1))


def _minutes_of(period: str) -> tuple[int, int]:
    """Start and end of ``HH:MM-HH:MM`` in minutes of the day."""
    match = _PERIOD.fullmatch(period)
    if match is None:
        raise ValueError(f"bad period {period!r}: write HH:MM-HH:MM, e.g. 08:30-16:30")
    hours, minutes, end_hours, end_minutes = (int(part) for part in match.groups())
    start, end = hours * 60 + minutes, end_hours * 60 + end_minutes
    if end <= start or end > 24 * 60:
        raise ValueError(f"period {period!r} must end after it starts, by 24:00 at the latest")
    return start, end


def week_periods(week: dict[str, Periods]) -> dict[int, list[tuple[int, int]]]:
    """Opening periods in minutes of the day, by weekday number (0 Monday)."""
    found: dict[int, list[tuple[int, int]]] = {day: [] for day in range(7)}
    for key, periods in week.items():
        for day in _days_of(key):
            found[day].extend(_minutes_of(period) for period in periods)
    return found


def day_periods(periods: Periods) -> list[tuple[int, int]]:
    return [_minutes_of(period) for period in periods]


def load_strategy(path: Path) -> Strategy:
    """Read and validate a strategy file; :class:`StrategyFileError` names any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise StrategyFileError(f"{path}: cannot read the strategy file: {error}") from error
    return parse_strategy(text, str(path))


def parse_strategy(text: str, source: str = "<strategy>") -> Strategy:
    root, document = read_yaml(text, source, StrategyFileError)
    where = YamlLocator(source, root, StrategyFileError)
    if document is None:
        raise StrategyFileError(f"{source}: the file is empty; see docs/energy.md for the format")
    try:
        parsed = _StrategyFile.model_validate(document)
    except ValidationError as error:
        raise where.validation_error(error, _explain) from None
    if parsed.lighting:
        _check_lighting(parsed.lighting, where)
    return Strategy(
        name=parsed.strategy,
        description=parsed.description,
        hvac=parsed.hvac,
        schedules=parsed.schedules,
        events=tuple(parsed.events),
        calendar=parsed.calendar,
        lighting=parsed.lighting,
        text=text,
    )


def _check_lighting(lighting: dict[str, Any], where: YamlLocator) -> None:
    from control.lighting_policy import LightingPolicy

    try:
        LightingPolicy.from_mapping(lighting)
    except ValueError as error:
        raise where.error(("lighting",), str(error)) from None


def _explain(problem: ErrorDetails) -> str:
    kind, value = problem["type"], problem.get("input")
    if kind == "extra_forbidden":
        return "unknown field: check its spelling (the fields are listed in docs/energy.md)"
    if kind == "missing":
        return "this field is required (see docs/energy.md)"
    if kind == "value_error":
        return str(problem.get("ctx", {}).get("error", problem["msg"]))
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not a valid name: use lower-case letters, digits and hyphens"
    return str(problem["msg"])
