"""HVAC control of building zones: what each zone should aim at, decided for all zones at once.

Pure: every input, the time included, is an argument, and the decision is a function of the
strategy (:mod:`control.strategy`), what the zones report now, and the :class:`Memory` the
previous decision left. The same core drives the live service and the what-if replays.

Per zone, a decision picks one level and its setpoints:

- ``comfort`` while the zone is open and people are in (or came in outside opening hours);
- ``standby`` while open but empty for ``standby_after``;
- ``setback`` while closed, and from the optimum stop: in the last ``max_early`` before
  closing, once the zone left to drift would still be within the comfort band at closing;
- ``preheat`` / ``precool`` (comfort setpoints) from the optimum start: just early enough,
  by the warm-up and cool-down rates learnt from the zone's own history, to be comfortable at
  opening;
- ``window``: a window open for ``window_open_after`` switches the zone off (the agent's
  frost protection still holds);
- ``shed``: a building over its power cap sets back zones in turn, empty ones first.

Beside the level, in the cooling season: zones with motorised windows that are closed and
empty are ventilated with the night's air down to ``night_ventilation.down_to`` (the agent
opens the windows only while the outdoor air is cooler, :func:`edge_agents.control.vents`),
and zones with external blinds keep them lowered.

Heating is allowed only in the heating season and cooling only in the cooling season (by the
running mean of the outdoor temperature), so with the packaged seasons a zone is not heated in
the morning and cooled in the afternoon of the same mild day. Where a strategy lets the seasons
overlap, or no outdoor temperature is known, zones run in ``auto``, whose setpoints lie at least
twice the deadband apart; the agent's thermostat never runs both plants at once in any case.

The zone model used for the optimum start and stop is first order:
dT/dt = a - b (T - T_out) while heating at full power (``heat_rate`` a [K/h], ``loss_rate``
b [1/h]), dT/dt = -c - b (T - T_out) while cooling (``cool_rate`` c [K/h]), and
dT/dt = -b (T - T_out) drifting at night. a, b and c are learnt on line from the readings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from control.opening import ZonePlace
from control.start_plan import Waiting, starts_under_cap
from control.strategy import Hvac
from protocol.commands import HvacMode, SetHvac
from protocol.sites import Device
from protocol.topics import DeviceClass

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

LEARNING_RATE: Final = 0.1
"""Weight of one observation in the learnt rates [-]."""
INITIAL_HEAT_RATE: Final = 2.0
INITIAL_COOL_RATE: Final = 1.5
INITIAL_LOSS_RATE: Final = 0.05
STOP_MARGIN_K: Final = 0.5
"""The optimum stop keeps the predicted closing temperature this far inside the band [K]."""
UNKNOWN_OUTDOOR_C: Final = 10.0
"""What the optimum start assumes outdoors when no outdoor sensor was ever heard [C]."""
VENT_FLOOR_AFTER_OPENING_H: Final = 1.0
"""Night ventilation stops where the zone, left to drift from then on, would leave the comfort
band before it has been open this long [h]."""
OUTDOOR_MEAN_S: Final = 86_400.0
"""Time constant of the outdoor running mean that sets the season [s]."""


class Level(StrEnum):
    COMFORT = "comfort"
    PRESENCE = "presence"
    STANDBY = "standby"
    SETBACK = "setback"
    PREHEAT = "preheat"
    PRECOOL = "precool"
    STOP_EARLY = "stop-early"
    WINDOW = "window"
    SHED = "shed"


@dataclass(frozen=True, slots=True)
class Zones:
    """The zones under control, in a fixed order."""

    ids: tuple[str, ...]
    building: npt.NDArray[np.intp]
    """Index of each zone's building in ``buildings``."""
    buildings: tuple[str, ...]
    can_heat: BoolArray
    can_cool: BoolArray
    can_ventilate: BoolArray
    """Has motorised windows for night ventilation."""
    can_shade: BoolArray
    """Has external blinds."""

    @property
    def size(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class ControlledZones:
    """Building zones (one building device each), in the order decisions use."""

    devices: tuple[Device, ...]
    places: tuple[ZonePlace, ...]
    zones: Zones


def controlled_zones(devices: Iterable[Device]) -> ControlledZones:
    """The building zones among ``devices`` as the decision core and the schedules see them
    (none at all is no error: a live service takes up zones added later)."""
    devices = tuple(device for device in devices if device.device_class is DeviceClass.BUILDING)
    buildings = list(dict.fromkeys(str(device.building) for device in devices))
    places = tuple(
        ZonePlace(
            kind=str(device.metadata.get("building_kind", "town_hall")),
            building=str(device.building),
            zone=device.zone or "",
        )
        for device in devices
    )
    zones = Zones(
        ids=tuple(device.id for device in devices),
        building=np.array([buildings.index(str(d.building)) for d in devices], dtype=np.intp),
        buildings=tuple(buildings),
        can_heat=np.array([bool(d.metadata.get("heating", True)) for d in devices]),
        can_cool=np.array([bool(d.metadata.get("cooling", True)) for d in devices]),
        can_ventilate=np.array(
            [bool(d.metadata.get("motorised_windows", False)) for d in devices], dtype=np.bool_
        ),
        can_shade=np.array(
            [bool(d.metadata.get("external_blinds", False)) for d in devices], dtype=np.bool_
        ),
    )
    return ControlledZones(devices, places, zones)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the zones report at ``now``, and what their schedules say; arrays by zone."""

    now: datetime
    temperature: FloatArray
    occupancy: FloatArray
    window_open: BoolArray
    vents_open: BoolArray
    """The motorised windows are open (night ventilation)."""
    heating_active: BoolArray
    cooling_active: BoolArray
    power: FloatArray
    """Meter power [kW]."""
    scheduled: BoolArray
    """Open now (opening hours or a booked event)."""
    hours_to_start: FloatArray
    """Until the next opening; 0 while open, inf when none is in sight [h]."""
    hours_to_end: FloatArray
    """Until closing while open; 0 while closed, inf when no closing is in sight [h]."""
    outdoor_temperature: float
    """[C]; NaN when unknown."""
    sun_elevation: float
    """[deg], for learning the loss rate at night only."""


@dataclass(frozen=True, slots=True)
class Memory:
    """What a decision leaves for the next one; arrays by zone."""

    heat_rate: FloatArray
    cool_rate: FloatArray
    loss_rate: FloatArray
    demand_kw: FloatArray
    """Learnt power of a zone while its plant runs [kW]; NaN until seen."""
    last_temperature: FloatArray
    last_heating: BoolArray
    last_cooling: BoolArray
    last_heating_setpoint: FloatArray
    last_cooling_setpoint: FloatArray
    empty_for_s: FloatArray
    """How long each zone has been empty, as far as the observations tell [s]."""
    window_for_s: FloatArray
    """How long a window has been open [s]."""
    was_scheduled: BoolArray
    was_empty: BoolArray
    window_was_open: BoolArray
    was_starting: BoolArray
    """Pre-heating or pre-cooling at the last decision."""
    vents_were_open: BoolArray
    last_time: float = math.nan
    outdoor_mean: float = math.nan
    rotation: int = 0

    @classmethod
    def initial(cls, zones: int) -> Memory:
        def full(value: float) -> FloatArray:
            return np.full(zones, value)

        never = np.zeros(zones, dtype=np.bool_)
        return cls(
            heat_rate=full(INITIAL_HEAT_RATE),
            cool_rate=full(INITIAL_COOL_RATE),
            loss_rate=full(INITIAL_LOSS_RATE),
            demand_kw=full(math.nan),
            last_temperature=full(math.nan),
            last_heating=never,
            last_cooling=never,
            last_heating_setpoint=full(math.nan),
            last_cooling_setpoint=full(math.nan),
            empty_for_s=full(math.inf),
            window_for_s=full(0.0),
            was_scheduled=never,
            was_empty=np.ones(zones, dtype=np.bool_),
            window_was_open=never,
            was_starting=never,
            vents_were_open=never,
        )

    def reindexed(self, ids: Sequence[str], new_ids: Sequence[str]) -> Memory:
        """The memory of the zones ``new_ids`` (the zones changed): what was learnt of a
        zone of ``ids`` is kept, a new zone starts as :meth:`initial` does."""
        fresh = Memory.initial(len(new_ids))
        old_index = {zone: index for index, zone in enumerate(ids)}
        kept = [(new, old_index[zone]) for new, zone in enumerate(new_ids) if zone in old_index]
        new_rows = np.array([new for new, _ in kept], dtype=np.intp)
        old_rows = np.array([old for _, old in kept], dtype=np.intp)
        columns = {}
        for column in fields(self):
            value = getattr(self, column.name)
            if isinstance(value, np.ndarray):
                carried = getattr(fresh, column.name).copy()
                carried[new_rows] = value[old_rows]
                columns[column.name] = carried
        return replace(self, **columns)


@dataclass(frozen=True, slots=True)
class Decision:
    """What each zone should aim at until the next decision; arrays by zone."""

    mode: tuple[HvacMode, ...]
    heating_setpoint: FloatArray
    cooling_setpoint: FloatArray
    supply_temperature: FloatArray
    """Heating water to aim at [C]; NaN: the boiler's own curve."""
    level: tuple[Level, ...]
    ventilate_to: FloatArray
    """Night ventilation down to this room temperature [C]; NaN: windows shut."""
    shade: BoolArray
    """External blinds lowered."""

    def setting(self, index: int, hvac: Hvac) -> SetHvac:
        """The command that carries zone ``index``'s decision."""
        supply = float(self.supply_temperature[index])
        ventilate_to = float(self.ventilate_to[index])
        return SetHvac(
            mode=self.mode[index],
            heating_setpoint=float(self.heating_setpoint[index]),
            cooling_setpoint=float(self.cooling_setpoint[index]),
            hold_s=int(hvac.hold),
            deadband_k=hvac.deadband_k,
            min_on_s=int(hvac.min_on),
            min_off_s=int(hvac.min_off),
            supply_temperature=None if math.isnan(supply) else round(supply, 1),
            ventilate_to=None if math.isnan(ventilate_to) else ventilate_to,
            shade=bool(self.shade[index]),
        )


def decide(  # noqa: PLR0915 - one pass down the levels, in order of precedence
    hvac: Hvac, zones: Zones, seen: Observation, memory: Memory
) -> tuple[Memory, Decision]:
    """The zones' next settings, and the memory for the next call."""
    now_s = seen.now.timestamp()
    elapsed = now_s - memory.last_time if not math.isnan(memory.last_time) else 0.0
    outdoor = seen.outdoor_temperature
    memory = _learn(memory, seen, elapsed)
    outdoor_mean = running_mean(memory.outdoor_mean, outdoor, elapsed)
    # A state counts from the observation that first saw it: the time since the one before
    # is not known to have been spent in it.
    empty = seen.occupancy <= 0
    opening = seen.scheduled & ~memory.was_scheduled
    empty_for = np.where(empty & memory.was_empty & ~opening, memory.empty_for_s + elapsed, 0.0)
    empty_for = np.where(empty, empty_for, 0.0)
    window_for = np.where(
        seen.window_open & memory.window_was_open, memory.window_for_s + elapsed, 0.0
    )

    heat_season, cool_season = season_of(hvac, outdoor_mean)
    heats = zones.can_heat & heat_season
    cools = zones.can_cool & cool_season
    temperature = seen.temperature
    outdoor_or_mean = next(
        (value for value in (outdoor, outdoor_mean) if not math.isnan(value)), UNKNOWN_OUTDOOR_C
    )

    present = seen.occupancy > 0
    level = np.full(zones.size, Level.SETBACK.value, dtype=object)
    level[seen.scheduled] = Level.STANDBY.value
    level[seen.scheduled & (empty_for < hvac.standby_after)] = Level.COMFORT.value
    level[~seen.scheduled & present] = Level.PRESENCE.value

    if hvac.optimum_start.enabled:
        start = hvac.optimum_start
        warm_target = min(hvac.comfort.heating, hvac.comfort_band.low + start.inside_band_k)
        cool_target = hvac.comfort.cooling  # the afternoon's heat leaves no margin to spare
        warm_up = np.where(
            heats & (temperature < warm_target),
            hours_to_reach(
                temperature,
                warm_target,
                outdoor_or_mean,
                memory.heat_rate,
                memory.loss_rate,
            ),
            0.0,
        )
        cool_down = np.where(
            cools & (temperature > cool_target),
            hours_to_reach(
                temperature,
                cool_target,
                outdoor_or_mean,
                -memory.cool_rate,
                memory.loss_rate,
            ),
            0.0,
        )
        warming = warm_up >= cool_down
        needed = np.where(warming, warm_up * start.safety, cool_down * start.cool_down_safety)
        longest = np.where(warming, start.max_preheat, start.max_precool) / 3_600
        lead = np.where(needed > 0, np.minimum(needed + start.margin / 3_600, longest), 0.0)
        closed = ~seen.scheduled & ~present & (lead > 0)
        starting = closed & (seen.hours_to_start <= lead)
        cap = _site_cap(hvac, heat_season=heat_season, cool_season=cool_season)
        if cap is not None:
            waiting = ~seen.scheduled & ~present & (seen.hours_to_start <= longest)
            starting = starts_under_cap(
                Waiting(
                    lead_h=np.where(waiting, lead, 0.0),
                    hours_to_start=np.where(waiting, seen.hours_to_start, np.inf),
                    demand_kw=np.fmax(_demand_kw(memory, zones, cap), seen.power),
                    running=memory.was_starting,
                ),
                base_kw=float(np.sum(np.where(waiting, 0.0, seen.power))),
                cap_kw=cap,
            )
        level[starting & warming] = Level.PREHEAT.value
        level[starting & ~warming] = Level.PRECOOL.value

    if hvac.optimum_stop.enabled and not math.isnan(outdoor):
        left = seen.hours_to_end
        drifted = outdoor + (temperature - outdoor) * np.exp(
            -memory.loss_rate * np.minimum(left, 1e3)
        )
        stays_warm = ~heats | (drifted >= hvac.comfort_band.low + STOP_MARGIN_K)
        stays_cool = ~cools | (drifted <= hvac.comfort_band.high - STOP_MARGIN_K)
        stopping = seen.scheduled & (left <= hvac.optimum_stop.max_early / 3_600)
        level[stopping & stays_warm & stays_cool] = Level.STOP_EARLY.value

    heating_setpoint, cooling_setpoint = _setpoints(hvac, level)
    rotation = memory.rotation
    if hvac.power_caps:
        shed = _shed(
            hvac,
            zones,
            seen,
            memory,
            heats=heats,
            cools=cools,
            heating_setpoint=heating_setpoint,
            cooling_setpoint=cooling_setpoint,
            present=present,
        )
        if shed.any():
            level[shed] = Level.SHED.value
            heating_setpoint = np.where(shed, hvac.setback.heating, heating_setpoint)
            cooling_setpoint = np.where(shed, hvac.setback.cooling, cooling_setpoint)
            rotation += 1
    cooling_cap = hvac.site_power_cap.cooling
    if cooling_cap is not None and cool_season:
        shed = _shed_coolest(
            hvac,
            zones,
            seen,
            memory,
            cools=cools,
            cooling_setpoint=cooling_setpoint,
            already=level == Level.SHED.value,
            cap_kw=cooling_cap,
        )
        level[shed] = Level.SHED.value
        heating_setpoint = np.where(shed, hvac.setback.heating, heating_setpoint)
        cooling_setpoint = np.where(shed, hvac.setback.cooling, cooling_setpoint)

    suspended = window_for >= hvac.window_open_after
    level[suspended] = Level.WINDOW.value
    modes = tuple(
        HvacMode.OFF if off else _mode(heat, cool)
        for off, heat, cool in zip(suspended, heats, cools, strict=True)
    )
    supply = _supply(hvac, outdoor, level, heats)
    summer = cool_season and not heat_season
    ventilates = (
        hvac.night_ventilation.enabled
        & summer
        & zones.can_ventilate
        & ~seen.scheduled
        & ~present
        & ~suspended
    )
    decision = Decision(
        mode=modes,
        heating_setpoint=heating_setpoint,
        cooling_setpoint=cooling_setpoint,
        supply_temperature=supply,
        level=tuple(Level(value) for value in level),
        ventilate_to=_ventilate_to(hvac, seen, memory, ventilates, outdoor_or_mean),
        shade=hvac.shading.enabled & summer & zones.can_shade,
    )
    memory = replace(
        memory,
        last_temperature=temperature.copy(),
        last_heating=seen.heating_active.copy(),
        last_cooling=seen.cooling_active.copy(),
        last_heating_setpoint=heating_setpoint,
        last_cooling_setpoint=cooling_setpoint,
        empty_for_s=empty_for,
        window_for_s=window_for,
        was_scheduled=seen.scheduled.copy(),
        was_empty=empty,
        window_was_open=seen.window_open.copy(),
        was_starting=np.isin(level, [Level.PREHEAT.value, Level.PRECOOL.value]),
        vents_were_open=seen.vents_open.copy(),
        last_time=now_s,
        outdoor_mean=outdoor_mean,
        rotation=rotation,
    )
    return memory, decision


def hours_to_reach(
    start: FloatArray, target: float, outdoor: float, drive: FloatArray, loss_rate: FloatArray
) -> FloatArray:
    """Hours for dT/dt = drive - loss_rate (T - outdoor) to take T from ``start`` to ``target``.

    drive [K/h]: the heating rate, or minus the cooling rate; inf when the zone would level off
    before reaching the target.
    """
    settle = outdoor + drive / loss_rate
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (start - settle) / (target - settle)
        hours = np.where(ratio > 1.0, np.log(ratio) / loss_rate, np.inf)
    reached = np.where(drive > 0, start >= target, start <= target)
    result: FloatArray = np.where(reached, 0.0, hours)
    return result


def learn_from_history(memory: Memory, history: Sequence[Observation], hvac: Hvac) -> Memory:
    """``memory`` having learnt the zones' rates from past readings, oldest first.

    The same learning as :func:`decide` does on line, without deciding: what a restarted
    service knows from the zones' stored history. Heating counts as flat out more than 1.5 K
    below the comfort setpoint (the setpoints then in force are not in the readings).
    """
    comfort = np.full(memory.loss_rate.shape, hvac.comfort.heating)
    for seen in history:
        elapsed = (
            seen.now.timestamp() - memory.last_time if not math.isnan(memory.last_time) else 0.0
        )
        memory = _learn(replace(memory, last_heating_setpoint=comfort), seen, elapsed)
        memory = replace(
            memory,
            last_temperature=seen.temperature.copy(),  # NaN across a gap: no rate over it
            last_heating=seen.heating_active.copy(),
            last_cooling=seen.cooling_active.copy(),
            vents_were_open=seen.vents_open.copy(),
            last_time=seen.now.timestamp(),
            outdoor_mean=running_mean(memory.outdoor_mean, seen.outdoor_temperature, elapsed),
        )
    return memory


def _learn(memory: Memory, seen: Observation, elapsed: float) -> Memory:
    """Update the zones' rates from the change since the last observation."""
    outdoor = seen.outdoor_temperature
    if not 0 < elapsed <= 1_800 or math.isnan(outdoor):
        return memory
    previous = memory.last_temperature
    rate = (seen.temperature - previous) / (elapsed / 3_600)  # [K/h]
    gap = (seen.temperature + previous) / 2 - outdoor
    # Open windows, the zone's own night ventilation included, are no part of its model.
    steady = ~seen.window_open & ~seen.vents_open & ~memory.vents_were_open & np.isfinite(rate)
    heating = memory.last_heating & seen.heating_active & ~seen.cooling_active
    cooling = memory.last_cooling & seen.cooling_active & ~seen.heating_active
    idle = ~memory.last_heating & ~seen.heating_active & ~memory.last_cooling & ~seen.cooling_active

    drifting = steady & idle & (seen.occupancy <= 0) & (gap > 3.0) & (seen.sun_elevation < 0)
    loss = np.where(drifting, np.clip(-rate / np.where(gap > 0, gap, 1.0), 0.005, 1.0), np.nan)
    loss_rate = _blend(memory.loss_rate, loss)
    full_heat = steady & heating & (previous < memory.last_heating_setpoint - 1.5)
    heat = np.where(full_heat, np.clip(rate + loss_rate * gap, 0.1, 20.0), np.nan)
    full_cool = steady & cooling
    cool = np.where(full_cool, np.clip(-rate - loss_rate * gap, 0.1, 20.0), np.nan)
    flat_out = (full_heat | full_cool) & (seen.power > 0)
    demand = np.where(flat_out, seen.power, np.nan)
    # The most a zone drew lately: from a cold start, with warm water, it draws more.
    demand_kw = np.where(
        np.isnan(memory.demand_kw), demand, np.fmax(demand, _blend(memory.demand_kw, demand))
    )
    return replace(
        memory,
        loss_rate=loss_rate,
        heat_rate=_blend(memory.heat_rate, heat),
        cool_rate=_blend(memory.cool_rate, cool),
        demand_kw=np.where(np.isnan(demand_kw), memory.demand_kw, demand_kw),
    )


def _blend(current: FloatArray, observed: FloatArray) -> FloatArray:
    """Move ``current`` towards ``observed`` where there is an observation (not NaN)."""
    blended: FloatArray = np.where(
        np.isnan(observed), current, current + LEARNING_RATE * (observed - current)
    )
    return blended


def running_mean(mean: float, value: float, elapsed: float) -> float:
    """The outdoor running mean [C] ``elapsed`` [s] after ``mean``, having seen ``value``."""
    if math.isnan(value):
        return mean
    if math.isnan(mean):
        return value
    weight = 1.0 - math.exp(-elapsed / OUTDOOR_MEAN_S)
    return mean + weight * (value - mean)


def season_of(hvac: Hvac, outdoor_mean: float) -> tuple[bool, bool]:
    """Whether it is the heating season, and the cooling season, by the outdoor running mean
    [C]; both while it is unknown (NaN)."""
    if math.isnan(outdoor_mean):
        return True, True
    return outdoor_mean < hvac.seasons.heating_below, outdoor_mean > hvac.seasons.cooling_above


def weather_compensated_supply(hvac: Hvac, outdoor: float) -> float:
    """Heating water for ``outdoor`` [C] on the strategy's heating curve [C]; NaN where the
    curve is off or the outdoor temperature unknown (the boiler's own curve then)."""
    curve = hvac.weather_compensation
    if not curve.enabled or math.isnan(outdoor):
        return math.nan
    return float(
        np.interp(
            outdoor,
            [curve.design_outdoor, curve.mild_outdoor],
            [curve.design_supply, curve.mild_supply],
        )
    )


def _setpoints(hvac: Hvac, level: npt.NDArray[np.object_]) -> tuple[FloatArray, FloatArray]:
    heating = np.full(level.shape, hvac.setback.heating)
    cooling = np.full(level.shape, hvac.setback.cooling)
    for levels, points in (
        ((Level.COMFORT, Level.PRESENCE, Level.PREHEAT, Level.PRECOOL), hvac.comfort),
        ((Level.STANDBY,), hvac.standby),
    ):
        chosen = np.isin(level, [item.value for item in levels])
        heating[chosen] = points.heating
        cooling[chosen] = points.cooling
    return heating, cooling


def _mode(heats: bool, cools: bool) -> HvacMode:
    if heats and cools:
        return HvacMode.AUTO
    if heats:
        return HvacMode.HEAT
    return HvacMode.COOL if cools else HvacMode.OFF


def _supply(
    hvac: Hvac, outdoor: float, level: npt.NDArray[np.object_], heats: BoolArray
) -> FloatArray:
    """Weather-compensated heating water, warmer while pre-heating; NaN where not set."""
    base = weather_compensated_supply(hvac, outdoor)
    if math.isnan(base):
        return np.full(level.shape, math.nan)
    boost = np.where(level == Level.PREHEAT.value, hvac.weather_compensation.boost_k, 0.0)
    supply: FloatArray = np.where(heats, np.clip(base + boost, 25.0, 85.0), math.nan)
    return supply


def _ventilate_to(
    hvac: Hvac, seen: Observation, memory: Memory, ventilates: BoolArray, outdoor: float
) -> FloatArray:
    """How far down each zone is ventilated [C]; NaN: not at all.

    ``night_ventilation.down_to`` (at least the band's low edge), but no lower than the
    zone can be and, drifting by its
    learnt loss rate towards the outdoor temperature of now, still be
    :data:`STOP_MARGIN_K` inside the comfort band :data:`VENT_FLOOR_AFTER_OPENING_H` after
    opening: a small room ventilated on a cool morning would open cold, and nothing heats it
    in summer. The floor is rounded up to half a degree, so that a zone's command changes a
    few times a night rather than with every tenth of a degree outdoors.
    """
    floor_at = hvac.comfort_band.low + STOP_MARGIN_K
    hours = np.minimum(seen.hours_to_start + VENT_FLOOR_AFTER_OPENING_H, 48.0)
    floor = outdoor + (floor_at - outdoor) * np.exp(memory.loss_rate * hours)
    down_to = max(hvac.night_ventilation.down_to, hvac.comfort_band.low)
    target = np.maximum(down_to, np.ceil(floor * 2.0) / 2.0)
    ventilate_to: FloatArray = np.where(ventilates & (target <= 35.0), target, math.nan)
    return ventilate_to


def _site_cap(hvac: Hvac, *, heat_season: bool, cool_season: bool) -> float | None:
    """The site power cap in force: the season's; the lower where both seasons are on."""
    caps = [
        cap
        for cap, season in (
            (hvac.site_power_cap.heating, heat_season),
            (hvac.site_power_cap.cooling, cool_season),
        )
        if season and cap is not None
    ]
    return min(caps) if caps else None


def _shed_coolest(
    hvac: Hvac,
    zones: Zones,
    seen: Observation,
    memory: Memory,
    *,
    cools: BoolArray,
    cooling_setpoint: FloatArray,
    already: BoolArray,
    cap_kw: float,
) -> BoolArray:
    """Zones calling for cold to set back so the site stays under ``cap_kw`` [kW]: the
    coolest first (the most room below the comfort band's top), for one decision at a time.
    Only a zone that stops calling once set back is shed; what the zones not calling draw
    now counts against the cap."""
    temperature = seen.temperature
    calling = cools & (temperature > cooling_setpoint) & ~already
    still_calling = cools & (temperature > hvac.setback.cooling)
    demand = _demand_kw(memory, zones, cap_kw)
    total = float(np.sum(np.where(calling, demand, seen.power)))
    shed = np.zeros(zones.size, dtype=np.bool_)
    for zone in np.flatnonzero(calling)[np.argsort(temperature[calling], kind="stable")]:
        if total <= cap_kw:
            break
        if still_calling[zone]:
            continue
        shed[zone] = True
        total -= float(demand[zone])
    return shed


def _demand_kw(memory: Memory, zones: Zones, cap_kw: float) -> FloatArray:
    """What each zone draws while its plant runs [kW]: as learnt, else the mean of the zones
    learnt, else an equal share of the cap."""
    known = np.isfinite(memory.demand_kw)
    fallback = float(np.mean(memory.demand_kw[known])) if known.any() else cap_kw / zones.size
    demand: FloatArray = np.where(known, memory.demand_kw, fallback)
    return demand


def _shed(
    hvac: Hvac,
    zones: Zones,
    seen: Observation,
    memory: Memory,
    *,
    heats: BoolArray,
    cools: BoolArray,
    heating_setpoint: FloatArray,
    cooling_setpoint: FloatArray,
    present: BoolArray,
) -> BoolArray:
    """Zones to set back so each capped building stays under its cap, taking turns.

    A zone calls for its plant when below its heating setpoint or above its cooling one; its
    demand is what it was seen to draw while running (the building's mean where never seen).
    Only a zone that would stop calling once set back can be shed (one already colder than the
    setback keeps its frost-safe heating). Empty zones are set back first; among equals the
    turn rotates with every decision.
    """
    temperature = seen.temperature
    calling = (heats & (temperature < heating_setpoint)) | (
        cools & (temperature > cooling_setpoint)
    )
    still_calling = (heats & (temperature < hvac.setback.heating)) | (
        cools & (temperature > hvac.setback.cooling)
    )
    shed = np.zeros(zones.size, dtype=np.bool_)
    for number, building in enumerate(zones.buildings):
        cap = hvac.power_caps.get(building)
        members = np.flatnonzero((zones.building == number) & calling)
        if cap is None or members.size == 0:
            continue
        known = memory.demand_kw[zones.building == number]
        fallback = float(np.nanmean(known)) if np.isfinite(known).any() else cap / 2
        demand = np.where(np.isnan(memory.demand_kw[members]), fallback, memory.demand_kw[members])
        total = float(demand.sum())
        turn = (np.arange(members.size) + memory.rotation) % members.size
        order = np.lexsort((turn, present[members]))  # empty zones first, then by turn
        for position in order:
            if total <= cap:
                break
            if still_calling[members[position]]:
                continue
            shed[members[position]] = True
            total -= demand[position]
    return shed
