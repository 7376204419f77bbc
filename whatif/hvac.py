"""What-if replays: a period of weather and occupancy through the building simulator, once per
strategy, to compare energy, peak demand and comfort before switching a strategy on.

Every contender sees the same weather, the same people and the same booked events: they are
simulated side by side as copies of the site's zones, stepped together. Each copy is run by
the platform's decision core (:func:`control.hvac.decide`) every ``control_s``, and between
decisions by the agents' own thermostat (:func:`edge_agents.control.thermostat`), as it would
be live. The references are run the same way: the EN 15232 class C building
(:mod:`whatif.class_c`, the one every saving is quoted against) and, for continuity with
earlier figures, a thermostat holding the comfort setpoints day and night (24/7).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from control.hvac import ControlledZones, Decision, Memory, Observation, controlled_zones, decide
from control.opening import calendar_for, open_grid, outlook
from control.strategy import Hvac, Strategy
from edge_agents.control import ThermostatSettings
from protocol.sites import SiteInventory
from simulators.building_fleet import zone_capacity, zone_plant
from simulators.environment import SiteWeather
from simulators.occupancy import is_occupied_hours, occupancy, ramadan_flags
from simulators.sky import Place
from whatif.class_c import ClassCState, class_c_settings, size_fixed_starts
from whatif.plant import Plant, PlantState, step_plant

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PEAK_WINDOW_S: Final = 900
"""Peak demand is the highest mean over this window, as utilities bill it [s]."""
EVENT_LEAD_S: Final = 1_800
"""A booked event opens its zones this long before the first guests [s]."""
CLASS_C: Final = "class C"
"""The label of the EN 15232 class C reference, the yardstick of savings."""
CLASS_C_BLINDS: Final = "class C+blinds"
"""The label of class C whose external blinds a timer lowers all cooling season: the strongest
reference where zones have blinds."""
ALWAYS_ON: Final = "24/7"
"""The label of the thermostat held at comfort day and night: a secondary reference."""
REFERENCES: Final = frozenset({CLASS_C, CLASS_C_BLINDS, ALWAYS_ON})


class Control(StrEnum):
    STRATEGY = "strategy"
    """The platform's decisions under the contender's strategy."""
    CLASS_C = "class C"
    """The EN 15232 class C timer with the strategy's hours and setpoints."""
    CLASS_C_BLINDS = "class C+blinds"
    """The same, with the zones' external blinds lowered all cooling season by a timer."""


@dataclass(frozen=True, slots=True)
class Contender:
    """One way of running the buildings: a strategy, the class C timer set up from a
    strategy's hours and setpoints, or (strategy None) the 24/7 thermostat."""

    label: str
    strategy: Strategy | None
    control: Control = Control.STRATEGY

    @classmethod
    def references(cls, strategy: Strategy) -> list[Contender]:
        """The class C building with ``strategy``'s hours and setpoints, the same with its
        blinds on a seasonal timer, and the 24/7 one."""
        return [
            cls(CLASS_C, strategy, Control.CLASS_C),
            cls(CLASS_C_BLINDS, strategy, Control.CLASS_C_BLINDS),
            cls(ALWAYS_ON, None),
        ]


@dataclass(slots=True)
class Figures:
    heating_kwh: float = 0.0
    """Heat the radiators delivered (the zone meters' heat part) [kWh]."""
    cooling_kwh: float = 0.0
    """Electricity the air conditioners drew [kWh]."""
    peak_kw: float = 0.0
    """Highest 15-minute mean of heat plus cooling electricity [kW]."""
    discomfort_kh: float = 0.0
    """Degree-hours outside the comfort band while people were in [K h]: below it in zones
    that can be heated, above it in zones that can be cooled (the rest is not the control's)."""

    @property
    def energy_kwh(self) -> float:
        return self.heating_kwh + self.cooling_kwh


@dataclass(slots=True)
class WhatIfReport:
    start: datetime
    end: datetime
    step_s: int
    comfort_band: tuple[float, float]
    labels: list[str]
    buildings: list[str]
    figures: dict[str, dict[str, Figures]] = field(default_factory=dict)
    """By contender label, then building id, plus ``total``."""
    elapsed_s: float = 0.0
    zone_steps: int = 0
    plot: Path | None = None
    week_start: datetime | None = None

    def saving(self, label: str, against: str = CLASS_C) -> float:
        """Share of ``against``'s energy that ``label`` saves [-]."""
        reference = self.figures[against]["total"].energy_kwh
        return 1.0 - self.figures[label]["total"].energy_kwh / reference if reference else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "step_s": self.step_s,
            "comfort_band": list(self.comfort_band),
            "elapsed_s": round(self.elapsed_s, 2),
            "zone_steps": self.zone_steps,
            "plot": str(self.plot) if self.plot else None,
            "savings_vs_class_c": self._savings(CLASS_C),
            "savings_vs_class_c_blinds": self._savings(CLASS_C_BLINDS),
            "savings_vs_24_7": self._savings(ALWAYS_ON),
            "figures": {
                label: {
                    building: {
                        "heating_kwh": round(item.heating_kwh, 1),
                        "cooling_kwh": round(item.cooling_kwh, 1),
                        "energy_kwh": round(item.energy_kwh, 1),
                        "peak_kw": round(item.peak_kw, 2),
                        "discomfort_kh": round(item.discomfort_kh, 2),
                    }
                    for building, item in by_building.items()
                }
                for label, by_building in self.figures.items()
            },
        }

    def strategies(self) -> list[str]:
        """The contenders that are not references."""
        return [label for label in self.labels if label not in REFERENCES]

    def _savings(self, against: str) -> dict[str, float]:
        if against not in self.labels:
            return {}
        return {label: round(self.saving(label, against), 4) for label in self.strategies()}


def booked_events(people: npt.NDArray[np.int64], regular: BoolArray, step_s: int) -> BoolArray:
    """The times each zone is booked for an event: people in outside the regular opening
    hours, each run of them opened :data:`EVENT_LEAD_S` early (as a booking calendar would)."""
    outside = (people > 0) & ~regular
    lead = max(1, EVENT_LEAD_S // step_s)
    booked = outside.copy()
    for shift in range(1, lead + 1):
        booked[:, :-shift] |= outside[:, shift:]
    return booked


def run_whatif(  # noqa: PLR0912, PLR0915 - the replay loop reads best as one story
    inventory: SiteInventory,
    contenders: Sequence[Contender],
    start: datetime,
    end: datetime,
    *,
    seed: int = 1,
    step_s: int = 150,
    control_s: int = 300,
    progress: Callable[[str], None] | None = None,
    plot: Path | None = None,
) -> WhatIfReport:
    """Replay ``start``..``end`` for every contender; figures per building and in total."""
    if end <= start:
        raise ValueError(
            f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    if control_s % step_s:
        raise ValueError(f"control_s ({control_s}) must be a multiple of step_s ({step_s})")
    strategies = [c.strategy for c in contenders if c.strategy is not None]
    if not strategies:
        raise ValueError(
            "at least one contender must be a strategy (its comfort band is the yardstick)"
        )
    yardstick = strategies[0].hvac
    began = time.monotonic()
    site = controlled_zones(inventory.devices)
    if not site.devices:
        raise ValueError(f"site {inventory.site.id} has no building zones to control")
    tz = inventory.site.timezone
    location = Place(inventory.site.latitude, inventory.site.longitude, inventory.site.altitude)
    zones = site.zones
    count, copies = zones.size, len(contenders)
    times = pd.date_range(start, end, freq=f"{step_s}s", inclusive="left", tz="UTC")
    steps = len(times)
    unix_s = times.asi8 // 1_000_000_000
    calendar = calendar_for(unix_s)  # the people's, as the holidays package estimates it
    seeds = np.random.SeedSequence(seed).spawn(2 + count)
    weather = SiteWeather(location, start, np.random.default_rng(seeds[0])).conditions(times)
    fasting = ramadan_flags(times, calendar.ramadan_days, tz)
    people = np.array(
        [
            occupancy(
                times,
                place.kind,
                zone_capacity(device),
                np.random.default_rng(seeds[2 + row]),
                zone=place.zone,
                ramadan=fasting,
                holidays=calendar.holidays,
                tz=tz,
            )
            for row, (place, device) in enumerate(zip(site.places, site.devices, strict=True))
        ]
    )
    regular = np.array(
        [
            is_occupied_hours(times, place.kind, ramadan=fasting, holidays=calendar.holidays, tz=tz)
            for place in site.places
        ]
    )
    booked = booked_events(people, regular, step_s)
    outlooks: list[tuple[BoolArray, FloatArray, FloatArray] | None] = []
    for contender in contenders:
        if contender.strategy is None:
            outlooks.append(None)
            continue
        known = calendar_for(unix_s, contender.strategy.calendar)  # as the strategy knows it
        grid = open_grid(contender.strategy, site.places, unix_s, known, tz) | booked
        outlooks.append((grid, *outlook(grid, step_s)))

    zones_plant = Plant(*zone_plant(site.devices))
    stacked = zones_plant.copies(copies)
    total = count * copies
    state = PlantState.initial(np.full(total, max(float(weather.air_temperature[0]) + 4.0, 14.0)))
    settings = _always_on_settings(total, yardstick.comfort.heating, yardstick.comfort.cooling)
    supply_setpoint = np.full(total, np.nan)
    memories = [Memory.initial(count) for _ in contenders]
    fixed_starts = [
        size_fixed_starts(
            c.strategy, plant=zones_plant, zones=zones, places=site.places, location=location, tz=tz
        )
        if c.strategy is not None and c.control is not Control.STRATEGY
        else None
        for c in contenders
    ]
    class_c_states = [ClassCState() for _ in contenders]
    low, high = yardstick.comfort_band.low, yardstick.comfort_band.high

    building_of = np.tile(zones.building, copies) + np.repeat(np.arange(copies), count) * len(
        zones.buildings
    )
    groups = copies * len(zones.buildings)
    heat_j = np.zeros(total)
    cool_j = np.zeros(total)
    discomfort = np.zeros(total)
    window_steps = max(1, PEAK_WINDOW_S // step_s)
    window_power = np.zeros(groups)
    site_window = np.zeros(copies)
    peaks = np.zeros(groups)
    site_peaks = np.zeros(copies)
    per_control = control_s // step_s
    week = _representative_week(times, weather.air_temperature, tz)
    trace_power: list[FloatArray] = []
    trace_temperature: list[FloatArray] = []
    can_heat = np.tile(zones.can_heat, copies)
    can_cool = np.tile(zones.can_cool, copies)
    last_report = began

    for k in range(steps):
        now = times[k].to_pydatetime()
        outdoor = float(weather.air_temperature[k])
        occupants = np.tile(people[:, k], copies)
        if k % per_control == 0:
            for copy, contender in enumerate(contenders):
                plan = outlooks[copy]
                if contender.strategy is None or plan is None:
                    continue
                grid, to_start, to_end = plan
                part = slice(copy * count, (copy + 1) * count)
                starts = fixed_starts[copy]
                if starts is not None:
                    class_c_states[copy], chosen, supply = class_c_settings(
                        contender.strategy.hvac,
                        zones,
                        starts,
                        class_c_states[copy],
                        now_s=now.timestamp(),
                        outdoor=outdoor,
                        scheduled=grid[:, k],
                        hours_to_start=to_start[:, k],
                        blinds_timer=contender.control is Control.CLASS_C_BLINDS,
                    )
                    _write(settings, supply_setpoint, part, chosen, supply)
                    continue
                seen = Observation(
                    now=now,
                    temperature=state.temperature[part],
                    occupancy=people[:, k].astype(np.float64),
                    window_open=np.zeros(count, dtype=np.bool_),
                    vents_open=state.vents_open[part],
                    heating_active=state.heating_on[part],
                    cooling_active=state.cooling_on[part],
                    power=state.power_kw[part],
                    scheduled=grid[:, k],
                    hours_to_start=to_start[:, k],
                    hours_to_end=to_end[:, k],
                    outdoor_temperature=outdoor,
                    sun_elevation=float(weather.sun_elevation[k]),
                )
                memories[copy], decision = decide(
                    contender.strategy.hvac, zones, seen, memories[copy]
                )
                _write(
                    settings,
                    supply_setpoint,
                    part,
                    _settings_of(decision, contender.strategy.hvac),
                    decision.supply_temperature,
                )
        state, plant, stepped = step_plant(
            stacked,
            state,
            settings,
            supply_setpoint,
            outdoor=outdoor,
            ghi=float(weather.ghi[k]),
            occupants=occupants,
            seconds=step_s,
        )
        heat_j += plant.heating * step_s
        cool_j += plant.cooling_electric * step_s
        power = state.power_kw
        mean = stepped.mean_temperature
        outside_band = np.where(can_heat, np.maximum(low - mean, 0.0), 0.0) + np.where(
            can_cool, np.maximum(mean - high, 0.0), 0.0
        )
        discomfort += np.where(occupants > 0, outside_band, 0.0) * step_s / 3_600
        window_power += np.bincount(building_of, weights=power, minlength=groups)
        site_window += power.reshape(copies, count).sum(axis=1)
        if (k + 1) % window_steps == 0:
            np.maximum(peaks, window_power / window_steps, out=peaks)
            np.maximum(site_peaks, site_window / window_steps, out=site_peaks)
            window_power[:] = 0.0
            site_window[:] = 0.0
        if week is not None and week[0] <= k < week[1]:
            trace_power.append(power.reshape(copies, count).sum(axis=1))
            trace_temperature.append(stepped.temperature.copy())
        if progress is not None and time.monotonic() - last_report >= 5.0:
            last_report = time.monotonic()
            progress(f"  replayed to {now:%Y-%m-%d %H:%M} ({100 * (k + 1) / steps:.0f} %)")

    report = WhatIfReport(
        start=start,
        end=end,
        step_s=step_s,
        comfort_band=(low, high),
        labels=[c.label for c in contenders],
        buildings=list(zones.buildings),
        zone_steps=total * steps,
    )
    nb = len(zones.buildings)
    for copy, contender in enumerate(contenders):
        part = slice(copy * count, (copy + 1) * count)
        by_building: dict[str, Figures] = {}
        for number, building in enumerate(zones.buildings):
            members = np.flatnonzero(zones.building == number) + copy * count
            by_building[building] = Figures(
                heating_kwh=float(heat_j[members].sum() / 3.6e6),
                cooling_kwh=float(cool_j[members].sum() / 3.6e6),
                peak_kw=float(peaks[copy * nb + number]),
                discomfort_kh=float(discomfort[members].sum()),
            )
        by_building["total"] = Figures(
            heating_kwh=float(heat_j[part].sum() / 3.6e6),
            cooling_kwh=float(cool_j[part].sum() / 3.6e6),
            peak_kw=float(site_peaks[copy]),
            discomfort_kh=float(discomfort[part].sum()),
        )
        report.figures[contender.label] = by_building
    report.elapsed_s = time.monotonic() - began
    if plot is not None and week is not None and trace_power:
        report.week_start = times[week[0]].to_pydatetime()
        shown = slice(week[0], week[0] + len(trace_power))
        _plot_week(
            plot,
            report=report,
            times=times[shown],
            power=np.array(trace_power),
            temperatures=np.array(trace_temperature),
            outdoor=weather.air_temperature[shown],
            site=site,
            tz=tz,
        )
        report.plot = plot
    return report


def _always_on_settings(total: int, heating: float, cooling: float) -> ThermostatSettings:
    """The fixed-setpoint thermostat: both plants allowed, comfort setpoints, 24/7."""
    return ThermostatSettings(
        heats=np.ones(total, dtype=np.bool_),
        cools=np.ones(total, dtype=np.bool_),
        heating_setpoint=np.full(total, heating),
        cooling_setpoint=np.full(total, cooling),
        deadband_k=np.full(total, 0.5),
        min_on_s=np.zeros(total),
        min_off_s=np.zeros(total),
        ventilate_to=np.full(total, np.nan),
        shade=np.zeros(total, dtype=np.bool_),
    )


def _settings_of(decision: Decision, hvac: Hvac) -> ThermostatSettings:
    """A decision as the thermostats take it from its commands."""
    size = len(decision.mode)
    return ThermostatSettings(
        heats=np.array([mode.heats for mode in decision.mode]),
        cools=np.array([mode.cools for mode in decision.mode]),
        heating_setpoint=decision.heating_setpoint,
        cooling_setpoint=decision.cooling_setpoint,
        deadband_k=np.full(size, hvac.deadband_k),
        min_on_s=np.full(size, hvac.min_on),
        min_off_s=np.full(size, hvac.min_off),
        ventilate_to=decision.ventilate_to,
        shade=decision.shade,
    )


def _write(
    settings: ThermostatSettings,
    supply_setpoint: FloatArray,
    part: slice,
    chosen: ThermostatSettings,
    supply: FloatArray,
) -> None:
    """Write one copy's settings into the stacked thermostats' settings."""
    for name in (
        "heats",
        "cools",
        "heating_setpoint",
        "cooling_setpoint",
        "deadband_k",
        "min_on_s",
        "min_off_s",
        "ventilate_to",
        "shade",
    ):
        getattr(settings, name)[part] = getattr(chosen, name)
    supply_setpoint[part] = supply


def _representative_week(
    times: pd.DatetimeIndex, outdoor: FloatArray, tz: str
) -> tuple[int, int] | None:
    """Step indices of the Monday-to-Sunday week whose mean outdoor temperature is nearest the
    period's; None when the period holds no whole week."""
    local = times.tz_convert(tz)
    mondays = np.flatnonzero((local.dayofweek == 0) & (local.hour == 0) & (local.minute == 0))
    step = (times[1] - times[0]).total_seconds() if len(times) > 1 else 86_400
    length = int(7 * 86_400 // step)
    candidates = [int(first) for first in mondays if first + length <= len(times)]
    if not candidates:
        return None
    overall = float(np.mean(outdoor))
    best = min(
        candidates, key=lambda first: abs(float(np.mean(outdoor[first : first + length])) - overall)
    )
    return best, best + length


def _plot_week(
    path: Path,
    *,
    report: WhatIfReport,
    times: pd.DatetimeIndex,
    power: FloatArray,
    temperatures: FloatArray,
    outdoor: FloatArray,
    site: ControlledZones,
    tz: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = site.zones.size
    local = times.tz_convert(tz).tz_localize(None)
    both = site.zones.can_heat & site.zones.can_cool
    areas = np.array([float(d.metadata.get("area_m2", 100.0)) for d in site.devices])
    largest = int(np.argmax(np.where(both, areas, -1.0)))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    low, high = report.comfort_band
    top.axhspan(low, high, color="tab:green", alpha=0.12, label=f"comfort band {low:g}-{high:g} C")
    top.plot(local, outdoor, color="grey", linewidth=1, label="outdoor")
    for copy, label in enumerate(report.labels):
        top.plot(local, temperatures[:, copy * count + largest], linewidth=1.2, label=label)
        bottom.plot(local, power[:, copy], linewidth=1, label=label)
    top.set_ylabel("C")
    top.set_title(f"{site.zones.ids[largest]}: air temperature")
    top.legend(loc="upper right", fontsize=8)
    bottom.set_ylabel("kW")
    bottom.set_title("all zones: heat delivered plus air-conditioning electricity")
    bottom.legend(loc="upper right", fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_report(report: WhatIfReport) -> str:
    """The report as a table: per building and in total, every contender."""
    lines = [
        f"what-if {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC, "
        f"step {report.step_s} s; comfort band "
        f"{report.comfort_band[0]:g}-{report.comfort_band[1]:g} C while occupied",
        f"{'building':<20} {'strategy':<14} {'heat kWh':>10} {'cool kWh':>9} {'total kWh':>10} "
        f"{'peak kW':>8} {'discomfort Kh':>14}",
    ]
    for building in [*report.buildings, "total"]:
        for label in report.labels:
            item = report.figures[label][building]
            lines.append(
                f"{building:<20} {label:<14} {item.heating_kwh:>10.0f} {item.cooling_kwh:>9.0f} "
                f"{item.energy_kwh:>10.0f} {item.peak_kw:>8.1f} {item.discomfort_kh:>14.1f}"
            )
    for label in report.strategies():
        against = [
            f"{100 * report.saving(label, reference):.1f} % less energy than {name}"
            for reference, name in (
                (CLASS_C, "class C"),
                (CLASS_C_BLINDS, "class C with its blinds on a timer"),
                (ALWAYS_ON, "24/7"),
            )
            if reference in report.labels
        ]
        if against:
            lines.append(f"{label}: {'; '.join(against)}")
    rate = report.zone_steps / report.elapsed_s if report.elapsed_s else math.inf
    lines.append(f"replayed in {report.elapsed_s:.1f} s ({rate / 1e6:.2f} M zone-steps/s)")
    if report.plot is not None and report.week_start is not None:
        lines.append(f"plot of the week from {report.week_start:%Y-%m-%d}: {report.plot}")
    return "\n".join(lines)
