"""The rules engine service: MQTT in, alerts in the database, notifications and MQTT out.

It subscribes to the devices' telemetry and state with its own persistent MQTT session,
independently of ingest, and acknowledges a message only once what it caused is committed:
the alerts it raised or resolved, their transitions, the notifications to send, and the rule
states (pending timers, hysteresis, presence). Killed at any moment, it restarts from that
saved state and the broker redelivers what was not acknowledged; readings it already applied
are recognised by their time and skipped, so nothing is lost and nothing counted twice.

A rule file is reloaded on :meth:`RulesService.reload` (SIGHUP from the CLI); a file that does
not check keeps the running rule set in place. The engine also follows the rule set activated in
the database (``active_rule_set``, :mod:`rules.rule_set_store`): it looks every
``rule_set_check_s`` and takes up a newly activated version through the same check and swap.
With no rule set active, the file given to it stays in force.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Final

import psycopg
from paho.mqtt.subscribeoptions import SubscribeOptions

from alerts import lifecycle, store
from alerts.catalogue import CONTROL_KINDS, GROUP_OFFLINE, ROOT_CAUSE_KINDS
from alerts.dispatch import Dispatcher
from alerts.errors import AlertError
from alerts.lifecycle import Alert, Outcome, Policy, Scope, Status
from alerts.routing import NotificationConfig
from alerts.wording import AlertNotice
from protocol.decoding import (
    DEFAULT_WINDOW,
    AcceptanceWindow,
    Rejected,
    State,
    Telemetry,
    decode,
)
from protocol.mqtt_account import MqttAccount
from protocol.payloads import DeviceStatus, Severity
from protocol.topics import Channel, DeviceClass, subscription
from rules.announce import DeliveryRecorder, alert_message, notice_for, site_of
from rules.context import DevicePlace
from rules.errors import RuleError
from rules.evaluator import Evaluator, EventKind, FleetDevice, RuleEvent
from rules.model import RuleFileError, RuleSet, load_rules
from rules.names import peer_group
from rules.partition import Partition
from rules.rule_set_store import RULE_SETS, read_rule_set, source_of
from runtime.mqtt_session import Inbox, MqttSession, Received, SessionConfig
from storage.set_aside import SetAside, describe, record_set_aside
from storage.versions import active_version, stored_version

log = logging.getLogger("smartcity.rules")

_NOTHING: Final = ("", 0)
"""No rule set queued (a name no rule set has)."""
BATCH_MAX: Final = 500
BATCH_ATTEMPTS: Final = 3
BATCH_WAIT_S: Final = 0.05
ELSEWHERE_REFRESH_S: Final = 1.0
"""A partitioned worker reads the devices other workers found missing (for root causes) at
most this often."""


@dataclass(frozen=True)
class RulesConfig:
    database_url: str
    rules_path: Path
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_account: MqttAccount | None = None
    """The service's broker account (``svc.<name>``); anonymous if None."""
    client_id: str = "smartcity-rules"
    notifications: NotificationConfig | None = None
    tick_s: float = 5.0
    policy: Policy = field(default_factory=Policy)
    event_time: bool = False
    """Take the time from the devices' readings (simulations faster than real time)."""
    window: AcceptanceWindow = DEFAULT_WINDOW
    """Readings outside it are not evaluated (ingest refuses them too)."""
    group_wait_s: float = 30.0
    """How long a missing device's alert waits before it is notified, in case its street,
    cabinet or the site link turns out to be the cause (then it is muted instead)."""
    rule_set_check_s: float = 30.0
    """How often the rule set activated in the database is looked up."""
    partition: Partition = field(default_factory=Partition)
    """The devices this worker looks after (:mod:`rules.partition`); the default, all."""


RuleSetRef = tuple[str, int]
"""A stored rule set: (name, version)."""


def load_fleet(connection: psycopg.Connection) -> dict[str, FleetDevice]:
    """Every device in service, with its place, ratings and scope."""
    rows = connection.execute(
        """
        SELECT d.device_id, d.device_class, coalesce(d.latitude, s.latitude),
               coalesce(d.longitude, s.longitude), s.timezone, d.name, d.street_group,
               d.cabinet, d.building, d.site_id, d.metadata
        FROM devices d JOIN sites s USING (site_id)
        WHERE d.decommissioned_at IS NULL
        """
    ).fetchall()
    fleet = {}
    for device_id, cls, lat, lon, tz, name, group, cabinet, building, site, stored in rows:
        meta = stored or {}
        ratings = {str(k): float(v) for k, v in meta.get("ratings", {}).items()}
        place = DevicePlace(device_id, DeviceClass(cls), lat, lon, tz, ratings)
        scope = Scope(device_id, group, cabinet, building, site)
        place_name = meta.get("building_name") or group or building or ""
        fleet[device_id] = FleetDevice(
            place, scope, name, str(place_name), peer_group(building, meta)
        )
    return fleet


class RulesService:
    def __init__(
        self,
        config: RulesConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_handed_off: Callable[[AlertNotice, datetime], object] | None = None,
    ) -> None:
        self.config = config
        self._elsewhere: tuple[float, set[str]] = (float("-inf"), set())
        """Devices of other partitions found missing by their workers, and when they were
        read (monotonic clock; partitioned only)."""
        self._wall_clock = clock
        self._event_time: datetime | None = None
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._inbox = Inbox()
        self._arrived = self._inbox.arrived
        self._pending_reload: tuple[RuleSet, RuleSetRef | None] | None = None
        self._lock = threading.Lock()
        self.rules = load_rules(config.rules_path)
        self.rule_set_in_force: RuleSetRef | None = None
        """The stored rule set the running rules came from; None: the rule file."""
        self._rule_set_refused: RuleSetRef | None = None
        """The last active rule set that did not check: not read again until another is."""
        self._recheck_rule_set = threading.Event()
        self._db = psycopg.connect(config.database_url, autocommit=False)
        self.fleet = load_fleet(self._db)
        self._db.commit()
        self.follow_active_rule_set()  # an active rule set is in force from the start
        with self._lock:
            pending, self._pending_reload = self._pending_reload, None
        if pending is not None:
            self.rules, self.rule_set_in_force = pending
        self.evaluator = self._restored_evaluator(self.rules)
        if config.event_time:
            self._event_time = self._latest_reading()
        else:
            self._restart_silence_clocks(self._wall_clock())
        self._root_causes: dict[str, int] = {}
        self._held: dict[int, float] = {}
        """Held alerts (missing devices), by id: when they fired (monotonic clock). After a
        restart none is known: each is released at the first tick."""
        row = self._db.execute("SELECT now() - INTERVAL '1 day'").fetchone()
        self._db.commit()
        self._published_until: datetime = row[0] if row else datetime.now(UTC)
        """Alerts changed after this (database time) are published at the next sweep; at
        start, a day back: a crash may have left a retained message stale."""
        self._to_publish: set[int] = set()
        self.alerts_raised = 0
        self.messages_applied = 0
        self.messages_set_aside = 0
        self.last_tick_at = float("-inf")
        """When the latest periodic check (silence, reminders, held alerts) was committed
        (monotonic clock)."""
        self._last_failure: BaseException = RuntimeError("no failure yet")
        self._dispatcher: Dispatcher | None = None
        self._delivery_db: psycopg.Connection | None = None
        if config.notifications is not None:
            self._delivery_db = psycopg.connect(config.database_url, autocommit=True)
            self._dispatcher = Dispatcher(
                config.notifications,
                DeliveryRecorder(self._delivery_db),
                on_handed_off=on_handed_off,
            )
        self._session = self._make_session()

    # ------------------------------------------------------------------------- time

    def now(self) -> datetime:
        if self.config.event_time and self._event_time is not None:
            return self._event_time
        return self._wall_clock()

    def _latest_reading(self) -> datetime | None:
        """The time of the latest reading applied before a restart: event time goes on."""
        times = [m.last_unix_s for m in self.evaluator.memories.values() if m.last_unix_s]
        return datetime.fromtimestamp(max(times), tz=UTC) if times else None

    def _restart_silence_clocks(self, now: datetime) -> None:
        """Silence is judged from what the engine witnessed: a device heard before a restart
        counts as heard at the restart, or every device would look missing after downtime.
        (Wills sent meanwhile wait in the session and still arrive.)"""
        for presence in self.evaluator.presences.values():
            if presence.gone is None and presence.last_heard_s is not None:
                presence.last_heard_s = max(presence.last_heard_s, now.timestamp())

    # ------------------------------------------------------------------------- rules

    def reload(self, path: Path | None = None) -> str:
        """Check a rule file and swap it in at the next batch; the running set stays on error.

        Without ``path`` while a stored rule set is in force, that rule set is read and
        checked again instead (with the device registry) at the next batch: the database,
        not the file, says which rules run then."""
        if path is None and self.rule_set_in_force is not None:
            self._recheck_rule_set.set()
            self._arrived.set()
            name, version = self.rule_set_in_force
            log.warning(
                "reload: a rule set activated in the database is in force, so it is read again"
                " and the rule file is not (roll the activation back to run the file)",
                extra={"rule_set": source_of(name, version)},
            )
            return f"accepted: {source_of(name, version)} is read again at the next batch"
        source = path or self.config.rules_path
        return self._check_and_queue(partial(load_rules, source), None)

    def _check_and_queue(self, load: Callable[[], RuleSet], origin: RuleSetRef | None) -> str:
        """Check rules (``load`` them) and queue them for the next batch; say what happened."""
        try:
            rules = load()
        except RuleFileError as error:
            log.warning("rule file refused; the running rules stay", extra={"error": str(error)})
            return f"refused: {error}"
        with self._lock:
            self._pending_reload = rules, origin
        return f"accepted: {len(rules.rules)} rules"

    def follow_active_rule_set(self) -> str | None:
        """Look up the rule set activated in the database; unless it is the one in force (or
        queued, or already refused), check it and queue it as :meth:`reload` does (refused: the
        running rules stay). When the activation is gone, the rule file is back in force.
        None when nothing is to change.

        Compared with what runs rather than with the last look, so an activation is never lost:
        a failed read is tried again at the next look, and a rule file queued by SIGHUP over a
        queued rule set is followed by the rule set again."""
        forced = self._recheck_rule_set.is_set()
        self._recheck_rule_set.clear()
        active = active_version(self._db, RULE_SETS)
        current = None if active is None else (active.name, active.version)
        with self._lock:
            queued = self._pending_reload[1] if self._pending_reload is not None else _NOTHING
        if not forced and current in (self.rule_set_in_force, self._rule_set_refused, queued):
            self._db.commit()
            return None
        if current is None:
            self._db.commit()
            log.info("no rule set active: back to the rule file")
            return self._check_and_queue(partial(load_rules, self.config.rules_path), None)
        body, _ = stored_version(self._db, RULE_SETS, *current)
        self._db.commit()
        outcome = self._check_and_queue(partial(read_rule_set, body, source_of(*current)), current)
        self._rule_set_refused = current if outcome.startswith("refused") else None
        log.info("active rule set looked up", extra={"rule_set": source_of(*current)})
        return outcome

    def _restored_evaluator(self, rules: RuleSet) -> Evaluator:
        evaluator = Evaluator(rules, self._owned_fleet())
        saved = store.load_rule_states(self._db)
        self._db.commit()
        restored = evaluator.restore(saved.items())
        extra: dict[str, object] = {"states": restored, "rules": len(rules.rules)}
        if not self.partition.whole:
            extra |= {"partition": str(self.partition), "devices": len(evaluator.fleet)}
        log.info("rule states restored", extra=extra)
        return evaluator

    # ------------------------------------------------------------------------- partitions

    @property
    def partition(self) -> Partition:
        return self.config.partition

    def _owned_fleet(self) -> Mapping[str, FleetDevice]:
        """The devices this worker keeps state for: the whole fleet unless partitioned."""
        if self.partition.whole:
            return self.fleet
        return {
            device_id: device
            for device_id, device in self.fleet.items()
            if self.partition.owns_device(device_id, device.scope.building)
        }

    def owns(self, subject: str) -> bool:
        """Whether this worker looks after the alerts of ``subject``: a device of its
        partition, or a root-cause subject (``street:...``) hashing to it."""
        if self.partition.whole:
            return True
        if subject in self.fleet:
            return subject in self.evaluator.fleet
        return self.partition.owns(subject)

    def _missing_devices(self) -> set[str]:
        """Devices found missing: by this worker, and (partitioned) by the others, from the
        rule states they save with every change, read again at most every second."""
        missing = self.evaluator.missing_devices()
        if self.partition.whole:
            return missing
        read_at, elsewhere = self._elsewhere
        if time.monotonic() - read_at >= ELSEWHERE_REFRESH_S:
            missing_rules = [rule.id for rule in self.rules.rules if rule.missing is not None]
            rows = self._db.execute(
                "SELECT DISTINCT device_id FROM rule_states WHERE rule_id = ANY(%s)"
                " AND jsonb_typeof(state -> 'gone') = 'object'",
                (missing_rules,),
            ).fetchall()
            elsewhere = {device for (device,) in rows if device not in self.evaluator.fleet}
            self._elsewhere = time.monotonic(), elsewhere
        return missing | elsewhere

    def _root_causes_in_force(self) -> Mapping[str, int]:
        """Open root-cause alerts, subject -> id: this worker's, and (partitioned) the other
        workers' too, so that an alert is muted at birth whoever raised its cause."""
        if self.partition.whole:
            return self._root_causes
        rows = self._db.execute(
            "SELECT subject, alert_id FROM alerts WHERE rule_id = %s"
            " AND status IN ('firing', 'acknowledged')",
            (GROUP_OFFLINE,),
        ).fetchall()
        return {**{str(subject): int(alert_id) for subject, alert_id in rows}, **self._root_causes}

    def _swap_rules(self) -> None:
        with self._lock:
            pending, self._pending_reload = self._pending_reload, None
        if pending is None:
            return
        rules, origin = pending
        self._save_states()
        self.rules, self.rule_set_in_force = rules, origin
        self.fleet = load_fleet(self._db)  # devices provisioned since are evaluated too
        self._db.commit()
        self.evaluator = self._restored_evaluator(rules)  # from the states just saved
        self._close_alerts_of_removed_rules()
        log.info("rules reloaded", extra={"rules": len(rules.rules), "source": rules.source})

    def _close_alerts_of_removed_rules(self) -> None:
        kept = [rule.id for rule in self.rules.rules] + [GROUP_OFFLINE, *CONTROL_KINDS]
        now = self.now()
        with self._db.transaction():
            rows = self._db.execute(
                "SELECT alert_id, subject FROM alerts"
                " WHERE status <> 'closed' AND NOT rule_id = ANY(%s)",
                (kept,),
            ).fetchall()
            for alert_id, subject in rows:
                if not self.owns(subject):
                    continue  # another partition's worker closes it
                store.change_alert(
                    self._db,
                    alert_id,
                    lambda a: lifecycle.close(a, now, lifecycle.ENGINE, "rule removed"),
                )
                self._publish_later(alert_id)
        self._db.commit()

    # ------------------------------------------------------------------------- MQTT

    def _make_session(self) -> MqttSession:
        config = self.config
        # Retained states only with a new subscription: a reconnected session has had them.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        return MqttSession(
            SessionConfig(
                config.mqtt_host, config.mqtt_port, config.client_id, config.mqtt_account
            ),
            logger=log,
            subscriptions=[
                (subscription(Channel.TELEMETRY), options),
                (subscription(Channel.STATE), options),
            ],
            on_message=self._inbox.put,
            on_subscribed=self.ready.set,
            clock=self._wall_clock,
        )

    # ------------------------------------------------------------------------- running

    def run(self) -> None:
        self._resend_unsent()
        self._session.start()
        next_tick = time.monotonic()
        next_rule_set_check = next_tick + self.config.rule_set_check_s
        try:
            while not self._stop.is_set():
                self._arrived.wait(min(BATCH_WAIT_S * 4, max(0.0, next_tick - time.monotonic())))
                self._arrived.clear()
                if time.monotonic() >= next_rule_set_check or self._recheck_rule_set.is_set():
                    self._safely(self._follow_rule_set_quietly, "rule set check")
                    next_rule_set_check = time.monotonic() + self.config.rule_set_check_s
                self._swap_rules()
                batch = self._take_batch()
                if batch:
                    self._apply_safely(batch)
                if time.monotonic() >= next_tick:
                    self._safely(self._tick, "tick")
                    next_tick = time.monotonic() + self.config.tick_s
        finally:
            self._session.stop()
            if self._dispatcher is not None:
                self._dispatcher.close(timeout_s=5)
            self._db.close()
            if self._delivery_db is not None:
                self._delivery_db.close()
            log.info("rules engine stopped")

    def stop(self) -> None:
        self._stop.set()
        self._arrived.set()

    def _follow_rule_set_quietly(self) -> None:
        self.follow_active_rule_set()

    def _take_batch(self) -> list[Received]:
        return self._inbox.take(BATCH_MAX)

    def _apply_safely(self, batch: Sequence[Received]) -> None:
        """Apply a batch; after a failure, from the last committed state again; a batch that
        keeps failing is applied message by message, and a message that fails alone is set
        aside (logged and acknowledged) rather than stopping the engine."""
        for _ in range(BATCH_ATTEMPTS):
            if self._safely(lambda: self._apply(batch), "batch"):
                return
        for message in batch:
            if not self._safely(partial(self._apply, [message]), "message"):
                log.error(
                    "message set aside: it fails every time",
                    extra={"topic": message.topic, "bytes": len(message.payload)},
                )
                self._set_aside(message)

    def _set_aside(self, message: Received) -> None:
        """Record a message that fails every time, and acknowledge it: the broker would
        otherwise deliver it again and again, to this engine and to the next."""
        error = self._last_failure
        log.error(
            "message set aside: it fails every time",
            extra={"topic": message.topic, "bytes": len(message.payload), "error": describe(error)},
        )
        self.messages_set_aside += 1
        aside = SetAside(
            "rules", message.topic, message.payload, message.received_at, describe(error)
        )
        try:
            record_set_aside(self._db, aside, self._wall_clock())
        except psycopg.Error:
            log.exception("could not record the message set aside", extra={"topic": message.topic})
            self._back_to_committed_state()
        self._session.acknowledge([message])

    def _safely(self, work: Callable[[], None], what: str) -> bool:
        """Run ``work``; on any error (the database's, a rule's, or a bug met by a message),
        log it, go back to the last committed state (reconnecting if need be) and say it
        failed. Only the engine's start-up errors stop it."""
        try:
            work()
        except Exception as error:
            self._last_failure = error
            expected = isinstance(error, psycopg.Error | RuleError | AlertError)
            log.log(
                logging.WARNING if expected else logging.ERROR,
                "%s failed; back to the last committed state",
                what,
                exc_info=error,
            )
            self._back_to_committed_state()
            return False
        return True

    def _back_to_committed_state(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                if self._db.closed or self._db.broken:
                    self._db = psycopg.connect(self.config.database_url, autocommit=False)
                self._db.rollback()
                self.evaluator = self._restored_evaluator(self.rules)
                if self.config.event_time:
                    self._event_time = self._latest_reading()
            except psycopg.Error as error:
                log.warning("database unreachable; retrying in %.1f s", delay, exc_info=error)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                self._db.close()
                continue
            break
        self._root_causes.clear()  # rebuilt from the open alerts at the next update
        self._to_publish.clear()

    def _apply(self, batch: Sequence[Received]) -> None:
        events: list[RuleEvent] = []
        for message in batch:
            events += self._evaluate(message)
        notices = self._commit(events)
        self._session.acknowledge(batch)
        self.messages_applied += len(batch)
        self._send(notices)

    def _evaluate(self, message: Received) -> list[RuleEvent]:
        if not self.partition.whole and _device_of(message.topic) not in self.evaluator.fleet:
            return []  # another partition's device (or an unknown one): not even decoded
        decoded = decode(message.topic, message.payload, message.received_at, self.config.window)
        if isinstance(decoded, Rejected):
            return []  # ingest records the reason; there is nothing to evaluate
        device_id = decoded.topic.device_id
        if isinstance(decoded, Telemetry):
            events: list[RuleEvent] = []
            for taken, values in sorted(decoded.samples, key=lambda sample: sample[0]):
                if self._event_time is None or taken > self._event_time:
                    self._event_time = taken
                events += self.evaluator.reading(device_id, taken, values, self.now())
            return events
        if isinstance(decoded, State):
            online = decoded.status is DeviceStatus.ONLINE
            return self.evaluator.state(
                device_id,
                online,
                decoded.reason,
                decoded.boot_id,
                now=self.now(),
                sent_s=decoded.ts.timestamp(),
            )
        return []

    def _commit(self, events: Sequence[RuleEvent]) -> list[store.QueuedNotice]:
        notices: list[store.QueuedNotice] = []
        with self._db.transaction():
            # Causes first: the alerts of devices behind a failing street are muted at birth.
            notices += self._update_root_causes()
            for event in events:
                notices += self._record(event)
            store.save_rule_states(self._db, self.evaluator.take_dirty())
        self._db.commit()
        return notices

    def _save_states(self) -> None:
        with self._db.transaction():
            store.save_rule_states(self._db, self.evaluator.take_dirty())
        self._db.commit()

    # ------------------------------------------------------------------------- alerts

    def _current(self, rule_id: str, subject: str) -> int | None:
        row = self._db.execute(
            "SELECT alert_id FROM alerts WHERE rule_id = %s AND subject = %s"
            " AND (status IN ('firing', 'acknowledged')"
            " OR (status = 'resolved' AND repaired_at IS NOT NULL))",
            (rule_id, subject),
        ).fetchone()
        return None if row is None else int(row[0])

    def _record(self, event: RuleEvent) -> list[store.QueuedNotice]:
        rule, subject = event.rule, event.device_id
        current = self._current(rule.id, subject)
        if event.kind is EventKind.FIRED:
            if current is not None:
                alert = store.load_alert(self._db, current)
                if alert.status is Status.RESOLVED:
                    _, _, queued = store.change_alert(
                        self._db, current, lambda a: lifecycle.refire(a, event.at)
                    )
                    return queued
                return []  # already open (e.g. a state saved just before a crash)
            return self._fire(rule.id, subject, rule.severity, rule.title, event)
        if current is None:
            return []
        cause = event.cause

        def resolve(alert: Alert) -> Outcome:
            known = replace(alert, cause=cause) if cause else alert
            return lifecycle.resolve(known, event.at)

        _, _, queued = store.change_alert(self._db, current, resolve)
        self._publish_later(current)
        return queued

    def _fire(
        self, rule_id: str, subject: str, severity: Severity, title: str, event: RuleEvent
    ) -> list[store.QueuedNotice]:
        device = self.fleet.get(subject)
        muted = None
        told = max(event.at, self.now())  # a spool's reading arrives after it was taken
        if device is not None:
            silences = store.silences_in_force(self._db, told)
            muted = lifecycle.mute_reason(
                rule_id, device.scope, told, silences, self._root_causes_in_force()
            )
        outcome = lifecycle.fire(
            rule_id,
            subject,
            severity,
            event.started_at,
            event.at,
            muted_by=muted,
            cause=event.cause,
            notified_at=told,
            hold=event.rule.missing is not None,
        )
        alert, queued = store.insert_alert(self._db, outcome, title)
        self.alerts_raised += 1
        self._log_raised(alert)
        if alert.alert_id is not None:
            self._publish_later(alert.alert_id)
            if lifecycle.held(alert):
                self._held[alert.alert_id] = time.monotonic()
        return queued

    def _update_root_causes(self) -> list[store.QueuedNotice]:
        """Raise one alert per failing cabinet, street or site, mute the alerts behind it;
        resolve it when its devices are back (unmuting those still firing), or hand its
        mutes to a wider failure that now covers it (nobody is told twice)."""
        scopes = {device_id: device.scope for device_id, device in self.fleet.items()}
        failing = lifecycle.failing_groups(
            self._missing_devices(), scopes, lifecycle.group_sizes(list(scopes.values()))
        )
        queued: list[store.QueuedNotice] = []
        now = self.now()
        # Partitioned, a worker judges every group from every worker's missing devices but
        # raises and resolves only the causes whose subject hashes to it.
        for key, members in failing.items():
            if not self.owns(key):
                continue
            if key not in self._root_causes:
                alert_id, notices = self._root_cause_alert(key, now)
                queued += notices
                self._root_causes[key] = alert_id
            self._mute_members(members, self._root_causes[key])
        for key in [key for key in self._root_causes if key not in failing]:
            wider = self._covering(key, failing)
            if wider is not None:
                wider_alert = self._root_causes.get(wider)
                if wider_alert is None:  # raised by another partition's worker, or not yet
                    wider_alert = self._current(GROUP_OFFLINE, wider)
                if wider_alert is None:
                    continue  # hand over once it is raised; stay muted meanwhile
                self._hand_over(self._root_causes.pop(key), wider_alert, wider, now)
                continue
            alert_id = self._root_causes.pop(key)
            _, _, notices = store.change_alert(
                self._db, alert_id, lambda a: lifecycle.resolve(a, now, "devices back")
            )
            self._publish_later(alert_id)
            queued += notices
            queued += self._unmute(f"suppressed:{alert_id}", now)
        return queued

    def _root_cause_alert(self, key: str, now: datetime) -> tuple[int, list[store.QueuedNotice]]:
        current = self._current(GROUP_OFFLINE, key)
        if current is not None:
            return current, []  # open before a restart: carry on with it
        kind, _, name = key.partition(":")
        scope = Scope(
            key,
            street_group=name if kind == "street" else None,
            cabinet=name if kind == "cabinet" else None,
            site_id=name if kind == "site" else None,
        )
        silences = store.silences_in_force(self._db, now)
        muted = lifecycle.mute_reason(GROUP_OFFLINE, scope, now, silences, {})
        outcome = lifecycle.fire(
            GROUP_OFFLINE, key, Severity.CRITICAL, now, now, muted_by=muted, cause="communication"
        )
        alert, notices = store.insert_alert(
            self._db, outcome, ROOT_CAUSE_KINDS[GROUP_OFFLINE].titles["en"]
        )
        self.alerts_raised += 1
        self._log_raised(alert)
        if alert.alert_id is None:
            raise psycopg.DataError("a stored alert has no id")
        self._publish_later(alert.alert_id)
        return alert.alert_id, notices

    def _log_raised(self, alert: Alert) -> None:
        """One line per alert raised, naming the worker (partition) that raised it."""
        log.info(
            "alert raised",
            extra={
                "alert_id": alert.alert_id,
                "rule_id": alert.rule_id,
                "subject": alert.subject,
                "partition": str(self.partition),
            },
        )

    def _covering(self, key: str, failing: Mapping[str, Sequence[str]]) -> str | None:
        """A failing wider group holding every device of ``key`` still missing, if any."""
        missing = self._missing_devices()
        members = {
            device_id
            for device_id, device in self.fleet.items()
            if key in device.scope.root_keys() and device_id in missing
        }
        for wider, devices in failing.items():
            if wider != key and members and members <= set(devices):
                return wider
        return None

    def _hand_over(self, old: int, new: int, wider: str, now: datetime) -> None:
        store.move_mutes(self._db, f"suppressed:{old}", f"suppressed:{new}")

        def supersede(alert: Alert) -> Outcome:
            if alert.status is Status.CLOSED:
                return alert, [], []
            return lifecycle.close(alert, now, lifecycle.ENGINE, f"superseded by {wider}")

        store.change_alert(self._db, old, supersede)
        self._publish_later(old)

    def _mute_members(self, members: Sequence[str], root_alert: int) -> None:
        """Mute the missing-device alerts behind a cause (its other alerts, such as a lamp
        out, stay as they are: the cause does not explain them)."""
        missing_rules = [rule.id for rule in self.rules.rules if rule.missing is not None]
        store.mute_open_alerts(self._db, members, missing_rules, f"suppressed:{root_alert}")

    def _unmute(self, reason: str, now: datetime) -> list[store.QueuedNotice]:
        queued: list[store.QueuedNotice] = []
        for alert_id in store.muted_firing_alerts(self._db, reason):
            _, _, notices = store.change_alert(
                self._db, alert_id, lambda a: lifecycle.unmute(a, now)
            )
            queued += notices
        return queued

    def _tick(self) -> None:
        if self.config.event_time and self._event_time is None:
            return  # no reading yet: no time to judge silence or reminders by
        now = self.now()
        events = self.evaluator.tick(now)
        notices: list[store.QueuedNotice] = []
        with self._db.transaction():
            notices += self._update_root_causes()
            for event in events:
                notices += self._record(event)
            silences = store.silences_in_force(self._db, now)
            for alert in store.live_alerts(self._db):
                if self.owns(alert.subject):
                    notices += self._tick_alert(alert, now, silences)
            store.save_rule_states(self._db, self.evaluator.take_dirty())
        self._db.commit()
        self.last_tick_at = time.monotonic()
        self._send(notices)
        self._publish_changed()

    def _publish_changed(self) -> None:
        """Publish every alert changed since the last sweep, by anyone: the engine before a
        crash, or a person through the command line or the API."""
        rows = self._db.execute(
            "SELECT alert_id, updated_at, subject FROM alerts WHERE updated_at > %s"
            " ORDER BY updated_at",
            (self._published_until,),
        ).fetchall()
        self._db.commit()
        for alert_id, updated_at, subject in rows:
            if self.owns(subject):  # each alert is published by the worker that owns it
                self._publish(alert_id)
            self._published_until = max(self._published_until, updated_at)

    def _tick_alert(
        self, alert: Alert, now: datetime, silences: Sequence[lifecycle.Silence]
    ) -> list[store.QueuedNotice]:
        if alert.alert_id is None:
            return []
        queued: list[store.QueuedNotice] = []
        muted = alert.muted_by
        if muted and muted.startswith(("silence:", "maintenance:")):
            labels = {silence.label for silence in silences if silence.starts_at <= now}
            if muted not in labels:
                _, _, notices = store.change_alert(
                    self._db, alert.alert_id, lambda a: lifecycle.unmute(a, now)
                )
                queued += notices
        if lifecycle.held(alert):
            since = self._held.get(alert.alert_id)
            if since is not None and time.monotonic() - since < self.config.group_wait_s:
                return queued  # still waiting for a root cause to show
            self._held.pop(alert.alert_id, None)
            _, _, notices = store.change_alert(
                self._db, alert.alert_id, lambda a: lifecycle.release(a, now)
            )
            return queued + notices
        failing = self.evaluator.firing(alert.rule_id, alert.subject) or (
            alert.rule_id == GROUP_OFFLINE and alert.subject in self._root_causes
        )
        _, transitions, notices = store.change_alert(
            self._db,
            alert.alert_id,
            lambda a: lifecycle.tick(a, now, self.config.policy, still_failing=failing),
        )
        if transitions:
            self._publish_later(alert.alert_id)
        return queued + notices

    # ------------------------------------------------------------------------- out

    def _publish_later(self, alert_id: int) -> None:
        self._to_publish.add(alert_id)

    def _send(self, notices: Sequence[store.QueuedNotice]) -> None:
        published = sorted(self._to_publish | {n.alert_id for n in notices})
        self._to_publish.clear()
        for alert_id in published:
            self._publish(alert_id)
        for queued in notices:
            self._notify(queued)

    def _publish(self, alert_id: int) -> None:
        alert = store.load_alert(self._db, alert_id)
        self._db.commit()
        topic, payload = alert_message(alert, site_of(alert.subject, self.fleet))
        self._session.publish(topic, payload, retain=True)

    def _notify(self, queued: store.QueuedNotice) -> None:
        if self._dispatcher is None or self.config.notifications is None:
            return
        alert = store.load_alert(self._db, queued.alert_id)
        self._db.commit()
        link = self.config.notifications.link(queued.alert_id)
        notice = notice_for(alert, queued, self.rules, self.fleet.get(alert.subject), link)
        if not self.config.notifications.routes_for(notice):
            store.finish_notification(self._db, queued.notification_id, self.now(), sent=False)
            self._db.commit()
            return
        self._dispatcher.submit(notice)

    def _resend_unsent(self) -> None:
        """Notifications queued before a crash and never sent go out now (at least once)."""
        unsent = store.unsent_notifications(self._db)
        if not self.partition.whole:  # each worker sends again those of its own alerts
            unsent = [
                n for n in unsent if self.owns(store.load_alert(self._db, n.alert_id).subject)
            ]
        self._db.commit()
        for queued in unsent:
            self._notify(queued)


def _device_of(topic: str) -> str:
    """The device id of ``sc/{site}/{class}/{device}/{channel}`` (empty when malformed)."""
    parts = topic.split("/")
    return parts[3] if len(parts) == 5 else ""
