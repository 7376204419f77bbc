"""What every service that sends commands to devices shares (docs/energy-control.md): the
skeleton of :class:`control.hvac_service.HvacControlService` (building zones, ``set_hvac``) and
:class:`control.lighting_service.LightingControlService` (streetlights, ``set_schedule``), and
their I/O on the ``commands`` table and the control alerts.

:class:`CommandingService` is the skeleton: the service's time (the wall clock, or with
``event_time`` the devices' latest sample time and the pace of device time,
:class:`control.commanding.DevicePace`), the MQTT v5 client with a persistent session
subscribed to one device class's telemetry and acknowledgements of the site, the loop
(messages in, then retries, then what the service itself does, :meth:`CommandingService._act`;
a database error waits for the database to come back), the acknowledgements and outcomes
of its commands (:class:`control.commanding.CommandBook`, the ``commands`` table, the alerts),
a strategy handed over from another thread and the one activated in the database.
A service adds what is its own: what a reading means to it (``_reading``), what it does
at each turn (``_act``), and what it does when its devices change (``_take_up``).

Its devices are the registry's (the ``devices`` table, as ``smartcity provision`` and the
API's ``/devices`` write it): those of its class and site in service, with their street
group, cabinet, building, zone and ``metadata``. It looks at the registry every
``registry_check_s`` (:class:`storage.registry.RegistryWatch`, the rules engine's mechanism
too), and at once when a device it does not know speaks: a device added is commanded, one
decommissioned is no longer (its commands awaiting an answer are given up, not resent), one
moved is commanded as its new place wants, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

import msgspec
import psycopg
from paho.mqtt.subscribeoptions import SubscribeOptions
from psycopg.types.json import Jsonb

from alerts import lifecycle, store
from alerts.catalogue import CONTROL_KINDS
from alerts.lifecycle import Scope, Status
from control.commanding import (
    CommandBook,
    CommandPolicy,
    DevicePace,
    Finding,
    Outcome,
    Retry,
    Sent,
    answered,
    params_for,
)
from control.strategy import PACKAGED_STRATEGY, Strategy, load_strategy
from control.strategy_store import active_strategy
from protocol.decoding import (
    DEFAULT_WINDOW,
    AcceptanceWindow,
    CommandAck,
    Rejected,
    Telemetry,
    decode,
)
from protocol.mqtt_account import MqttAccount
from protocol.payloads import PROTOCOL_VERSION, CommandPayload, encode
from protocol.sites import Device, SiteHeader
from protocol.topics import ROOT, Channel, DeviceClass, DeviceTopic
from runtime.mqtt_session import Inbox, MqttSession, Received, SessionConfig
from storage.registry import RegistryWatch, registered_devices, registered_site
from storage.set_aside import SetAside, describe, record_set_aside

SESSION_EXPIRY_S: Final = 3_600
"""Acknowledgements sent while a service restarts wait this long in its session."""
MESSAGE_ATTEMPTS: Final = 3
"""A message whose handling fails this many times (the database reconnected in between) is
set aside: recorded in ``set_aside_messages`` and acknowledged."""


@dataclass(frozen=True)
class ServiceConfig:
    """What every commanding service is configured with (the first three positionally)."""

    database_url: str
    site: str
    """The id of the site whose devices of the service's class are commanded, as the
    registry holds them (``smartcity provision`` puts a site file there)."""
    strategy: Strategy
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_account: MqttAccount | None = None
    """The service's broker account (``svc.<name>``); anonymous if None."""
    client_id: str = "smartcity-control"
    """MQTT client id, hence its persistent session (each service has its own default)."""
    commands: CommandPolicy = field(default_factory=CommandPolicy)
    """Expiry and acknowledgement timeout are in real seconds: with ``event_time`` they are
    stretched by the pace of device time."""
    event_time: bool = False
    """Take the time from the devices' readings (simulations faster than real time)."""
    tick_s: float = 0.1
    """Longest wait of the loop between two looks at retries and decisions [s]."""
    window: AcceptanceWindow = DEFAULT_WINDOW
    follow_active_strategy: bool = False
    """Take up the strategy activated in the database since the last look (``smartcity
    energy strategy activate``), at each decision or look; off when the strategy came from a
    file."""
    registry_check_s: float = 5.0
    """How often the registry is looked at for devices added, changed or decommissioned [s]
    (of the wall clock)."""


@dataclass(slots=True)
class Counters:
    """What a service counts of its commands (each service adds its own)."""

    commands_sent: int = 0
    resends: int = 0
    acknowledgements: int = 0
    unanswered: int = 0
    alerts_raised: int = 0
    alerts_resolved: int = 0


@dataclass(frozen=True, slots=True)
class ServiceKind:
    """What a commanding service is."""

    source: str
    """The ``source`` of its commands (``commands`` table)."""
    device_class: DeviceClass
    """The class of the devices it listens to and commands."""
    logger: logging.Logger
    label: str
    """The service in words, for the log ("hvac control")."""
    units: str
    """What its devices are called in the log ("zones")."""


ConfigT = TypeVar("ConfigT", bound=ServiceConfig)
CountersT = TypeVar("CountersT", bound=Counters)


class CommandingService(ABC, Generic[ConfigT, CountersT]):
    """The skeleton of a service that commands the devices of one class of a site.

    A subclass says what it is (``kind``), calls ``super().__init__`` first, sets up its own
    state, then calls :meth:`_open`, which reads the site and its devices from the registry
    and hands them to :meth:`_take_up`."""

    kind: ClassVar[ServiceKind]

    def __init__(
        self,
        config: ConfigT,
        counters: CountersT,
        *,
        clock: Callable[[], datetime],
        pace: DevicePace,
    ) -> None:
        self.config = config
        self._wall_clock = clock
        self.site: SiteHeader
        """The site, as the registry holds it (read by :meth:`_open`)."""
        self.devices: Mapping[str, Device] = {}
        """The devices commanded, by id: the registry's of the service's class and site in
        service, as last loaded."""
        self._registry = RegistryWatch(config.registry_check_s)
        self._loaded = False
        self.counters = counters
        self.book = CommandBook(config.commands)
        """Each device's latest command, the latest it applied, and those awaiting an
        answer."""
        self._event_time: datetime | None = None
        self._pace = pace
        self._active_version: tuple[str, int] | None = None
        """The database's active strategy when last looked at."""
        self._next_strategy: Strategy | None = None
        """A strategy handed over by :meth:`use_strategy`, not yet taken up."""
        self._stop = threading.Event()
        self.ready = threading.Event()
        """Set once the service subscribed to its devices."""
        self._inbox = Inbox()
        self._failures: dict[Received, int] = {}
        """Messages whose handling failed on a database error, and how many times."""
        self.messages_set_aside = 0
        self._arrived = self._inbox.arrived

    def _open(self) -> None:
        """Connect the database, read the site and its devices from the registry (the
        commands of a previous run to them restored), note the active strategy, and make the
        MQTT client. ValueError when the registry has no such site."""
        self._db = psycopg.connect(self.config.database_url, autocommit=True)
        site = registered_site(self._db, self.config.site)
        if site is None:
            self._db.close()
            raise ValueError(
                f"site {self.config.site!r} is not in the registry: provision it first "
                "(smartcity provision SITE_FILE)"
            )
        self.site = site
        self._load_devices()
        if not self.devices:
            self.kind.logger.warning(
                "no %s in the registry yet: they are taken up when added", self.kind.units
            )
        if self.config.follow_active_strategy:
            started = active_strategy(self._db)  # the one the caller read, or none yet
            self._active_version = (started.name, started.version) if started else None
        self._session = self._make_session()

    # ------------------------------------------------------------------------- time

    def now(self) -> datetime | None:
        """The service's time: the latest reading's with ``event_time``, else the clock's."""
        if self.config.event_time:
            return self._event_time
        return self._wall_clock()

    def scale(self) -> float | None:
        """Device seconds per second of ours (None while not yet measured)."""
        if not self.config.event_time:
            return 1.0
        return self._pace.scale(time.monotonic())

    def _observe_time(self, taken: datetime) -> None:
        """With ``event_time``, a newer reading moves the service's time and pace on."""
        if self.config.event_time and (self._event_time is None or taken > self._event_time):
            self._event_time = taken
            self._pace.observe(time.monotonic(), taken.timestamp())

    # ------------------------------------------------------------------------- MQTT

    def _make_session(self) -> MqttSession:
        config = self.config
        prefix = f"{ROOT}/{self.site.id}/{self.kind.device_class}/+"
        options = SubscribeOptions(qos=1)
        return MqttSession(
            SessionConfig(
                config.mqtt_host,
                config.mqtt_port,
                config.client_id,
                config.mqtt_account,
                session_expiry_s=SESSION_EXPIRY_S,
            ),
            logger=self.kind.logger,
            subscriptions=[
                (f"{prefix}/{Channel.TELEMETRY}", options),
                (f"{prefix}/{Channel.COMMAND_ACK}", options),
            ],
            on_message=self._inbox.put,
            on_subscribed=self.ready.set,
            clock=self._wall_clock,
        )

    # ------------------------------------------------------------------------- running

    def run(self) -> None:
        self._session.start()
        try:
            while not self._stop.is_set():
                self._arrived.wait(self.config.tick_s)
                self._arrived.clear()
                try:
                    self._step()
                except psycopg.Error as error:
                    self.kind.logger.warning("database error; carrying on", exc_info=error)
                    self._reconnect_database()
        finally:
            self._session.stop()
            self.close()
            self.kind.logger.info("%s stopped", self.kind.label)

    def stop(self) -> None:
        self._stop.set()
        self._arrived.set()

    def use_strategy(self, strategy: Strategy) -> None:
        """Work by ``strategy`` from the next turn of the loop on; any thread may call it,
        the service's own takes it up."""
        self._next_strategy = strategy
        self._arrived.set()

    def close(self) -> None:
        """Release the database connection (:meth:`run` does it when it ends)."""
        self._db.close()

    def latest_commands(self) -> dict[str, Sent]:
        """The latest command of each device, as far as the service knows."""
        return dict(self.book.latest)

    def awaiting(self) -> list[Sent]:
        """Commands sent and not answered yet."""
        return list(self.book.awaiting.values())

    def _reconnect_database(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                if self._db.closed or self._db.broken:
                    self._db = psycopg.connect(self.config.database_url, autocommit=True)
                elif self._db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    self._db.rollback()
            except psycopg.Error as error:
                self.kind.logger.warning(
                    "database unreachable; retrying in %.1f s", delay, exc_info=error
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            else:
                return

    def _step(self) -> None:
        """One turn of the loop: the registry looked at (when due), the messages in, then
        (once the service's time and pace are known) the retries, then what the service does
        (:meth:`_act`)."""
        self._follow_registry()
        inbox = self._inbox.messages
        while inbox:
            message = inbox.popleft()
            try:
                self._take(message)
            except psycopg.Error as error:
                attempts = self._failures.get(message, 0) + 1
                if attempts < MESSAGE_ATTEMPTS:
                    self._failures[message] = attempts
                    inbox.appendleft(message)  # again once the database is back
                    raise
                self._reconnect_database()
                self._set_aside(message, error)
            except Exception as error:  # noqa: BLE001 - one bad message must not stop the control
                self._set_aside(message, error)
            else:
                self._failures.pop(message, None)
                self._session.acknowledge([message])
        now = self.now()
        scale = self.scale()
        if now is None or scale is None:
            return  # no reading yet, or the pace of device time not yet known
        self._retry(now, scale)
        self._act(now, scale)

    def _set_aside(self, message: Received, error: BaseException) -> None:
        """Record a message whose handling fails every time, and acknowledge it: the broker
        would otherwise deliver it again and again."""
        self._failures.pop(message, None)
        self.messages_set_aside += 1
        self.kind.logger.error(
            "message set aside: handling it fails every time",
            exc_info=error,
            extra={"topic": message.topic, "bytes": len(message.payload)},
        )
        aside = SetAside(
            self.kind.source, message.topic, message.payload, message.received_at, describe(error)
        )
        try:
            record_set_aside(self._db, aside, self._wall_clock())
        except psycopg.Error:
            self.kind.logger.exception(
                "could not record the message set aside", extra={"topic": message.topic}
            )
        self._session.acknowledge([message])

    @abstractmethod
    def _act(self, now: datetime, scale: float) -> None:
        """What the service does at each turn of the loop, once its time is known."""

    def _handed_over(self) -> Strategy | None:
        """The strategy handed over by :meth:`use_strategy` since the last call, if any."""
        strategy, self._next_strategy = self._next_strategy, None
        return strategy

    def _newly_activated(self) -> Strategy | None:
        """The strategy activated in the database since the last look, if any; the packaged
        one when the activations were all rolled back since."""
        active = active_strategy(self._db)
        version = None if active is None else (active.name, active.version)
        if version == self._active_version:
            return None
        self._active_version = version
        return load_strategy(PACKAGED_STRATEGY) if active is None else active.strategy

    # ------------------------------------------------------------------------- registry

    def _follow_registry(self, *, asked: bool = False) -> None:
        """Load the devices again if the registry changed (looked at when due, or soon after
        the last look when ``asked``)."""
        if self._registry.changed(self._db, asked=asked):
            self._load_devices()

    def _load_devices(self) -> None:
        """The service's devices as the registry holds them now: those added get their
        commands of an earlier run restored, those gone are forgotten, then the service takes
        the change up (:meth:`_take_up`)."""
        try:
            self._registry.loaded(self._db)
            found = registered_devices(self._db, self.site.id, self.kind.device_class)
            before = self.devices
            now = {device.id: device for device in found}
            added = sorted(now.keys() - before.keys())
            removed = sorted(before.keys() - now.keys())
            changed = sorted(key for key in now.keys() & before.keys() if now[key] != before[key])
            restored = restore_commands(self._db, self.kind.source, added) if added else None
        except psycopg.Error:
            self._registry.forget()  # read again at the next look
            raise
        if self._loaded and not (added or removed or changed):
            return  # another class's or site's devices changed
        dropped = self.book.forget(removed)
        if restored is not None:
            self._restore(*restored)
        self.devices = now
        self._take_up(before)
        self.kind.logger.info(
            "registry changed: devices taken up" if self._loaded else "devices from the registry",
            extra={
                self.kind.units: len(now),
                "added": len(added),
                "removed": len(removed),
                "changed": len(changed),
            },
        )
        self._loaded = True
        self._give_up(dropped)

    @abstractmethod
    def _take_up(self, before: Mapping[str, Device]) -> None:
        """``self.devices`` changed from ``before`` (empty at the start): added devices are to
        be commanded, removed ones forgotten, changed ones commanded as they now stand."""

    def _give_up(self, dropped: Sequence[Sent]) -> None:
        """Commands to devices no longer in service that were awaiting an answer: given up
        in the table (``unanswered``, no alert); the book no longer resends them."""
        now = self.now() or self._wall_clock()
        for sent in dropped:
            gone = replace(
                sent,
                outcome=Outcome.UNANSWERED,
                outcome_at=now,
                reason="device no longer in service; not sent again",
            )
            record_outcome(self._db, gone)

    # ------------------------------------------------------------------------- in

    def _take(self, message: Received) -> None:
        decoded = decode(message.topic, message.payload, message.received_at, self.config.window)
        if isinstance(decoded, Rejected):
            return  # ingest records the reason
        device_id = decoded.topic.device_id
        if device_id not in self.devices:
            self._follow_registry(asked=True)  # added a moment ago?
            if device_id not in self.devices:
                return
        if isinstance(decoded, Telemetry):
            for taken, values in sorted(decoded.samples, key=lambda sample: sample[0]):
                self._observe_time(taken)
                self._reading(device_id, taken, values)
        elif isinstance(decoded, CommandAck):
            self._acknowledged(decoded)

    @abstractmethod
    def _reading(self, device_id: str, taken: datetime, values: dict[str, float]) -> None:
        """One sample of a device, oldest first (the service's time already moved on)."""

    def _acknowledged(self, ack: CommandAck) -> None:
        sent = self.book.find(ack.command_id) or find_command(
            self._db, ack.command_id, self.kind.source
        )
        if sent is None or sent.device_id != ack.topic.device_id:
            return  # not one of ours (another service's, or a person's)
        updated = answered(sent, Outcome(ack.outcome.value), ack.ts, ack.reason)
        if updated == sent:
            return  # a repeated answer, to a resend
        self._settle(updated)
        self.counters.acknowledgements += 1

    def _settle(self, sent: Sent) -> None:
        """Record an outcome: the table first (should it fail, a resend asks again), the
        device's latest commands, the alerts."""
        record_outcome(self._db, sent)
        for finding in self.book.settle(sent):
            self._alert(finding)
        if sent.outcome is not Outcome.APPLIED:
            self.kind.logger.warning(
                "command not applied",
                extra={"device": sent.device_id, "command": sent.id, "outcome": sent.outcome},
            )

    # ------------------------------------------------------------------------- out

    def _retry(self, now: datetime, scale: float) -> None:
        for updated, action in self.book.retries(now, scale):
            if action is Retry.RESEND:
                record_resend(self._db, updated)
                self.book.resent(updated)
                self._publish(updated)
                self.counters.resends += 1
            else:
                self._settle(updated)
                self.counters.unanswered += 1

    def _record_and_publish(self, batch: Sequence[Sent]) -> None:
        """New commands: recorded (one transaction), in the book, then published."""
        insert_commands(self._db, batch, self.kind.source)
        for sent in batch:
            self.book.add(sent)  # an older command awaiting its answer is no longer resent
            self._publish(sent)
        self.counters.commands_sent += len(batch)

    def _publish(self, sent: Sent) -> None:
        topic = DeviceTopic(self.site.id, self.kind.device_class, sent.device_id, Channel.COMMAND)
        self._session.publish(str(topic), command_payload(sent))

    # ------------------------------------------------------------------------- alerts

    def _scope(self, device_id: str) -> Scope:
        """Where a device's alerts belong (silences and maintenance windows by place), as
        the registry places it now (the rules engine scopes its alerts alike)."""
        device = self.devices.get(device_id)
        if device is None:
            return Scope(device_id, site_id=self.site.id)
        return Scope(device_id, device.street_group, device.cabinet, device.building, self.site.id)

    def _alert(self, finding: Finding) -> None:
        """Raise or resolve a control alert (:func:`record_finding`)."""
        change = record_finding(self._db, finding, self._scope(finding.subject))
        if change == "resolved":
            self.counters.alerts_resolved += 1
        elif change == "raised":
            self.counters.alerts_raised += 1
            self.kind.logger.warning(
                "alert raised",
                extra={"rule": finding.rule_id, "device": finding.subject, "cause": finding.cause},
            )

    # ------------------------------------------------------------------------- restart

    def _restore(self, latest: list[Sent], applied: list[Sent], awaiting: list[Sent]) -> None:
        """The commands of a previous run to devices new to the book (:func:`restore_commands`):
        each device's latest, latest applied, and those still awaiting an answer (answered
        late, resent or given up as usual)."""
        self.book.restore(latest, applied, awaiting)
        if self.book.latest and not self._loaded:
            self.kind.logger.info(
                "commands restored",
                extra={self.kind.units: len(self.book.latest), "awaiting": len(self.book.awaiting)},
            )


# ----------------------------------------------------------------------------- shared
# The commands table and the control alerts, for every service that sends commands.

_COLUMNS: Final = (
    "id, device_id, action, params, reason, issued_at, expires_at, last_sent_at, attempts,"
    " outcome, outcome_at, outcome_reason"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM commands"  # noqa: S608
_SELECT_LATEST: Final = (
    f"SELECT DISTINCT ON (device_id) {_COLUMNS} FROM commands"  # noqa: S608
    " WHERE source = %s AND device_id = ANY(%s)"
)
AlertChange = Literal["raised", "resolved"]


def command_payload(sent: Sent) -> bytes:
    """The command as it goes out on ``.../cmd``."""
    payload = CommandPayload(
        v=PROTOCOL_VERSION,
        id=sent.id,
        issued_at=sent.issued_at,
        expires_at=sent.expires_at,
        action=sent.action,
        params=msgspec.to_builtins(sent.params),
    )
    return encode(payload)


def insert_commands(connection: psycopg.Connection, commands: Sequence[Sent], source: str) -> None:
    """Record new commands (``why`` in ``reason``), in one transaction and one executemany."""
    rows = [
        (
            sent.id,
            sent.device_id,
            sent.action,
            Jsonb(msgspec.to_builtins(sent.params)),
            source,
            sent.why[:2_000],
            sent.issued_at,
            sent.expires_at,
            sent.attempts,
            sent.last_sent_at,
        )
        for sent in commands
    ]
    with connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO commands (id, device_id, action, params, source, reason, issued_at,"
            " expires_at, attempts, last_sent_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def record_resend(connection: psycopg.Connection, sent: Sent) -> None:
    connection.execute(
        "UPDATE commands SET attempts = %s, last_sent_at = %s, expires_at = %s WHERE id = %s",
        (sent.attempts, sent.last_sent_at, sent.expires_at, sent.id),
    )


def record_outcome(connection: psycopg.Connection, sent: Sent) -> None:
    connection.execute(
        "UPDATE commands SET outcome = %s, outcome_at = %s, outcome_reason = %s WHERE id = %s",
        (sent.outcome, sent.outcome_at, sent.reason[:2_000], sent.id),
    )


def find_command(connection: psycopg.Connection, command_id: str, source: str) -> Sent | None:
    """A command of ``source`` by id (one settled before a restart)."""
    rows = connection.execute(_SELECT + " WHERE id = %s AND source = %s", (command_id, source))
    found = [command_from_row(row) for row in rows.fetchall()]
    return found[0] if found else None


def restore_commands(
    connection: psycopg.Connection, source: str, devices: Sequence[str]
) -> tuple[list[Sent], list[Sent], list[Sent]]:
    """The commands of ``source`` to ``devices``: each device's latest, its latest applied,
    and those awaiting an answer (for :meth:`control.commanding.CommandBook.restore`)."""
    ids = list(devices)
    latest = connection.execute(
        _SELECT_LATEST + " ORDER BY device_id, issued_at DESC", (source, ids)
    ).fetchall()
    applied = connection.execute(
        _SELECT_LATEST + " AND outcome = 'applied' ORDER BY device_id, issued_at DESC",
        (source, ids),
    ).fetchall()
    awaiting = connection.execute(
        _SELECT + " WHERE source = %s AND device_id = ANY(%s) AND outcome IS NULL", (source, ids)
    ).fetchall()
    return (
        [command_from_row(row) for row in latest],
        [command_from_row(row) for row in applied],
        [command_from_row(row) for row in awaiting],
    )


def command_from_row(row: Sequence[Any]) -> Sent:
    """A row of ``commands`` (the columns of ``_COLUMNS``)."""
    (
        command_id,
        device,
        action,
        params,
        why,
        issued,
        expires,
        last_sent,
        attempts,
        outcome,
        at,
        reason,
    ) = row
    return Sent(
        command_id,
        device,
        action,
        params_for(action, params),
        issued,
        expires,
        last_sent,
        attempts,
        Outcome(outcome) if outcome else None,
        at,
        reason or "",
        why=why or "",
    )


def record_finding(
    connection: psycopg.Connection, finding: Finding, scope: Scope
) -> AlertChange | None:
    """Raise or resolve a control alert on ``scope``'s device; what changed, if anything.

    The rules engine notifies it: it is stored held, and the engine releases it at its next
    tick, as it does a missing device's. Silences and maintenance windows mute it."""
    spec = CONTROL_KINDS[finding.rule_id]
    with connection.transaction():
        current = store.current_alert_id(connection, finding.rule_id, finding.subject)
        if not finding.fire:
            if current is None:
                return None
            store.change_alert(connection, current, lambda a: lifecycle.resolve(a, finding.at))
            return "resolved"
        if current is not None:
            alert = store.load_alert(connection, current)
            if alert.status is Status.RESOLVED:  # a repair the fault outlived
                store.change_alert(connection, current, lambda a: lifecycle.refire(a, finding.at))
            return None
        silences = store.silences_in_force(connection, finding.at)
        muted = lifecycle.mute_reason(finding.rule_id, scope, finding.at, silences, {})
        outcome = lifecycle.fire(
            finding.rule_id,
            finding.subject,
            spec.severity,
            min(finding.started_at, finding.at),
            finding.at,
            muted_by=muted,
            cause=finding.cause[:2_000],
            hold=True,
        )
        store.insert_alert(connection, outcome, spec.titles["en"])
    return "raised"
