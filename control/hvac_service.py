"""The HVAC control service: the zones' readings in, ``set_hvac`` commands out, and what came
of them in the database (docs/energy-control.md).

Every ``period_s`` it builds an :class:`control.hvac.Observation` of every zone (the latest
readings, the outdoor temperature the plants measure, the opening hours of the next 24
hours, the sun), asks the decision core
(:func:`control.hvac.decide`) for each zone's setting, and sends a command to each zone that
needs one (:func:`control.commanding.due`). Commands carry an id and an expiry; each is recorded
in ``commands`` with what came of it: the agent's acknowledgement, or ``unanswered`` after
:func:`control.commanding.retry` gave up. Commands not applied, and zones whose plant does not do
what their setting says (:func:`control.commanding.follow`), raise alerts through the alert
store and lifecycle the rules engine uses.

Time: the wall clock, or (``event_time``, for accelerated simulations) the devices' latest
sample time; the network's budgets (expiry, acknowledgement timeout) are then stretched by how
fast device time runs (:class:`control.commanding.DevicePace`).

What the service learns of each zone (:class:`control.hvac.Memory`) lives in the process; the
commands it sent live in the database, so a restart carries on with them.

The zones are the registry's building devices of the site, followed while the service runs
(:mod:`control.service`): a zone added is decided for and commanded from the next decision
once heard from; one decommissioned is no longer commanded; one moved to another
building (or given another building kind, or heating and cooling) follows its new opening
hours. What was learnt of the zones that stay is kept.

The service's skeleton (MQTT, the loop, acknowledgements, retries, alerts, the ``commands``
table) is :class:`control.service.CommandingService`, which
:mod:`control.lighting_service` shares; what is HVAC's is here: the decisions, the following of
the zones, and what is learnt of them.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from control.commanding import DevicePace, Following, FollowPolicy, ZoneReading, due, follow, issue
from control.hvac import Level, Memory, Observation, controlled_zones, decide, learn_from_history
from control.opening import calendar_for, open_grid, outlook
from control.service import CommandingService, Counters, ServiceConfig, ServiceKind
from protocol.calendar import MoroccanCalendar
from protocol.commands import SetHvac
from protocol.sites import Device
from protocol.sun import solar_elevation
from protocol.topics import DeviceClass
from runtime.mqtt_session import utc_now

log = logging.getLogger("smartcity.control")

ACTION: Final = "set_hvac"
HORIZON_S: Final = 86_400
"""How far ahead opening hours are looked at (optimum start and stop) [s]."""
MIN_GRID_S: Final = 60
OUTDOOR_FRESH_S: Final = 1_800
"""Outdoor temperatures older than this (or two periods) are not used [s]."""
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ControlConfig(ServiceConfig):
    """``site``: the site whose building zones are controlled (one zone per building device
    of the registry); with ``follow_active_strategy``, the activated strategy is taken up
    before each decision."""

    client_id: str = "smartcity-hvac-control"
    period_s: float = 300.0
    """Seconds between decisions (of device time with ``event_time``)."""
    following: FollowPolicy = field(default_factory=FollowPolicy)


@dataclass(slots=True)
class ControlCounters(Counters):
    decisions: int = 0


@dataclass
class _Latest:
    """The latest readings of every zone, by zone index."""

    count: int
    temperature: FloatArray = field(init=False)
    occupancy: FloatArray = field(init=False)
    window_open: BoolArray = field(init=False)
    vents_open: BoolArray = field(init=False)
    vents_were_open: BoolArray = field(init=False)
    """A reading since the last decision said the motorised windows were open: a rate over
    that time is no part of the zone's model, even if they shut again before it."""
    heating_active: BoolArray = field(init=False)
    cooling_active: BoolArray = field(init=False)
    power: FloatArray = field(init=False)
    outdoor: FloatArray = field(init=False)
    """The outdoor temperature each zone's plant measures [C]; NaN when it reports none."""
    taken: list[datetime | None] = field(init=False)
    outdoor_taken: list[datetime | None] = field(init=False)
    """When each zone last reported an outdoor temperature (a sensor may fall silent alone)."""

    def __post_init__(self) -> None:
        self.temperature = np.full(self.count, math.nan)
        self.occupancy = np.zeros(self.count)
        self.window_open = np.zeros(self.count, dtype=np.bool_)
        self.vents_open = np.zeros(self.count, dtype=np.bool_)
        self.vents_were_open = np.zeros(self.count, dtype=np.bool_)
        self.heating_active = np.zeros(self.count, dtype=np.bool_)
        self.cooling_active = np.zeros(self.count, dtype=np.bool_)
        self.power = np.zeros(self.count)
        self.outdoor = np.full(self.count, math.nan)
        self.taken = [None] * self.count
        self.outdoor_taken = [None] * self.count

    def update(self, index: int, values: dict[str, float], taken: datetime) -> None:
        self.taken[index] = taken
        if "outdoor_temperature" in values:
            self.outdoor_taken[index] = taken
        for name, column in (
            ("air_temperature", self.temperature),
            ("occupancy", self.occupancy),
            ("power", self.power),
            ("outdoor_temperature", self.outdoor),
        ):
            if name in values:
                column[index] = values[name]
        for name, flags in (  # flags arrive as 1.0 and 0.0
            ("window_open", self.window_open),
            ("vents_open", self.vents_open),
            ("heating_active", self.heating_active),
            ("cooling_active", self.cooling_active),
        ):
            if name in values:
                flags[index] = values[name] >= 0.5
        self.vents_were_open[index] |= self.vents_open[index]

    def reindexed(self, ids: Sequence[str], new_ids: Sequence[str]) -> _Latest:
        """The latest readings of the zones ``new_ids``: those of a zone of ``ids`` kept, a
        new zone's unknown."""
        fresh = _Latest(len(new_ids))
        old_index = {zone: index for index, zone in enumerate(ids)}
        for new, zone in enumerate(new_ids):
            old = old_index.get(zone)
            if old is None:
                continue
            for column in fields(self):
                if column.name != "count":
                    getattr(fresh, column.name)[new] = getattr(self, column.name)[old]
        return fresh


class HvacControlService(CommandingService[ControlConfig, ControlCounters]):
    kind = ServiceKind("hvac-control", DeviceClass.BUILDING, log, "hvac control", "zones")

    def __init__(self, config: ControlConfig, *, clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(config, ControlCounters(), clock=clock, pace=DevicePace())
        controlled = controlled_zones(())
        self.places = controlled.places
        self.zones = controlled.zones
        self._index: dict[str, int] = {}
        self.memory = Memory.initial(0)
        self.levels: dict[str, Level] = {}
        """The level of each zone at the latest decision."""
        self._latest = _Latest(0)
        self._next_decision: datetime | None = None
        self._calendar: tuple[tuple[int, int, int], MoroccanCalendar] | None = None
        self._following: dict[str, Following] = {}
        self._open()
        self._learn_from_history()

    def _take_up(self, before: Mapping[str, Device]) -> None:
        """The zones as the registry now has them, in a new order: what was known and learnt
        of the zones that stay is carried over. A new zone, or one whose building, kind or
        plant changed, is decided for as it now stands at the next decision (not at once: a
        decision sooner than ``period_s`` would teach the rates from too short a step)."""
        controlled = controlled_zones(self.devices.values())
        ids = self.zones.ids
        self.places = controlled.places
        self.zones = controlled.zones
        self._index = {device_id: i for i, device_id in enumerate(self.zones.ids)}
        self.memory = self.memory.reindexed(ids, self.zones.ids)
        self._latest = self._latest.reindexed(ids, self.zones.ids)
        for gone in before.keys() - self.devices.keys():
            self.levels.pop(gone, None)
            self._following.pop(gone, None)

    # ------------------------------------------------------------------------- running

    def _step(self) -> None:
        strategy = self._handed_over()  # by use_strategy: decide by it from the next decision
        if strategy is not None:
            self.config = replace(self.config, strategy=strategy)
            self._next_decision = None
            log.info("strategy in force", extra={"strategy": strategy.name})
        super()._step()

    def _act(self, now: datetime, scale: float) -> None:
        heard = any(taken is not None for taken in self._latest.taken)
        if heard and (self._next_decision is None or now >= self._next_decision):
            self._decide(now, scale)
            self._next_decision = now + timedelta(seconds=self.config.period_s)

    # ------------------------------------------------------------------------- in

    def _reading(self, device_id: str, taken: datetime, values: dict[str, float]) -> None:
        index = self._index[device_id]
        latest = self._latest
        before = latest.taken[index]
        if before is not None and taken < before:
            return  # an older reading (replayed from a spool): the newer one stands
        latest.update(index, values, taken)
        applied = self.book.applied.get(device_id)
        in_force = (
            applied.params
            if applied is not None
            and applied.in_force(taken)
            and isinstance(applied.params, SetHvac)
            else None
        )
        reading = ZoneReading(
            device_id,
            taken,
            float(latest.temperature[index]),
            bool(latest.heating_active[index]),
            bool(latest.cooling_active[index]),
        )
        state, finding = follow(
            self._following.get(device_id, Following()), in_force, reading, self.config.following
        )
        self._following[device_id] = state
        if finding is not None:
            self._alert(finding)

    # ------------------------------------------------------------------------- out

    def take_up_active_strategy(self) -> bool:
        """Switch to the strategy activated in the database since the last look; True if it
        did (what was learnt is kept)."""
        strategy = self._newly_activated()
        if strategy is None:
            return False
        self.config = replace(self.config, strategy=strategy)
        log.info("activated strategy taken up", extra={"strategy": strategy.name})
        return True

    def _decide(self, now: datetime, scale: float) -> None:
        if self.config.follow_active_strategy:
            self.take_up_active_strategy()
        hvac = self.config.strategy.hvac
        latest = self._latest
        scheduled, to_start, to_end = self._outlook(now)
        seen = Observation(
            now=now,
            temperature=latest.temperature.copy(),
            occupancy=latest.occupancy.copy(),
            window_open=latest.window_open.copy(),
            vents_open=latest.vents_open | latest.vents_were_open,
            heating_active=latest.heating_active.copy(),
            cooling_active=latest.cooling_active.copy(),
            power=latest.power.copy(),
            scheduled=scheduled,
            hours_to_start=to_start,
            hours_to_end=to_end,
            outdoor_temperature=self._outdoor(now),
            sun_elevation=solar_elevation(now, self.site.latitude, self.site.longitude),
        )
        self.memory, decision = decide(hvac, self.zones, seen, self.memory)
        latest.vents_were_open[:] = latest.vents_open  # counted afresh until the next one
        self.counters.decisions += 1
        for index, device_id in enumerate(self.zones.ids):
            level = decision.level[index]
            self.levels[device_id] = level
            if latest.taken[index] is None:
                continue  # never heard from: nothing to judge it by, nobody known to answer
            setting = decision.setting(index, hvac)
            current = self.book.latest.get(device_id)
            reason = due(current, setting, now, self.config.commands)
            if reason is None:
                continue
            self._command(device_id, setting, now, scale=scale, why=f"{level}: {reason}")

    def _command(
        self,
        device_id: str,
        setting: SetHvac,
        now: datetime,
        *,
        scale: float,
        why: str,
    ) -> None:
        command_id = f"hvac-{uuid.uuid4().hex[:20]}"
        sent = issue(
            command_id,
            device_id,
            setting,
            now,
            self.config.commands,
            scale=scale,
            action=ACTION,
            why=why,
        )
        self._record_and_publish([sent])
        log.debug("command sent", extra={"device": device_id, "command": command_id, "why": why})

    def _outdoor(self, now: datetime) -> float:
        """The outdoor temperature: the median of what the zones' plants measured lately;
        NaN when none did (the decision core then does without it)."""
        recent = now - timedelta(seconds=max(OUTDOOR_FRESH_S, 2 * self.config.period_s))
        values = [
            float(value)
            for value, taken in zip(self._latest.outdoor, self._latest.outdoor_taken, strict=True)
            if taken is not None and taken >= recent and not math.isnan(value)
        ]
        return float(np.median(values)) if values else math.nan

    def _outlook(self, now: datetime) -> tuple[BoolArray, FloatArray, FloatArray]:
        """Whether each zone is open now, and hours until it opens and until it closes."""
        step_s = max(MIN_GRID_S, int(self.config.period_s))
        times = int(now.timestamp()) + step_s * np.arange(HORIZON_S // step_s + 1, dtype=np.int64)
        strategy = self.config.strategy
        key = (now.year, (now + timedelta(seconds=HORIZON_S)).year, id(strategy.calendar))
        if self._calendar is None or self._calendar[0] != key:
            self._calendar = (key, calendar_for(times, strategy.calendar))
        grid = open_grid(
            self.config.strategy, self.places, times, self._calendar[1], self.site.timezone
        )
        to_start, to_end = outlook(grid, step_s)
        return grid[:, 0].copy(), to_start[:, 0].copy(), to_end[:, 0].copy()

    # ------------------------------------------------------------------------- restart

    def _learn_from_history(self) -> None:
        """Learn the zones' warm-up, cool-down and loss rates from their stored readings of
        the last :data:`HISTORY_DAYS` days, in :data:`HISTORY_STEP_S` steps, so a restarted
        service starts its optimum start and stop from what it knew."""
        rows = self._db.execute(_HISTORY, (HISTORY_STEP_S, HISTORY_DAYS, list(self.zones.ids)))
        by_step: dict[datetime, list[tuple[Any, ...]]] = {}
        for row in rows.fetchall():
            by_step.setdefault(row[0], []).append(row)
        history = [self._past_observation(at, found) for at, found in sorted(by_step.items())]
        if history:
            self.memory = learn_from_history(self.memory, history, self.config.strategy.hvac)
            log.info("rates learnt from history", extra={"steps": len(history)})

    def _past_observation(self, at: datetime, rows: list[tuple[Any, ...]]) -> Observation:
        count = self.zones.size
        temperature = np.full(count, math.nan)
        heating = np.zeros(count, dtype=np.bool_)
        cooling = np.zeros(count, dtype=np.bool_)
        window = np.zeros(count, dtype=np.bool_)
        vents = np.zeros(count, dtype=np.bool_)
        occupancy = np.zeros(count)
        power = np.zeros(count)
        outdoor: list[float] = []
        for _, device_id, air, heats, cools, opened, vented, people, drawn, outside in rows:
            index = self._index[device_id]
            temperature[index] = math.nan if air is None else air
            heating[index] = bool(heats)
            cooling[index] = bool(cools)
            window[index] = bool(opened)
            vents[index] = bool(vented)
            occupancy[index] = people or 0.0
            power[index] = drawn or 0.0
            if outside is not None:
                outdoor.append(outside)
        return Observation(
            now=at,
            temperature=temperature,
            occupancy=occupancy,
            window_open=window,
            vents_open=vents,
            heating_active=heating,
            cooling_active=cooling,
            power=power,
            scheduled=np.zeros(count, dtype=np.bool_),
            hours_to_start=np.full(count, math.inf),
            hours_to_end=np.zeros(count),
            outdoor_temperature=float(np.median(outdoor)) if outdoor else math.nan,
            sun_elevation=solar_elevation(at, self.site.latitude, self.site.longitude),
        )


HISTORY_DAYS: Final = 7
HISTORY_STEP_S: Final = 300
_HISTORY: Final = """
    SELECT date_bin(make_interval(secs => %s), ts, TIMESTAMPTZ '2000-01-01') AS step, device_id,
           avg(air_temperature),
           coalesce(min(heating_active), 0) > 0.5,
           coalesce(min(cooling_active), 0) > 0.5,
           coalesce(max(window_open), 0) > 0.5,
           coalesce(max(vents_open), 0) > 0.5,
           max(occupancy), avg(power), avg(outdoor_temperature)
    FROM telemetry_building
    WHERE ts > now() - make_interval(days => %s) AND device_id = ANY(%s)
    GROUP BY 1, 2
"""
"""The zones' readings in steps: heating or cooling all through a step counts as running."""
