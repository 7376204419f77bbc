"""The streaming evaluator: readings, states and clock ticks in; rules firing and clearing out.

Pure: it holds, per device, what :mod:`rules.context` remembers, per (rule, device) the
:class:`rules.core.ConditionState`, and per device its :class:`rules.offline.Presence`; it
does no I/O. The service (:mod:`rules.service`) feeds it from MQTT and saves what changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

from alerts.lifecycle import Scope
from protocol.catalogue import CATALOGUE
from protocol.localtime import local_days
from protocol.topics import DeviceClass
from rules.context import (
    DeviceMemory,
    DevicePlace,
    Floats,
    light_place,
    peer_harvest,
    peer_median,
    recent_days,
)
from rules.core import Change, ConditionState, Phase, step
from rules.model import Rule, RuleSet
from rules.names import PEER_MAX_AGE_INTERVALS, PEER_METRICS
from rules.night_forecast import ForecastMemory
from rules.offline import Cause, Gone, Presence
from rules.radiator import RadiatorMemory
from rules.zone_model import Neighbour, ZoneModel


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """A device as the rules engine sees it."""

    place: DevicePlace
    scope: Scope
    name: str = ""
    place_name: str = ""
    """The street or building, for people."""
    peer_group: str | None = None
    """Devices with the same peer group are compared with each other (``peer_*`` names):
    zones of one building with the same heating and cooling equipment."""


CONTEXT_KEY = "@context"
"""The rule id under which a device's context memory is saved (not a valid rule id)."""


class EventKind(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class RuleEvent:
    kind: EventKind
    rule: Rule
    device_id: str
    at: datetime
    started_at: datetime
    cause: str | None = None


def _moment(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)


def applies(rule: Rule, device: FleetDevice) -> bool:
    """Whether ``rule`` watches ``device``: same class, and within its scope."""
    if rule.device_class is not device.place.device_class:
        return False
    scope = rule.scope
    if scope.everything:
        return True
    place = device.scope
    return (
        place.device_id in scope.devices
        or (place.street_group is not None and place.street_group in scope.street_groups)
        or (place.building is not None and place.building in scope.buildings)
        or (place.cabinet is not None and place.cabinet in scope.cabinets)
    )


@dataclass
class Evaluator:
    rules: RuleSet
    fleet: Mapping[str, FleetDevice]
    memories: dict[str, DeviceMemory] = field(default_factory=dict)
    conditions: dict[tuple[str, str], ConditionState] = field(default_factory=dict)
    presences: dict[tuple[str, str], Presence] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    """(rule id, device id) whose state changed since :meth:`take_dirty`."""

    def __post_init__(self) -> None:
        self._by_class = {
            device_class: self.rules.for_class(device_class) for device_class in DeviceClass
        }
        self._peers = peer_groups(self.fleet)
        self._building_zones = building_zones(self.fleet)

    def rules_for(self, device: FleetDevice) -> list[Rule]:
        return [r for r in self._by_class[device.place.device_class] if applies(r, device)]

    def reading(
        self, device_id: str, taken: datetime, values: Mapping[str, float], now: datetime
    ) -> list[RuleEvent]:
        """One sample of a device: what fired or cleared. Unknown devices are ignored."""
        device = self.fleet.get(device_id)
        if device is None:
            return []
        memory = self.memories.get(device_id)
        if memory is None:
            memory = self.memories[device_id] = DeviceMemory(device.place)
        unix_s = taken.timestamp()
        if memory.last_unix_s is not None and unix_s <= memory.last_unix_s:
            return []  # a duplicate or an older reading: already evaluated
        env = memory.derive(unix_s, values)
        self._add_peers(device, unix_s, env)
        if device.place.device_class is DeviceClass.BUILDING:
            self._zone_model(device, memory, unix_s, env)
        events: list[RuleEvent] = []
        for rule in self.rules_for(device):
            key = (rule.id, device_id)
            if rule.missing is not None:
                presence = self._presence(rule, device)
                ended = presence.reading(now.timestamp(), values)
                self.dirty.add(key)
                events += self._gone_events(rule, device_id, ended)
                continue
            state = self.conditions.setdefault(key, ConditionState())
            pending_since = state.since_s
            state, change = step(rule, state, unix_s, env)
            self.dirty.add(key)
            if change is Change.FIRED:
                started = pending_since if pending_since is not None else unix_s
                events.append(RuleEvent(EventKind.FIRED, rule, device_id, taken, _moment(started)))
            elif change is Change.RESOLVED:
                events.append(RuleEvent(EventKind.RESOLVED, rule, device_id, taken, taken))
        return events

    def _add_peers(self, device: FleetDevice, unix_s: float, env: dict[str, Floats]) -> None:
        device_class = device.place.device_class
        others = [
            self.memories[peer]
            for peer in self._peers.get(device.place.device_id, ())
            if peer in self.memories and self.memories[peer].last_unix_s is not None
        ]
        if device_class is DeviceClass.STREETLIGHT:
            day = local_days(np.array([unix_s]), device.place.timezone)
            wanted = recent_days(int(day[0]))
            own = self.memories[device.place.device_id].day_ratios(wanted)
            street = [memory.day_ratios(wanted) for memory in others]
            env.update(peer_harvest(day, own, street))
        metrics = PEER_METRICS.get(device_class, ())
        max_age = PEER_MAX_AGE_INTERVALS * CATALOGUE[device_class].expected_interval_s
        for metric in metrics:
            peers = [
                (
                    np.array([memory.last_unix_s], dtype=np.float64),
                    np.array([memory.last_values.get(metric, np.nan)], dtype=np.float64),
                )
                for memory in others
            ]
            env[f"peer_{metric}"] = peer_median(np.array([unix_s]), peers, max_age)

    def _zone_model(
        self, device: FleetDevice, memory: DeviceMemory, unix_s: float, env: dict[str, Floats]
    ) -> None:
        """``expected_air_temperature``: the zone's reading less its learnt balance's offset,
        its neighbours being the other zones of its building (:mod:`rules.zone_model`)."""
        if memory.zone_model is None:
            memory.zone_model = ZoneModel()
        others = self._building_zones.get(device.place.device_id, ())

        def neighbours(hour: int) -> list[Neighbour]:
            return [
                kept
                for other in others
                if (zone := self.memories.get(other)) is not None
                and zone.zone_model is not None
                and (kept := zone.zone_model.kept.get(hour)) is not None
            ]

        offset = memory.zone_model.reading(unix_s, env, neighbours if others else None)
        env["expected_air_temperature"] = env["air_temperature"] - offset

    def state(
        self,
        device_id: str,
        online: bool,
        reason: str | None,
        boot_id: str | None,
        *,
        now: datetime,
        sent_s: float | None = None,
    ) -> list[RuleEvent]:
        """A birth, will or goodbye of a device (``sent_s``: its own time stamp)."""
        device = self.fleet.get(device_id)
        if device is None:
            return []
        events: list[RuleEvent] = []
        for rule in self.rules_for(device):
            if rule.missing is None:
                continue
            presence = self._presence(rule, device)
            changed = presence.state(now.timestamp(), online, reason, boot_id, sent_s)
            self.dirty.add((rule.id, device_id))
            events += self._gone_events(rule, device_id, changed)
        return events

    def tick(self, now: datetime) -> list[RuleEvent]:
        """The clock moved on: devices silent too long are missing."""
        events: list[RuleEvent] = []
        for (rule_id, device_id), presence in self.presences.items():
            started = presence.tick(now.timestamp())
            if started is not None:
                self.dirty.add((rule_id, device_id))
                events += self._gone_events(self.rules.by_id(rule_id), device_id, started)
        return events

    def firing(self, rule_id: str, device_id: str) -> bool:
        """Whether the rule's condition is firing on the device (or the device is missing)."""
        state = self.conditions.get((rule_id, device_id))
        if state is not None:
            return state.phase is Phase.FIRING
        presence = self.presences.get((rule_id, device_id))
        return presence is not None and presence.gone is not None

    def missing_devices(self) -> set[str]:
        return {device for (_, device), p in self.presences.items() if p.gone is not None}

    def _presence(self, rule: Rule, device: FleetDevice) -> Presence:
        key = (rule.id, device.place.device_id)
        presence = self.presences.get(key)
        if presence is None:
            presence = self.presences[key] = Presence(
                device.place.device_class, rule.silence_s, rule.grace_s
            )
        return presence

    @staticmethod
    def _gone_events(rule: Rule, device_id: str, gone: Gone | None) -> list[RuleEvent]:
        if gone is None:
            return []
        since = _moment(gone.since_s)
        if gone.back_s is None:
            known = _moment(gone.known_s) if gone.known_s is not None else since
            return [RuleEvent(EventKind.FIRED, rule, device_id, known, since, gone.cause.value)]
        cause = gone.cause.value if gone.cause is not Cause.UNKNOWN else None
        return [RuleEvent(EventKind.RESOLVED, rule, device_id, _moment(gone.back_s), since, cause)]

    # ------------------------------------------------------------------------- saving

    def take_dirty(self) -> list[tuple[str, str, dict[str, object]]]:
        """The states changed since the last call, as (rule id, device id, JSON state)."""
        saved = []
        for rule_id, device_id in sorted(self.dirty):
            if (rule_id, device_id) in self.conditions:
                state = self.conditions[rule_id, device_id].to_json()
            else:
                state = _presence_json(self.presences[rule_id, device_id])
            saved.append((rule_id, device_id, state))
        for device_id in sorted({device_id for _, device_id in self.dirty}):
            memory = self.memories.get(device_id)
            if memory is not None:
                saved.append((CONTEXT_KEY, device_id, _memory_json(memory)))
        self.dirty.clear()
        return saved

    def restore(self, saved: Iterable[tuple[tuple[str, str], dict[str, object]]]) -> int:
        """Take back states saved by :meth:`take_dirty` (rules or devices now gone are
        skipped); return how many were restored."""
        restored = 0
        known = {rule.id: rule for rule in self.rules.rules}
        for (rule_id, device_id), state in saved:
            rule, device = known.get(rule_id), self.fleet.get(device_id)
            if rule_id == CONTEXT_KEY and device is not None:
                self.memories[device_id] = _memory_from_json(state, device.place)
                continue
            if rule is None or device is None:
                continue
            if (rule.missing is None) != ("phase" in state):
                continue  # the rule changed kind (condition <-> missing data): start afresh
            if rule.missing is None:
                self.conditions[rule_id, device_id] = ConditionState.from_json(state)
            else:
                self.presences[rule_id, device_id] = _presence_from_json(
                    state, device.place.device_class, rule.silence_s, rule.grace_s
                )
            restored += 1
        return restored


def peer_groups(fleet: Mapping[str, FleetDevice]) -> dict[str, tuple[str, ...]]:
    """Each device's peers: the other devices of its class and peer group."""
    buildings: dict[tuple[DeviceClass, str], list[str]] = {}
    for device_id, device in fleet.items():
        if device.peer_group:
            key = (device.place.device_class, device.peer_group)
            buildings.setdefault(key, []).append(device_id)
    return {
        device_id: tuple(sorted(other for other in members if other != device_id))
        for members in buildings.values()
        for device_id in members
    }


def building_zones(fleet: Mapping[str, FleetDevice]) -> dict[str, tuple[str, ...]]:
    """Each zone's neighbours: the other zones of its building, whatever their equipment."""
    buildings: dict[str, list[str]] = {}
    for device_id, device in fleet.items():
        if device.place.device_class is DeviceClass.BUILDING and device.scope.building:
            buildings.setdefault(device.scope.building, []).append(device_id)
    return {
        device_id: tuple(sorted(other for other in members if other != device_id))
        for members in buildings.values()
        for device_id in members
    }


def _presence_json(presence: Presence) -> dict[str, object]:
    gone = presence.gone
    return {
        "last_heard_s": presence.last_heard_s,
        "last_values": dict(presence.last_values or {}),
        "boot_id": presence.boot_id,
        "by_will": presence.by_will,
        "last_state": list(presence.last_state) if presence.last_state else None,
        "gone": None if gone is None else {"since_s": gone.since_s, "cause": gone.cause.value},
        "will": None if presence.will is None else [presence.will[0], presence.will[1].value],
    }


def _presence_from_json(
    state: Mapping[str, object], device_class: DeviceClass, silence_s: float, grace_s: float
) -> Presence:
    gone = state.get("gone")
    will = state.get("will")
    last_heard = state.get("last_heard_s")
    values = state.get("last_values")
    boot = state.get("boot_id")
    return Presence(
        device_class,
        silence_s,
        grace_s,
        last_heard_s=float(str(last_heard)) if last_heard is not None else None,
        last_values={str(k): float(str(v)) for k, v in values.items()}
        if isinstance(values, dict)
        else None,
        boot_id=str(boot) if boot is not None else None,
        gone=Gone(float(str(gone["since_s"])), Cause(str(gone["cause"])))
        if isinstance(gone, dict)
        else None,
        by_will=bool(state.get("by_will", False)),
        last_state=_last_state(state.get("last_state")),
        will=(float(str(will[0])), Cause(str(will[1])))
        if isinstance(will, list) and len(will) == 2
        else None,
    )


def _last_state(value: object) -> tuple[bool, float | None, str | None, str | None] | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    online, sent, reason, boot = value
    return (
        bool(online),
        None if sent is None else float(str(sent)),
        None if reason is None else str(reason),
        None if boot is None else str(boot),
    )


def _memory_json(memory: DeviceMemory) -> dict[str, object]:
    radiator = memory.radiator
    return {
        **({} if memory.zone_model is None else {"zone_model": memory.zone_model.to_json()}),
        **({} if memory.forecast is None else {"forecast": memory.forecast.to_json()}),
        **(
            {}
            if radiator is None or math.isnan(radiator.learnt)
            else {"radiator": [radiator.learnt, radiator.readings]}
        ),
        "last_unix_s": memory.last_unix_s,
        "last_values": {k: (None if np.isnan(v) else v) for k, v in memory.last_values.items()},
        "day_sums": {
            str(day): {name: list(pair) for name, pair in sums.items()}
            for day, sums in memory.day_sums.items()
        },
    }


def _memory_from_json(data: Mapping[str, object], place: DevicePlace) -> DeviceMemory:
    last = data.get("last_unix_s")
    values = data.get("last_values")
    sums = data.get("day_sums")
    zone = data.get("zone_model")
    radiator = data.get("radiator")
    forecast = data.get("forecast")
    return DeviceMemory(
        place,
        last_unix_s=float(str(last)) if last is not None else None,
        last_values={
            str(k): float("nan") if v is None else float(str(v)) for k, v in values.items()
        }
        if isinstance(values, dict)
        else {},
        day_sums={
            int(day): {
                str(name): (float(pair[0]), float(pair[1]))
                for name, pair in by_name.items()
                if isinstance(pair, list)
            }
            for day, by_name in sums.items()
            if isinstance(by_name, dict)
        }
        if isinstance(sums, dict)
        else {},
        zone_model=ZoneModel.from_json(zone) if isinstance(zone, dict) else None,
        radiator=RadiatorMemory.from_json(radiator),
        forecast=ForecastMemory.from_json(light_place(place), forecast)
        if forecast is not None and place.device_class is DeviceClass.STREETLIGHT
        else None,
    )
