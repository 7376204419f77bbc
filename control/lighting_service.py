"""The lighting control service: every evening, each streetlight's night planned from its
battery and sent as a ``set_schedule`` command (docs/lighting.md, "Live: sending each night's
schedule").

The pure part comes first: what the service remembers of each light (:class:`LightState`,
:func:`observe`: its latest charge and the panel energy of its recent days) and the planning
step (:func:`plan_step`: latest states, commands and time in, the commands to send out),
which calls :func:`control.lighting.plan_night` as the December replay does. The service
(:class:`LightingControlService`) does the I/O on the skeleton it shares with the HVAC control
service (:class:`control.service.CommandingService`): telemetry and acknowledgements in
over MQTT, commands out, the ``commands`` table and the control alerts.

When: once a night per light, from the moment the setting sun passes ``plan_above_gate_deg``
(7 deg) above the lamps' switching elevation (the policy's gate, -1 deg by default: so at
+6 deg, 35 to 45 minutes before the lamps come on in Sefrou) until dawn. The day's harvest is
then all in, and a light that does not answer at once has time for its resends before dusk.
A light first heard later in the night gets the remainder of the night; a light never heard
from (or one that never reported its charge) gets nothing. A new lighting policy replans the
night at once; lights whose schedule it changes get a new command.

Which lights: the registry's streetlights of the site, followed while the service runs
(:mod:`control.service`). A light added is planned as soon as it reports its charge; one
decommissioned gets nothing more; one moved to another street group, or given another
model, is planned again at once, by the profile of its new group's place kind
(:func:`lights_of`).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from control.commanding import CommandPolicy, DevicePace, Reason, Sent, due, issue
from control.lighting import NightPlan, PlanReason, night_window, plan_night
from control.lighting_policy import LightingPolicy
from control.service import CommandingService, Counters, ServiceConfig, ServiceKind
from control.strategy import Strategy
from protocol.catalogue import CATALOGUE
from protocol.commands import SetSchedule
from protocol.sites import Device, SiteHeader
from protocol.solar import usable_energy_wh
from protocol.sun import elevation_at
from protocol.topics import DeviceClass
from runtime.mqtt_session import utc_now

log = logging.getLogger("smartcity.lighting")

ACTION: Final = "set_schedule"
PLAN_ABOVE_GATE_DEG: Final = 7.0
"""The night is planned when the setting sun passes this far above the lamps' switching
elevation [deg]: at +6 deg with the default -1 deg."""
HARVEST_DAYS: Final = 3
"""The expected harvest is the mean of this many last complete local days [d]."""
COMPLETE_DAY_S: Final = 20 * 3_600.0
"""A day whose readings cover this much of it counts as complete [s]."""
READING_INTERVAL_S: Final = float(CATALOGUE[DeviceClass.STREETLIGHT].expected_interval_s)
MAX_GAP_S: Final = CATALOGUE[DeviceClass.STREETLIGHT].longest_counted_gap_s
"""A reading counts for the time since the previous one, at most this [s] (the first one for
a reading interval)."""
REASON_LABELS: Final = {
    Reason.FIRST: "tonight's plan",
    Reason.CHANGED: "replanned",
    Reason.AGAIN: "again",
    Reason.REFRESH: "again",
}


# ----------------------------------------------------------------------------- lights


@dataclass(frozen=True, slots=True)
class Light:
    """What planning needs to know of one streetlight (from the registry)."""

    device_id: str
    place_kind: str
    lamp_w: float
    """Lamp power at 100 % [W]."""
    battery_wh: float
    """Battery capacity [Wh]."""


def lights_of(devices: Iterable[Device]) -> tuple[list[Light], list[str]]:
    """The streetlights among ``devices`` (as the registry holds them: their model's ratings
    in ``metadata``, :func:`storage.registry.as_registered`) with a lamp power and a battery
    capacity, and the ids of those without (they cannot be planned).

    A light is dimmed by the place kind of its street group: the kind most of the group's
    lights have (``metadata.place_kind``, which a site file's run sets), so a light moved to
    another group follows that group's profile; its own kind only without a group (or a
    tie), ``road`` without either."""
    lights = [device for device in devices if device.device_class is DeviceClass.STREETLIGHT]
    kinds = group_kinds(lights)
    rated: list[Light] = []
    unrated: list[str] = []
    for device in lights:
        ratings = device.metadata.get("ratings") or {}
        lamp_w, battery_wh = ratings.get("lamp_w"), ratings.get("battery_wh")
        if not lamp_w or not battery_wh:
            unrated.append(device.id)
            continue
        own = device.metadata.get("place_kind")
        kind = kinds.get(device.street_group or "") or own or "road"
        rated.append(Light(device.id, str(kind), float(lamp_w), float(battery_wh)))
    return rated, unrated


def group_kinds(lights: Iterable[Device]) -> dict[str, str]:
    """The place kind of each street group: the one most of its lights have; none for a
    group whose lights have none, or are split evenly between two."""
    counted: dict[str, Counter[str]] = {}
    for light in lights:
        kind = light.metadata.get("place_kind")
        if light.street_group and kind:
            counted.setdefault(light.street_group, Counter())[str(kind)] += 1
    kinds = {}
    for group, counts in counted.items():
        ranked = counts.most_common(2)
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            kinds[group] = ranked[0][0]
    return kinds


@dataclass(frozen=True, slots=True)
class LightState:
    """What the service knows of one light: its latest reading and recent harvest."""

    taken: datetime
    """When its latest reading was taken (the device's time)."""
    battery_soc: float
    """Its latest state of charge [%]; NaN until it reports one."""
    harvest_wh: Mapping[int, float] = field(default_factory=dict)
    """Panel energy by local day (``date.toordinal``) [Wh]."""
    covered_s: Mapping[int, float] = field(default_factory=dict)
    """How much of each local day its panel readings cover [s]."""


def local_day(moment: datetime, zone: ZoneInfo) -> int:
    return moment.astimezone(zone).date().toordinal()


def observe(
    state: LightState | None, taken: datetime, values: Mapping[str, float], zone: ZoneInfo
) -> LightState:
    """The state after one reading; an older reading (a spool replaying) changes nothing.

    The reading's ``pv_power`` counts for the time since the previous reading (at most
    :data:`MAX_GAP_S`; the reading interval for the first) in its local day's harvest."""
    if state is not None and taken <= state.taken:
        return state
    soc = values.get("battery_soc", math.nan if state is None else state.battery_soc)
    harvest = dict(state.harvest_wh) if state is not None else {}
    covered = dict(state.covered_s) if state is not None else {}
    pv = values.get("pv_power")
    if pv is not None and math.isfinite(pv):
        day = local_day(taken, zone)
        gap = (
            READING_INTERVAL_S
            if state is None
            else min((taken - state.taken).total_seconds(), MAX_GAP_S)
        )
        harvest[day] = harvest.get(day, 0.0) + max(pv, 0.0) * gap / 3_600.0
        covered[day] = covered.get(day, 0.0) + gap
        for old in [old for old in harvest if old < day - HARVEST_DAYS]:
            del harvest[old]
            covered.pop(old, None)
    return LightState(taken, float(soc), harvest, covered)


def with_past_day(state: LightState, day: int, harvest_wh: float, covered_s: float) -> LightState:
    """The state with a day's harvest read from storage, unless it knows the day better."""
    if covered_s <= state.covered_s.get(day, 0.0):
        return state
    return replace(
        state,
        harvest_wh={**state.harvest_wh, day: harvest_wh},
        covered_s={**state.covered_s, day: covered_s},
    )


def complete_days(state: LightState, today: int) -> list[int]:
    """The complete days among the :data:`HARVEST_DAYS` before ``today``."""
    return [
        day
        for day, covered in state.covered_s.items()
        if today - HARVEST_DAYS <= day < today and covered >= COMPLETE_DAY_S
    ]


def expected_harvest_wh(state: LightState, today: int) -> float:
    """The harvest a day is expected to bring [Wh]: the mean of the last complete days, as
    the December replay takes it; without one, today's so far (at dusk that is the day's,
    if the service watched it since sunrise; less, which plans dimmer, if not)."""
    days = complete_days(state, today)
    if days:
        return float(np.mean([state.harvest_wh[day] for day in days]))
    return state.harvest_wh.get(today, 0.0)


# ----------------------------------------------------------------------------- planning


def night_of(moment: datetime, zone: ZoneInfo) -> date:
    """The night ``moment`` belongs to: the local date of its evening (noon to noon)."""
    return (moment.astimezone(zone) - timedelta(hours=12)).date()


@dataclass(frozen=True, slots=True)
class PlanningWindow:
    """When the commands of one night are sent."""

    night: date
    opens: datetime
    """The setting sun passes the planning elevation."""
    closes: datetime
    """Dawn, by the policy's dawn elevation."""


def planning_window(
    policy: LightingPolicy, night: date, site: SiteHeader, above_gate_deg: float
) -> PlanningWindow:
    """The planning window of ``night``; ValueError where the sun does not set."""
    return _window(
        night,
        site.timezone,
        site.latitude,
        site.longitude,
        policy.gate_elevation_deg + above_gate_deg,
        policy.dusk_elevation_deg,
        policy.dawn_elevation_deg,
    )


@lru_cache(maxsize=64)
def _window(  # noqa: PLR0917 - a cache key
    night: date,
    timezone: str,
    latitude: float,
    longitude: float,
    plan_elevation: float,
    dusk_elevation: float,
    dawn_elevation: float,
) -> PlanningWindow:
    noon = datetime(night.year, night.month, night.day, 12, tzinfo=ZoneInfo(timezone))
    unix = noon.timestamp() + 60.0 * np.arange(14 * 60, dtype=np.float64)
    elevation = elevation_at(unix, latitude, longitude)
    setting = np.diff(elevation, prepend=elevation[0]) < 0
    below = np.flatnonzero(setting & (elevation < plan_elevation))
    if len(below) == 0:
        raise ValueError(f"the sun does not set below {plan_elevation} deg on {night}")
    opens = (noon + timedelta(minutes=int(below[0]))).astimezone(UTC)
    thresholds = LightingPolicy(
        dusk_elevation_deg=dusk_elevation, dawn_elevation_deg=dawn_elevation
    )
    dawn = night_window(thresholds, opens, latitude, longitude).dawn
    return PlanningWindow(night, opens, dawn)


@dataclass(frozen=True, slots=True)
class Planned:
    """A light's schedule for one night, and why."""

    night: date
    schedule: SetSchedule
    why: str


@dataclass(frozen=True, slots=True)
class Plans:
    """The plans of the night under way, by light."""

    by_light: Mapping[str, Planned] = field(default_factory=dict)
    replanned: date | None = None
    """The night a new policy replanned: a command sent before it no longer stands."""
    afresh: frozenset[str] = frozenset()
    """Lights moved to another place or given another model, not planned since: a command
    sent them before no longer stands."""

    def after_policy_change(self, now: datetime, zone: ZoneInfo) -> Plans:
        """Plans to be made again, from the lights' latest state."""
        return Plans({}, night_of(now, zone), self.afresh)

    def after_lights_changed(self, changed: Iterable[str]) -> Plans:
        """The plans of ``changed`` lights to be made again, from their latest state."""
        again = self.afresh | frozenset(changed)
        kept = {key: value for key, value in self.by_light.items() if key not in again}
        return Plans(kept, self.replanned, again)


@dataclass(frozen=True, slots=True)
class Order:
    """A command to send: ``schedule`` to ``device_id``."""

    device_id: str
    schedule: SetSchedule
    why: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class PlanSettings:
    policy: LightingPolicy
    site: SiteHeader
    commands: CommandPolicy = field(default_factory=CommandPolicy)
    above_gate_deg: float = PLAN_ABOVE_GATE_DEG


def plan_step(
    lights: Sequence[Light],
    states: Mapping[str, LightState],
    latest: Mapping[str, Sent],
    plans: Plans,
    now: datetime,
    *,
    settings: PlanSettings,
) -> tuple[Plans, list[Order]]:
    """The commands to send at ``now``, and the night's plans.

    latest: each light's latest command. Within the night's planning window, every light
    with a known charge is planned once (:func:`plan_night`, from its latest state); a light
    whose latest command is tonight's keeps it (after a restart) unless a new policy
    replanned the night or the light moved since (``plans.afresh``). A light gets a command
    when it has none for tonight, when its plan changed, or when tonight's was not applied
    (:func:`control.commanding.due`: an expired one at once, a refused or unanswered one
    ``again_after_s`` later).
    """
    zone = ZoneInfo(settings.site.timezone)
    night = night_of(now, zone)
    window = planning_window(settings.policy, night, settings.site, settings.above_gate_deg)
    if not window.opens <= now < window.closes:
        return plans, []
    by_light = {key: value for key, value in plans.by_light.items() if value.night == night}
    adopt = plans.replanned != night
    to_plan: list[Light] = []
    for light in lights:
        state = states.get(light.device_id)
        if state is None or not math.isfinite(state.battery_soc) or light.device_id in by_light:
            continue
        current = latest.get(light.device_id)
        if (
            adopt
            and light.device_id not in plans.afresh
            and current is not None
            and night_of(current.issued_at, zone) == night
            and isinstance(current.params, SetSchedule)
        ):
            by_light[light.device_id] = Planned(night, current.params, current.why)
        else:
            to_plan.append(light)
    if to_plan:
        by_light.update(plan_lights(to_plan, states, now, night, settings))
    orders = []
    for light in lights:
        planned = by_light.get(light.device_id)
        if planned is None:
            continue
        current = latest.get(light.device_id)
        if current is not None and night_of(current.issued_at, zone) != night:
            current = None  # an earlier night's
        reason = due(current, planned.schedule, now, settings.commands)
        if reason is not None:
            why = f"{planned.why}; {REASON_LABELS[reason]}"
            orders.append(Order(light.device_id, planned.schedule, why, reason))
    return Plans(by_light, plans.replanned, plans.afresh - by_light.keys()), orders


def plan_lights(
    lights: Sequence[Light],
    states: Mapping[str, LightState],
    now: datetime,
    night: date,
    settings: PlanSettings,
) -> dict[str, Planned]:
    """Tonight's schedule of each light (its remainder after dusk), by place kind."""
    policy, site = settings.policy, settings.site
    zone = ZoneInfo(site.timezone)
    window = night_window(policy, now, site.latitude, site.longitude)
    today = local_day(now, zone)
    planned: dict[str, Planned] = {}
    for kind in dict.fromkeys(light.place_kind for light in lights):
        group = [light for light in lights if light.place_kind == kind]
        soc = np.array([states[light.device_id].battery_soc for light in group])
        harvest = np.array([expected_harvest_wh(states[light.device_id], today) for light in group])
        plan = plan_night(
            policy,
            kind,
            night=window,
            zone=zone,
            usable_energy_wh=usable_energy_wh(soc, [light.battery_wh for light in group]),
            lamp_w=[light.lamp_w for light in group],
            expected_harvest_wh_per_day=harvest,
        )
        for index, light in enumerate(group):
            why = explain(plan, index, float(soc[index]), float(harvest[index]), policy)
            planned[light.device_id] = Planned(night, plan.schedule(index), why)
    return planned


def explain(
    plan: NightPlan, index: int, soc: float, harvest_wh: float, policy: LightingPolicy
) -> str:
    """Why light ``index`` got its levels, for the ``reason`` of its command, e.g.
    ``dimmed to 62 %: battery 48 %, harvest 410 Wh/day, 4.0 days of reserve``."""
    reason = plan.reasons[index]
    if reason is PlanReason.FULL:
        head = "full profile"
    elif reason is PlanReason.DIMMED:
        head = f"dimmed to {math.floor(100 * plan.scale[index])} %"  # never "to 100 %"
    elif reason is PlanReason.MINIMUM:
        head = f"minimum {policy.minimum_level:g} %"
    else:
        head = (
            f"short: {plan.levels[index].max():.0f} %, below the {policy.minimum_level:g} % minimum"
        )
    per_night = plan.minimum_energy_wh[index] - policy.cloudy_harvest_share * harvest_wh
    left = plan.available_energy_wh[index] - plan.planned_energy_wh[index]
    reserve = (
        f"{max(left, 0.0) / per_night:.1f} days of reserve"
        if per_night > 0
        else "an overcast day's harvest covers a minimum night"
    )
    return f"{head}: battery {soc:.0f} %, harvest {harvest_wh:.0f} Wh/day, {reserve}"


# ----------------------------------------------------------------------------- service


@dataclass(frozen=True)
class LightingConfig(ServiceConfig):
    """``inventory``: the site whose streetlights are planned (those with a rated model);
    ``strategy``: its ``lighting`` mapping is the policy (docs/lighting.md); with
    ``follow_active_strategy``, the activated strategy is taken up at each look."""

    client_id: str = "smartcity-lighting-control"
    plan_above_gate_deg: float = PLAN_ABOVE_GATE_DEG
    check_every_s: float = 60.0
    """Seconds between two looks at who needs a command (of device time with ``event_time``)."""
    batch_size: int = 250
    """Commands sent (and recorded, in one statement) per turn of the loop."""

    def __post_init__(self) -> None:
        if not 0 < self.plan_above_gate_deg <= 30:
            raise ValueError("plan_above_gate_deg must lie between 0 and 30 degrees")
        if self.check_every_s <= 0 or self.batch_size < 1:
            raise ValueError("check_every_s must be positive and batch_size at least 1")


@dataclass(slots=True)
class LightingCounters(Counters):
    lights_planned: int = 0


class LightingControlService(CommandingService[LightingConfig, LightingCounters]):
    kind = ServiceKind(
        "lighting-control", DeviceClass.STREETLIGHT, log, "lighting control", "lights"
    )

    def __init__(self, config: LightingConfig, *, clock: Callable[[], datetime] = utc_now) -> None:
        pace = DevicePace(granularity_s=READING_INTERVAL_S)
        super().__init__(config, LightingCounters(), clock=clock, pace=pace)
        self.lights: list[Light] = []
        """The streetlights planned: the registry's with a lamp power and a battery."""
        self._unrated: frozenset[str] = frozenset()
        self.policy = LightingPolicy.from_mapping(config.strategy.lighting)
        self.states: dict[str, LightState] = {}
        """What the service knows of each light it heard from."""
        self.plans = Plans()
        self._next_look: datetime | None = None
        self._outbox: deque[Order] = deque()
        self._seeded_night: date | None = None
        self._seeded: set[str] = set()
        """Lights whose stored harvest was read for ``_seeded_night``."""
        self._open()
        self.zone = ZoneInfo(self.site.timezone)

    def _take_up(self, before: Mapping[str, Device]) -> None:
        """The lights as the registry now has them: one gone is forgotten (nothing more is
        sent to it); one whose place kind, lamp or battery changed is planned again at the
        next look, which comes at once."""
        lights, unrated = lights_of(self.devices.values())
        newly_unrated = sorted(set(unrated) - self._unrated)
        if newly_unrated:
            log.warning(
                "streetlights without a rated model are not planned",
                extra={"count": len(newly_unrated), "first": newly_unrated[0]},
            )
        self._unrated = frozenset(unrated)
        was = {light.device_id: light for light in self.lights}
        self.lights = lights
        planned = {light.device_id for light in lights}
        changed = {
            light.device_id
            for light in lights
            if light.device_id in was and was[light.device_id] != light
        }
        for device_id in before.keys() - self.devices.keys():
            self.states.pop(device_id, None)
        if changed:
            self.plans = self.plans.after_lights_changed(changed)
        if self._outbox:
            kept = [o for o in self._outbox if o.device_id in planned - changed]
            self._outbox = deque(kept)
        self._next_look = None

    def settings(self) -> PlanSettings:
        return PlanSettings(
            self.policy, self.site, self.config.commands, self.config.plan_above_gate_deg
        )

    # ------------------------------------------------------------------------- running

    def use_strategy(self, strategy: Strategy) -> None:
        """Plan by ``strategy``'s lighting policy from the next turn of the loop on; a policy
        that differs replans the night under way (thread-safe: the loop applies it)."""
        LightingPolicy.from_mapping(strategy.lighting)  # a bad one is refused here
        super().use_strategy(strategy)

    def _act(self, now: datetime, scale: float) -> None:
        pending = self._handed_over()
        if pending is not None:
            self._apply_strategy(pending, now)
        if not self._outbox and (self._next_look is None or now >= self._next_look):
            self._look(now)
            self._next_look = now + timedelta(seconds=self.config.check_every_s)
        if self._outbox:
            self._send(now, scale)

    def _apply_strategy(self, strategy: Strategy, now: datetime) -> None:
        self.config = replace(self.config, strategy=strategy)
        policy = LightingPolicy.from_mapping(strategy.lighting)
        log.info("strategy in force", extra={"strategy": strategy.name})
        if policy == self.policy:
            return
        self.policy = policy
        self.plans = self.plans.after_policy_change(now, self.zone)
        self._outbox.clear()
        self._next_look = None

    # ------------------------------------------------------------------------- in

    def _reading(self, device_id: str, taken: datetime, values: dict[str, float]) -> None:
        state = self.states.get(device_id)
        if state is None:
            self._next_look = None  # a light first heard in the window is planned at once
        self.states[device_id] = observe(state, taken, values, self.zone)

    # ------------------------------------------------------------------------- out

    def _take_up_active_strategy(self, now: datetime) -> None:
        """The strategy activated in the database since the last look, if any."""
        strategy = self._newly_activated()
        if strategy is not None:
            self._apply_strategy(strategy, now)

    def _look(self, now: datetime) -> None:
        """Plan who needs it and queue the commands to send."""
        if self.config.follow_active_strategy:
            self._take_up_active_strategy(now)
        settings = self.settings()
        try:
            window = planning_window(
                settings.policy, night_of(now, self.zone), self.site, settings.above_gate_deg
            )
            if window.opens <= now < window.closes:
                self._harvest_from_storage(window.night)
            before = self.plans.by_light
            self.plans, orders = plan_step(
                self.lights, self.states, self.book.latest, self.plans, now, settings=settings
            )
        except ValueError as error:  # no night at this latitude and date
            log.warning("no plan: %s", error)
            return
        self.counters.lights_planned += sum(
            1
            for device_id, planned in self.plans.by_light.items()
            if before.get(device_id) != planned
        )
        self._outbox.extend(orders)
        if orders:
            log.info("schedules to send", extra={"lights": len(orders), "night": str(window.night)})

    def _send(self, now: datetime, scale: float) -> None:
        """The next batch of the outbox: recorded in one statement, then published."""
        batch: list[Sent] = []
        while self._outbox and len(batch) < self.config.batch_size:
            order = self._outbox.popleft()
            batch.append(
                issue(
                    f"light-{uuid.uuid4().hex[:20]}",
                    order.device_id,
                    order.schedule,
                    now,
                    self.config.commands,
                    scale=scale,
                    action=ACTION,
                    why=order.why,
                )
            )
        self._record_and_publish(batch)

    # ------------------------------------------------------------------------- storage

    def _harvest_from_storage(self, night: date) -> None:
        """The stored panel energy of the days before ``night``, read once a night for each
        light heard from without a complete day in memory (the first nights after a start)."""
        if self._seeded_night != night:
            self._seeded_night, self._seeded = night, set()
        today = night.toordinal()
        lacking = [
            device_id
            for device_id, state in self.states.items()
            if device_id not in self._seeded and not complete_days(state, today)
        ]
        if not lacking:
            return
        last = datetime(night.year, night.month, night.day, tzinfo=self.zone)
        first = last - timedelta(days=HARVEST_DAYS)
        try:
            found = self._db.execute(
                _STORED_HARVEST, (self.site.timezone, lacking, first, last)
            ).fetchall()
        except psycopg.Error as error:  # no rollup table: the service runs without storage
            log.warning("stored harvest not read", exc_info=error)
            found = []
        self._seeded.update(lacking)
        for device_id, day, harvest_wh, hours in found:
            self.states[device_id] = with_past_day(
                self.states[device_id], day.toordinal(), float(harvest_wh), float(hours) * 3_600.0
            )


_STORED_HARVEST: Final = """
    SELECT device_id, (bucket AT TIME ZONE %s)::date AS day,
           sum(pv_power_sum / pv_power_count) AS harvest_wh, count(*) AS hours
    FROM telemetry_streetlight_hourly
    WHERE device_id = ANY(%s) AND bucket >= %s AND bucket < %s AND pv_power_count > 0
    GROUP BY 1, 2
"""
"""Panel energy by light and local day from the hourly rollup: each hour's mean power [W]
times an hour."""
