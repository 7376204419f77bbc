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

Its parts: :mod:`rules.evaluator` (the rules over readings, pure), :mod:`rules.root_causes`
(one alert per group gone quiet), :mod:`rules.rule_set_follower` (which rules run),
:mod:`rules.announce` (what is published and notified), :mod:`alerts.store` (every alert
write) and :mod:`runtime.mqtt_session` (the session); this module sequences them.
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
from alerts.catalogue import BUILT_IN_KINDS, GROUP_OFFLINE
from alerts.dispatch import Dispatcher
from alerts.errors import AlertError
from alerts.lifecycle import DEFAULT_GROUP_WAIT, Alert, Outcome, Policy, Status
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
from protocol.topics import Channel, subscription
from rules.announce import DeliveryRecorder, alert_message, notice_for, site_of
from rules.errors import RuleError
from rules.evaluator import Evaluator, EventKind, FleetDevice, RuleEvent
from rules.fleet import load_fleet
from rules.model import RuleSet, load_rules
from rules.partition import Partition
from rules.root_causes import RootCauses
from rules.rule_set_follower import RuleSetFollower, RuleSetRef
from runtime.mqtt_session import Inbox, MqttSession, Received, SessionConfig
from storage.registry import RegistryWatch
from storage.set_aside import SetAside, describe, record_set_aside

log = logging.getLogger("smartcity.rules")

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
    """Reminders, escalation and closing; the routing file's escalation steps, when it has
    them, replace its single escalation (:attr:`lifecycle_policy`)."""
    event_time: bool = False
    """Take the time from the devices' readings (simulations faster than real time)."""
    window: AcceptanceWindow = DEFAULT_WINDOW
    """Readings outside it are not evaluated (ingest refuses them too)."""
    group_wait_s: float = DEFAULT_GROUP_WAIT.total_seconds()
    """How long a missing device's alert waits before it is notified, in case its street,
    cabinet or the site link turns out to be the cause (then it is muted instead)."""
    rule_set_check_s: float = 30.0
    """How often the rule set activated in the database is looked up."""
    registry_check_s: float = 5.0
    """How often the registry is looked at: devices added, changed (street group, ratings...)
    or decommissioned since are taken up, without a restart."""
    partition: Partition = field(default_factory=Partition)
    """The devices this worker looks after (:mod:`rules.partition`); the default, all."""

    @property
    def lifecycle_policy(self) -> Policy:
        """:attr:`policy`, with the routing file's escalation steps when it gives some."""
        steps = self.notifications.escalation_delays() if self.notifications else ()
        return replace(self.policy, escalation=steps) if steps else self.policy


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
        self._rule_sets = RuleSetFollower(config.rules_path)
        self._wall_clock = clock
        self._event_time: datetime | None = None
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._inbox = Inbox()
        self._arrived = self._inbox.arrived
        self.rules = load_rules(config.rules_path)
        self._db = psycopg.connect(config.database_url, autocommit=False)
        self._registry = RegistryWatch(config.registry_check_s)
        self._registry.loaded(self._db)
        self.fleet = load_fleet(self._db)
        self._db.commit()
        self.follow_active_rule_set()  # an active rule set is in force from the start
        self.rules = self._rule_sets.take() or self.rules
        self.evaluator = self._restored_evaluator(self.rules)
        if config.event_time:
            self._event_time = self._latest_reading()
        else:
            self._restart_silence_clocks(self._wall_clock())
        self._causes = RootCauses(
            whole_fleet=self.partition.whole,
            owns=self.owns,
            changed=self._publish_later,
            raised=self._count_raised,
        )
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

    def _held_clock(self) -> float:
        """The clock a held alert waits by [s]: device time in event time (a replay runs
        faster than real time), else the monotonic clock."""
        if self.config.event_time:
            return self.now().timestamp()
        return time.monotonic()

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

    @property
    def rule_set_in_force(self) -> RuleSetRef | None:
        """The stored rule set the running rules came from; None: the rule file."""
        return self._rule_sets.in_force

    def reload(self, path: Path | None = None) -> str:
        """Check a rule file and swap it in at the next batch; the running set stays on error
        (:meth:`RuleSetFollower.reload`)."""
        outcome = self._rule_sets.reload(path)
        self._arrived.set()
        return outcome

    def follow_active_rule_set(self) -> str | None:
        """Take up the rule set activated in the database (:meth:`RuleSetFollower.follow`)."""
        return self._rule_sets.follow(self._db)

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
            found = store.devices_found_missing(self._db, self._missing_rules())
            elsewhere = {device for device in found if device not in self.evaluator.fleet}
            self._elsewhere = time.monotonic(), elsewhere
        return missing | elsewhere

    def _missing_rules(self) -> list[str]:
        return [rule.id for rule in self.rules.rules if rule.missing is not None]

    def _swap_rules(self) -> None:
        rules = self._rule_sets.take()
        if rules is None:
            return
        self._save_states()
        self.rules = rules
        self._reload_fleet()  # devices provisioned since are evaluated too
        self._close_alerts_of_removed_rules()
        log.info("rules reloaded", extra={"rules": len(rules.rules), "source": rules.source})

    def _reload_fleet(self) -> None:
        """The registry as it is now, and the evaluator rebuilt over it from the saved states
        (save them first)."""
        self._registry.loaded(self._db)
        self.fleet = load_fleet(self._db)
        self._db.commit()
        self.evaluator = self._restored_evaluator(self.rules)

    def _follow_registry(self, *, asked: bool = False) -> None:
        """Take up devices added, changed or decommissioned since the last look (periodic,
        or ``asked`` by a message from a device the engine does not know)."""
        changed = self._registry.changed(self._db, asked=asked)
        self._db.commit()
        if not changed:
            return
        before = set(self.fleet)
        self._save_states()
        self._reload_fleet()
        log.info(
            "registry changed: devices taken up",
            extra={
                "devices": len(self.fleet),
                "added": len(set(self.fleet) - before),
                "removed": len(before - set(self.fleet)),
            },
        )

    def _close_alerts_of_removed_rules(self) -> None:
        kept = [rule.id for rule in self.rules.rules] + [*BUILT_IN_KINDS]
        now = self.now()
        with self._db.transaction():
            for alert_id, subject in store.unclosed_alerts_except(self._db, kept):
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
                self._safely(self._follow_registry, "registry check")
                if time.monotonic() >= next_rule_set_check or self._rule_sets.recheck.is_set():
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
        self._causes.forget()
        self._to_publish.clear()

    def _apply(self, batch: Sequence[Received]) -> None:
        self._take_up_new_speakers(batch)
        events: list[RuleEvent] = []
        for message in batch:
            events += self._evaluate(message)
        notices = self._commit(events)
        self._session.acknowledge(batch)
        self.messages_applied += len(batch)
        self._send(notices)

    def _take_up_new_speakers(self, batch: Sequence[Received]) -> None:
        """A device unknown to the fleet may have been added a moment ago: look at the
        registry now rather than ignore its first readings until the next periodic check.
        (Only provisioned devices get past the broker, so unknown ones are rare: just added,
        or decommissioned and not yet shut out.)"""
        speakers = {_device_of(message.topic) for message in batch} - {""}
        if not speakers <= self.fleet.keys():
            self._follow_registry(asked=True)

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

    def _record(self, event: RuleEvent) -> list[store.QueuedNotice]:
        rule, subject = event.rule, event.device_id
        current = store.current_alert_id(self._db, rule.id, subject)
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
                rule_id, device.scope, told, silences, self._causes.in_force(self._db)
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
        self._count_raised(alert)
        if alert.alert_id is not None:
            self._publish_later(alert.alert_id)
            for merged in store.merge_citizen_reports(self._db, alert, event.at):
                self._publish_later(merged)
            if lifecycle.held(alert):
                self._held[alert.alert_id] = self._held_clock()
        return queued

    def _update_root_causes(self) -> list[store.QueuedNotice]:
        scopes = {device_id: device.scope for device_id, device in self.fleet.items()}
        missing = self._missing_devices()
        return self._causes.update(self._db, scopes, missing, self._missing_rules(), self.now())

    def _count_raised(self, alert: Alert) -> None:
        """One line per alert raised, naming the worker (partition) that raised it."""
        self.alerts_raised += 1
        log.info(
            "alert raised",
            extra={
                "alert_id": alert.alert_id,
                "rule_id": alert.rule_id,
                "subject": alert.subject,
                "partition": str(self.partition),
            },
        )

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
        log.debug("periodic check committed", extra={"alerts_raised": self.alerts_raised})
        self._send(notices)
        self._publish_changed()

    def _publish_changed(self) -> None:
        """Publish every alert changed since the last sweep, by anyone: the engine before a
        crash, or a person through the command line or the API."""
        rows = store.alerts_changed_since(self._db, self._published_until)
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
            if since is not None and self._held_clock() - since < self.config.group_wait_s:
                return queued  # still waiting for a root cause to show
            self._held.pop(alert.alert_id, None)
            _, _, notices = store.change_alert(
                self._db, alert.alert_id, lambda a: lifecycle.release(a, now)
            )
            return queued + notices
        failing = self.evaluator.firing(alert.rule_id, alert.subject) or (
            alert.rule_id == GROUP_OFFLINE and self._causes.is_open(alert.subject)
        )
        _, transitions, notices = store.change_alert(
            self._db,
            alert.alert_id,
            lambda a: lifecycle.tick(a, now, self.config.lifecycle_policy, still_failing=failing),
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
