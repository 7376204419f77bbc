"""What a lighting strategy does to the fleet over a period (``smartcity energy lights``).

A what-if replay of the solar streetlights of a site: the simulated weather (with, on demand,
a forced run of overcast days), the lights' physics (:mod:`simulators.streetlight_fleet`)
stepped together without MQTT, and three strategies from the same starting charge:

- ``fixed``: every lamp at 100 % from dusk to dawn;
- ``agent-default``: the agents' default program (what the lights do without a platform);
- ``soc-aware``: each evening the platform plans the night of every light from its reported
  charge and recent harvest (:func:`control.lighting.plan_night`), as it would from the
  ``battery_soc`` and ``pv_power`` readings, and the agents run the schedules it sends.

The report says, per strategy, which lights went dark (low-voltage disconnect while they
should have been lit) and on how many nights, the lit hours, the mean light level while dark,
and the energy. ``docs/lighting.md`` shows a December run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from control.lighting import PlanReason, levels_by_minute, night_window, plan_night
from control.lighting_policy import DEFAULT_LIGHTING, LightingPolicy
from control.lighting_service import PLAN_ABOVE_GATE_DEG as LIVE_PLAN_ABOVE_GATE_DEG
from control.lighting_service import group_kinds
from protocol.commands import DEFAULT_SCHEDULE, DimmingStep, SetSchedule
from protocol.faults import FaultType
from protocol.sites import Device, SiteHeader, SiteInventory
from protocol.solar import LAMP_SWITCH_ELEVATION_DEG, usable_energy_wh
from protocol.sun import elevation_at
from protocol.topics import DeviceClass
from simulators.environment import CloudyRun, Now, SiteWeather
from simulators.sky import Place
from simulators.streetlight import StreetlightRating, panel_power
from simulators.streetlight_fleet import StreetlightFleet, rating_of

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

FIXED: Final = "fixed"
AGENT_DEFAULT: Final = "agent-default"
SOC_AWARE: Final = "soc-aware"
STRATEGIES: Final = (FIXED, AGENT_DEFAULT, SOC_AWARE)
FULL_POWER: Final = SetSchedule(
    steps=[DimmingStep(start="00:00", level=100.0)],
    dark_below_elevation=LAMP_SWITCH_ELEVATION_DEG,
)
"""The fixed strategy: 100 % whenever the sun is below the agents' switching elevation."""
FIXED_SCHEDULES: Final = {FIXED: FULL_POWER, AGENT_DEFAULT: DEFAULT_SCHEDULE}
PLAN_ABOVE_GATE_DEG: Final = 2.0
"""The platform plans the night when the setting sun passes this far above the lamps'
switching elevation [deg]: a quarter of an hour before dusk, the day's harvest all in."""
HARVEST_DAYS: Final = 3
"""The expected harvest is the mean of this many last complete local days [d]."""
MAX_PERIOD_DAYS: Final = 366
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class WhatIfOptions:
    inventory: SiteInventory
    start: datetime
    """First instant (aware)."""
    end: datetime
    """End, excluded (aware)."""
    cloudy: CloudyRun | None = None
    sample: int = 0
    """Lights replayed, spread evenly over the site's list; 0 for all."""
    seed: int = 1
    """Seed of the weather and the lights' starting charge (as ``smartcity simulate``)."""
    step_s: int = 300
    policy: LightingPolicy = DEFAULT_LIGHTING


@dataclass(slots=True)
class StrategyReport:
    """What one strategy did to the lights over the period."""

    strategy: str
    lights: int
    nights: int
    """Nights in the period: one per day [-]."""
    lights_dark: int = 0
    """Lights that went dark (low-voltage disconnect while they should be lit) at least once."""
    light_nights_dark: int = 0
    """(light, night) pairs with some darkness."""
    max_nights_dark: int = 0
    """Nights dark of the worst light."""
    dark_hours: float = 0.0
    """Hours lights spent dark while they should be lit, all lights [h]."""
    lit_hours: float = 0.0
    """Hours lamps were on, all lights [h]."""
    lit_hours_per_light_night: float = 0.0
    mean_level_while_dark_pct: float = 0.0
    """Mean lamp output while the sun was below -1 deg, dark lamps counted as 0 [%]."""
    mean_level_while_lit_pct: float = 0.0
    """Mean lamp output while lit [%]."""
    lamp_energy_kwh: float = 0.0
    harvest_kwh: float = 0.0
    """Panel output [kWh]."""
    lowest_soc_pct: float = 100.0
    mean_final_soc_pct: float = 0.0
    lights_dark_by_night: dict[str, int] = field(default_factory=dict)
    """Local date of the evening -> lights dark that night (nights with some only)."""
    nights_dark_by_model: dict[str, int] = field(default_factory=dict)
    """Model -> (light, night) pairs dark."""
    plan_reasons: dict[str, int] = field(default_factory=dict)
    """soc-aware: (light, night) plans by reason (see control.lighting.PlanReason)."""


@dataclass(slots=True)
class WhatIfReport:
    site: str
    start: str
    end: str
    lights: int
    cloudy: dict[str, object] | None
    strategies: list[StrategyReport]
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Timeline:
    """The period on the simulation grid: weather, the agents' sun, local clock, nights."""

    moments: pd.DatetimeIndex
    """Grid instants, the end included: step k runs from moments[k] to moments[k + 1]."""
    ghi: Floats
    air_temperature: Floats
    physics_elevation: Floats
    agent_elevation: Floats
    """The sun as the agents compute it (protocol.sun) [deg]."""
    local_minute: npt.NDArray[np.intp]
    local_day: npt.NDArray[np.int64]
    """Local date of each instant, as days since 1970-01-01."""
    night: npt.NDArray[np.int64]
    """The night an instant belongs to: the local date of its evening."""


def select_lights(inventory: SiteInventory, sample: int) -> list[Device]:
    """The site's streetlights, or ``sample`` of them spread evenly over its list."""
    lights = list(inventory.by_class(DeviceClass.STREETLIGHT))
    if not lights:
        raise ValueError(f"site {inventory.site.id} has no streetlights")
    if sample <= 0 or sample >= len(lights):
        return lights
    picks = np.unique(np.linspace(0, len(lights) - 1, sample).round().astype(int))
    return [lights[int(index)] for index in picks]


def _timeline(options: WhatIfOptions, zone: ZoneInfo, rng: np.random.Generator) -> _Timeline:
    site = options.inventory.site
    place = Place(site.latitude, site.longitude, site.altitude)
    moments = pd.date_range(options.start, options.end, freq=f"{options.step_s}s")
    weather = SiteWeather(place, options.start, rng)
    if options.cloudy is not None:
        weather.force_overcast(options.cloudy)
    conditions = weather.conditions(moments)
    local = moments.tz_convert(zone)
    local_minute = (local.hour * 60 + local.minute).to_numpy().astype(np.intp)
    epoch = pd.Timestamp("1970-01-01")
    local_day = (local.tz_localize(None).normalize() - epoch).days.to_numpy().astype(np.int64)
    evening = (local.tz_localize(None) - pd.Timedelta(hours=12)).normalize()
    unix = moments.asi8.astype(np.float64) / 1e9
    return _Timeline(
        moments=moments,
        ghi=conditions.ghi,
        air_temperature=conditions.air_temperature,
        physics_elevation=conditions.sun_elevation,
        agent_elevation=elevation_at(unix, site.latitude, site.longitude),
        local_minute=local_minute,
        local_day=local_day,
        night=(evening - epoch).days.to_numpy().astype(np.int64),
    )


class _SocAwarePlanner:
    """The platform's side of the soc-aware strategy: readings in, nightly schedules out."""

    def __init__(
        self,
        policy: LightingPolicy,
        site: SiteHeader,
        lights: Sequence[Device],
        zone: ZoneInfo,
        step_s: int,
    ) -> None:
        self.policy = policy
        self.site = site
        self.zone = zone
        self.step_hours = step_s / 3_600.0
        self.battery_wh = np.array([rating_of(light).battery_wh for light in lights])
        self.lamp_w = np.array([rating_of(light).lamp_w for light in lights])
        # As the live service (control.lighting_service.lights_of): the street group's kind.
        group = group_kinds(lights)
        kinds = [
            str(group.get(light.street_group or "") or light.metadata.get("place_kind") or "road")
            for light in lights
        ]
        self.groups = {
            kind: np.array([i for i, k in enumerate(kinds) if k == kind])
            for kind in dict.fromkeys(kinds)
        }
        self.daily_harvest_wh: dict[int, Floats] = {}
        self.reasons: dict[str, int] = dict.fromkeys(map(str, PlanReason), 0)

    def record(self, local_day: int, pv_power: Floats, hours: float | None = None) -> None:
        """Add one step's panel output [W] to its local day's harvest (a step of ``hours``,
        the planner's step by default)."""
        today = self.daily_harvest_wh.setdefault(local_day, np.zeros(len(pv_power)))
        today += pv_power * (self.step_hours if hours is None else hours)

    def expected_harvest(self, today: int) -> Floats:
        """Mean harvest of the last complete days [Wh/d]; 0 before a day is complete."""
        days = [day for day in self.daily_harvest_wh if today - HARVEST_DAYS <= day < today]
        if not days:
            return np.zeros(len(self.lamp_w))
        mean: Floats = np.mean([self.daily_harvest_wh[day] for day in days], axis=0)
        return mean

    def plan(self, now: datetime, today: int, battery_soc: Floats) -> Floats:
        """Tonight's level of every light at each minute of the local day [%]."""
        night = night_window(self.policy, now, self.site.latitude, self.site.longitude)
        usable = usable_energy_wh(battery_soc, self.battery_wh)
        harvest = self.expected_harvest(today)
        table = np.zeros((len(self.lamp_w), 1_440))
        for kind, members in self.groups.items():
            plan = plan_night(
                self.policy,
                kind,
                night=night,
                zone=self.zone,
                usable_energy_wh=usable[members],
                lamp_w=self.lamp_w[members],
                expected_harvest_wh_per_day=harvest[members],
            )
            table[members] = plan.levels_by_minute()
            for reason in plan.reasons:
                self.reasons[str(reason)] += 1
        return table


class PlatformLighting:
    """The lighting service's nightly schedules for a simulated fleet (``smartcity history``,
    ``smartcity rules score``): each night planned when the setting sun passes the live
    service's planning elevation (:data:`control.lighting_service.PLAN_ABOVE_GATE_DEG`
    above the lamps' switching elevation), from every light's charge then and its mean
    harvest of the last days, and run as the agents run a ``set_schedule``: the level of the
    clock time while the sun is below the switching elevation. Implements
    :class:`simulators.history.LightingProgram`.
    """

    def __init__(self, inventory: SiteInventory, policy: LightingPolicy = DEFAULT_LIGHTING) -> None:
        site = inventory.site
        self.site = site
        self.zone = ZoneInfo(site.timezone)
        lights = list(inventory.by_class(DeviceClass.STREETLIGHT))
        self.planner = _SocAwarePlanner(policy, site, lights, self.zone, step_s=60)
        self.previous: datetime | None = None
        self.gate = policy.gate_elevation_deg
        self.plan_at = self.gate + LIVE_PLAN_ABOVE_GATE_DEG
        self.previous_elevation = np.inf
        self.table: Floats | None = None

    @property
    def plan_reasons(self) -> dict[str, int]:
        """(light, night) plans so far, by reason (:class:`control.lighting.PlanReason`)."""
        return dict(self.planner.reasons)

    def levels(self, now: datetime, readings: Mapping[str, Floats]) -> Floats | None:
        """Every light's level at ``now`` [%]; None before the first night is planned."""
        elevation = float(elevation_at(np.array([now.timestamp()]), *self._place)[0])
        local = now.astimezone(self.zone)
        day = local.date().toordinal() - _EPOCH_ORDINAL
        pv, soc = readings.get("pv_power"), readings.get("battery_soc")
        if pv is not None and self.previous is not None:
            self.planner.record(day, pv, (now - self.previous).total_seconds() / 3_600.0)
        self.previous = now
        if soc is not None and elevation < self.plan_at <= self.previous_elevation:
            self.table = self.planner.plan(now, day, soc.copy())
        self.previous_elevation = elevation
        if self.table is None:
            return None
        if elevation >= self.gate:
            return np.zeros(len(self.table))
        column: Floats = self.table[:, local.hour * 60 + local.minute]
        return column

    @property
    def _place(self) -> tuple[float, float]:
        return self.site.latitude, self.site.longitude


def _fleet(lights: list[Device], seed: int) -> StreetlightFleet:
    """The lights with their starting charge, drawn as :class:`simulators.city.SimulatedCity`
    draws them for the same seed."""
    light_seed = np.random.SeedSequence(seed).spawn(4)[1]
    return StreetlightFleet(lights, np.random.default_rng(light_seed))


class _Tally:
    """What a strategy's lights did, step by step, summed for the report."""

    def __init__(self, lights: list[Device], timeline: _Timeline, step_hours: float) -> None:
        self.lights = lights
        self.timeline = timeline
        self.step_hours = step_hours
        count = len(lights)
        elevation = timeline.agent_elevation[:-1]
        self.nights = np.unique(timeline.night[:-1][elevation < LAMP_SWITCH_ELEVATION_DEG])
        self.night_position = {int(night): index for index, night in enumerate(self.nights)}
        # The period's nights: one per day (the first morning and the last evening together).
        period_s = (timeline.moments[-1] - timeline.moments[0]).total_seconds()
        self.period_nights = max(1, round(period_s / 86_400))
        self.dark_nights = np.zeros((count, len(self.nights)), dtype=bool)
        self.dark_steps = np.zeros(count)
        self.lit_steps = np.zeros(count)
        self.level_sum = 0.0
        self.dark_outside_steps = 0
        self.lit_level_sum = 0.0
        self.lamp_wh = np.zeros(count)
        self.harvest_wh = np.zeros(count)
        self.lowest_soc = 100.0

    def add(self, k: int, commanded: Floats, lamp_w: Floats, readings: dict[str, Floats]) -> None:
        """Step ``k``: the levels the agents asked for [%] and the lights' readings after it."""
        lamp_on = readings["lamp_on"] > 0.5
        level = readings["dimming_level"]
        self.harvest_wh += readings["pv_power"] * self.step_hours
        self.lamp_wh += lamp_w * level / 100.0 * self.step_hours
        self.lit_steps += lamp_on
        self.lit_level_sum += float(level.sum())
        dark = (commanded > 0) & ~lamp_on
        if dark.any():
            self.dark_steps += dark
            position = self.night_position.get(int(self.timeline.night[k]))
            if position is not None:
                self.dark_nights[dark, position] = True
        if self.timeline.agent_elevation[k] < LAMP_SWITCH_ELEVATION_DEG:
            self.level_sum += float(level.sum())
            self.dark_outside_steps += len(level)
        self.lowest_soc = min(self.lowest_soc, float(readings["battery_soc"].min()))

    @property
    def lights_dark(self) -> int:
        return int(self.dark_nights.any(axis=1).sum())

    def report(self, strategy: str, final_soc: Floats, reasons: dict[str, int]) -> StrategyReport:
        count, hours = len(self.lights), self.step_hours
        epoch = date(1970, 1, 1).toordinal()
        nights_by_light = self.dark_nights.sum(axis=1)
        by_model: dict[str, int] = {}
        for light, nights_dark in zip(self.lights, nights_by_light, strict=True):
            if nights_dark:
                by_model[light.model] = by_model.get(light.model, 0) + int(nights_dark)
        lit_hours = float(self.lit_steps.sum()) * hours
        return StrategyReport(
            strategy=strategy,
            lights=count,
            nights=self.period_nights,
            lights_dark=self.lights_dark,
            light_nights_dark=int(nights_by_light.sum()),
            max_nights_dark=int(nights_by_light.max(initial=0)),
            dark_hours=round(float(self.dark_steps.sum()) * hours, 1),
            lit_hours=round(lit_hours, 1),
            lit_hours_per_light_night=round(lit_hours / max(1, count * self.period_nights), 2),
            mean_level_while_dark_pct=round(self.level_sum / max(1, self.dark_outside_steps), 1),
            mean_level_while_lit_pct=round(
                self.lit_level_sum / max(1.0, float(self.lit_steps.sum())), 1
            ),
            lamp_energy_kwh=round(float(self.lamp_wh.sum()) / 1_000.0, 1),
            harvest_kwh=round(float(self.harvest_wh.sum()) / 1_000.0, 1),
            lowest_soc_pct=round(self.lowest_soc, 1),
            mean_final_soc_pct=round(float(final_soc.mean()), 1),
            lights_dark_by_night={
                date.fromordinal(int(night) + epoch).isoformat(): int(dark_count)
                for night, dark_count in zip(self.nights, self.dark_nights.sum(axis=0), strict=True)
                if dark_count
            },
            nights_dark_by_model=by_model,
            plan_reasons={reason: n for reason, n in reasons.items() if n},
        )


def _readings(
    fleet: StreetlightFleet,
    groups: list[tuple[StreetlightRating, npt.NDArray[np.intp]]],
    commanded: Floats,
    weather: Now,
) -> dict[str, Floats]:
    """The readings the replay needs after a step, as :meth:`StreetlightFleet.values` gives
    them for lights without faults, without computing the other metrics and their noise (two
    thirds of the replay's time)."""
    lamp_on = (commanded > 0) & ~fleet.disconnected
    pv = np.zeros(len(commanded))
    for rating, members in groups:
        size = len(members)
        pv[members] = panel_power(
            np.full(size, weather.ghi),
            np.full(size, weather.air_temperature),
            rating,
            fleet.clean_share[members],
        )
    return {
        "lamp_on": lamp_on.astype(np.float64),
        "dimming_level": np.where(lamp_on, commanded, 0.0),
        "pv_power": pv,
        "battery_soc": fleet.soc,
    }


def _run(
    strategy: str,
    options: WhatIfOptions,
    *,
    lights: list[Device],
    timeline: _Timeline,
    zone: ZoneInfo,
    progress: Callable[[str], None],
) -> StrategyReport:
    """Step the lights over the period under ``strategy``, as the agents would run it."""
    fleet = _fleet(lights, options.seed)
    count = len(lights)
    step_hours = options.step_s / 3_600.0
    no_faults = {fault: np.zeros(count, dtype=bool) for fault in FaultType}
    site = options.inventory.site
    planner = _SocAwarePlanner(options.policy, site, lights, zone, options.step_s)
    tally = _Tally(lights, timeline, step_hours)
    ratings = [rating_of(light) for light in lights]
    groups = [
        (rating, np.array([i for i, r in enumerate(ratings) if r == rating]))
        for rating in dict.fromkeys(ratings)
    ]
    if strategy in FIXED_SCHEDULES:
        schedule = FIXED_SCHEDULES[strategy]
        gate = schedule.dark_below_elevation
        ordered = sorted(schedule.steps, key=lambda step: step.start)
        levels = np.tile([step.level for step in ordered], (count, 1))
        table = levels_by_minute([step.start for step in ordered], levels)
    else:
        gate = options.policy.gate_elevation_deg
        table = np.zeros((count, 1_440))
    plan_at = gate + PLAN_ABOVE_GATE_DEG
    elevation = timeline.agent_elevation
    steps = len(timeline.moments) - 1
    week = round(7 * 24 / step_hours)
    for k in range(steps):
        due = elevation[k] < plan_at and (k == 0 or elevation[k - 1] >= plan_at)
        if strategy == SOC_AWARE and due:
            now = timeline.moments[k].to_pydatetime()
            # The charge the lights report (their battery_soc reading is the model's own).
            table = planner.plan(now, int(timeline.local_day[k]), fleet.soc.copy())
        commanded = table[:, timeline.local_minute[k]] if elevation[k] < gate else np.zeros(count)
        fleet.lamp_level[:] = commanded
        after = Now(
            float(timeline.ghi[k + 1]),
            float(timeline.air_temperature[k + 1]),
            float(timeline.physics_elevation[k + 1]),
        )
        fleet.step(after, options.step_s, no_faults)
        readings = _readings(fleet, groups, commanded, after)
        planner.record(int(timeline.local_day[k]), readings["pv_power"])
        tally.add(k, commanded, fleet.lamp_w, readings)
        if (k + 1) % week == 0 or k + 1 == steps:
            days = (k + 1) * step_hours / 24
            progress(f"{strategy}: {days:.0f} days, {tally.lights_dark} lights gone dark so far")
    reasons = planner.reasons if strategy == SOC_AWARE else {}
    return tally.report(strategy, fleet.soc, reasons)


def replay(
    options: WhatIfOptions, progress: Callable[[str], None] = lambda _: None
) -> WhatIfReport:
    """Replay the period under both strategies, from the same weather and starting charge."""
    started = time.monotonic()
    zone = ZoneInfo(options.inventory.site.timezone)
    lights = select_lights(options.inventory, options.sample)
    weather_seed = np.random.SeedSequence(options.seed).spawn(4)[0]
    timeline = _timeline(options, zone, np.random.default_rng(weather_seed))
    progress(f"{len(lights)} lights, {len(timeline.moments) - 1} steps of {options.step_s} s")
    strategies = [
        _run(strategy, options, lights=lights, timeline=timeline, zone=zone, progress=progress)
        for strategy in STRATEGIES
    ]
    cloudy = options.cloudy
    return WhatIfReport(
        site=options.inventory.site.id,
        start=options.start.isoformat(),
        end=options.end.isoformat(),
        lights=len(lights),
        cloudy=None
        if cloudy is None
        else {
            "first_day": cloudy.first_day.isoformat(),
            "days": cloudy.days,
            "clearness": cloudy.clearness,
        },
        strategies=strategies,
        seconds=round(time.monotonic() - started, 1),
    )


# ----------------------------------------------------------------------------- output

_ROWS: Final = (
    ("lights that went dark", "lights_dark", "{:d}"),
    ("light-nights dark", "light_nights_dark", "{:d}"),
    ("nights dark, worst light", "max_nights_dark", "{:d}"),
    ("hours dark while due on", "dark_hours", "{:,.1f}"),
    ("lit hours, total", "lit_hours", "{:,.0f}"),
    ("lit hours per light-night", "lit_hours_per_light_night", "{:.2f}"),
    ("mean level while dark [%]", "mean_level_while_dark_pct", "{:.1f}"),
    ("mean level while lit [%]", "mean_level_while_lit_pct", "{:.1f}"),
    ("lamp energy [kWh]", "lamp_energy_kwh", "{:,.1f}"),
    ("panel harvest [kWh]", "harvest_kwh", "{:,.1f}"),
    ("lowest charge [%]", "lowest_soc_pct", "{:.1f}"),
    ("mean final charge [%]", "mean_final_soc_pct", "{:.1f}"),
)


def _runs(by_night: dict[str, int]) -> str:
    """Nights and counts, consecutive nights with the same count as one range."""
    parts: list[str] = []
    first = previous = ""
    for night, count in [*by_night.items(), ("", -1)]:
        consecutive = (
            previous
            and night
            and date.fromisoformat(night) - date.fromisoformat(previous) == timedelta(days=1)
        )
        if previous and not (consecutive and count == by_night[previous]):
            span = first if first == previous else f"{first} to {previous}"
            parts.append(f"{span}: {by_night[previous]}")
            first = night
        elif not previous:
            first = night
        previous = night
    return ", ".join(parts)


def format_table(report: WhatIfReport) -> str:
    """The report as a plain-text table, one column per strategy."""
    cloudy = report.cloudy
    heading = [
        f"site {report.site}, {report.lights} lights, {report.start} to {report.end}",
        "overcast: none forced"
        if cloudy is None
        else f"overcast: {cloudy['days']} days from {cloudy['first_day']}, "
        f"clearness {cloudy['clearness']}",
        "",
    ]
    width = max(len(label) for label, _, _ in _ROWS)
    names = [s.strategy for s in report.strategies]
    lines = [f"{'':{width}}  " + "  ".join(f"{name:>13}" for name in names)]
    for label, attribute, form in _ROWS:
        cells = [form.format(getattr(s, attribute)) for s in report.strategies]
        lines.append(f"{label:{width}}  " + "  ".join(f"{cell:>13}" for cell in cells))
    for strategy in report.strategies:
        if strategy.lights_dark_by_night:
            nights = _runs(strategy.lights_dark_by_night)
            lines.append(f"{strategy.strategy}: lights dark, by night: {nights}")
        if strategy.plan_reasons:
            reasons = ", ".join(f"{r} {n}" for r, n in strategy.plan_reasons.items())
            lines.append(f"{strategy.strategy}: nightly plans: {reasons}")
    lines.append(f"elapsed: {report.seconds:.1f} s")
    return "\n".join(heading + lines)


__all__ = [
    "CloudyRun",
    "StrategyReport",
    "WhatIfOptions",
    "WhatIfReport",
    "format_table",
    "replay",
    "select_lights",
]
