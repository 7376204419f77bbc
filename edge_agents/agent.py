"""The edge agent: one device's MQTT session, sampling, spool, commands and local control.

Time comes in from outside: :meth:`Agent.tick` takes the device's current time (the wall clock
on a pole, a simulated clock in the simulated city), and the network is driven by a
:class:`edge_agents.network.NetworkLoop` that may carry one agent or thousands. Every callback
runs on that one thread, so the agent needs no locks.

What the agent guarantees:

- every sample is written to the spool before it is sent and leaves the spool only when the
  broker acknowledged it, so a broker outage or a crash replays it, in order; what the broker
  acknowledged in the last seconds before a disconnection is sent again after it, because a
  broker that crashed may have lost it (:mod:`edge_agents.spool`, the replay window);
- telemetry and events carry sequence numbers per channel, kept across restarts, so the
  platform sees any gap;
- a retained birth message says online; the last will (retained) says offline;
- a command is applied at most once, refused with a reason when invalid, of another protocol
  version or expired, and answered on the acknowledgement topic (one that cannot even be
  decoded has no id to answer: it is reported as a ``command_refused`` event);
- without the platform, the device keeps its own program (:mod:`edge_agents.control`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agents import control
from edge_agents.drivers import Driver, Outputs, Reading
from edge_agents.errors import DriverError
from edge_agents.spool import Spool
from protocol.catalogue import CATALOGUE
from protocol.commands import Refusal, check_command
from protocol.mqtt_account import MqttAccount, apply_account
from protocol.payloads import (
    PROTOCOL_VERSION,
    CommandAckPayload,
    CommandOutcome,
    CommandPayload,
    DeviceStatus,
    EventPayload,
    Sample,
    Severity,
    StatePayload,
    TelemetryPayload,
    encode,
)
from protocol.sun import solar_elevation
from protocol.topics import Channel, DeviceClass, DeviceTopic

log = logging.getLogger("smartcity.agent")

FIRMWARE: Final = "smartcity-agent/1"
REMEMBERED_COMMANDS: Final = 256
"""How many recent command ids an agent remembers, to answer a redelivery without re-applying."""

_command_decoder: Final = msgspec.json.Decoder(CommandPayload)


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    site: str
    device_class: DeviceClass
    device_id: str
    latitude: float
    longitude: float
    timezone: str

    def topic(self, channel: Channel) -> str:
        return str(DeviceTopic(self.site, self.device_class, self.device_id, channel))


@dataclass(frozen=True, slots=True)
class AgentSettings:
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    account: MqttAccount | None = None
    """The device's broker account (user name: its id) and TLS files; anonymous if None."""
    keepalive_s: int = 60
    sample_interval_s: int | None = None
    """Seconds between samples; the class's expected interval from the catalogue when None."""
    samples_per_message: int = 1
    control_interval_s: int = 60
    """Seconds between runs of the local controller."""
    max_inflight: int = 10
    """Messages sent and not yet acknowledged by the broker, at most."""
    autonomy_after_s: int = 900
    """Disconnected this long, the device drops platform overrides and runs on its own."""
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0


@dataclass(slots=True)
class AgentCounters:
    samples: int = 0
    messages_spooled: int = 0
    messages_acknowledged: int = 0
    messages_replayed: int = 0
    """Sent again after a reconnection although the broker had acknowledged them."""
    read_failures: int = 0
    commands_applied: int = 0
    commands_refused: int = 0
    connections: int = 0


@dataclass(slots=True)
class _Session:
    connected: bool = False
    disconnected_since: datetime | None = None
    next_attempt: float = 0.0
    backoff_s: float = 0.0
    backlog: bool = True
    """The spool may hold messages not yet handed to the client."""
    replaying: bool = False
    """Just reconnected: paho re-sends what was in flight first, then the spool follows."""
    in_flight: dict[int, int] = field(default_factory=dict)
    """paho message id to spool row id."""
    spooled_in_flight: set[int] = field(default_factory=set)
    reported_overflow: int = 0


class Agent:
    """One device's agent; see the module docstring."""

    def __init__(
        self,
        identity: AgentIdentity,
        settings: AgentSettings,
        driver: Driver,
        spool: Spool,
        *,
        client_id: str | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.driver = driver
        self.spool = spool
        self.counters = AgentCounters()
        self.boot_id = uuid.uuid4().hex[:16]
        self.local = control.LocalState()
        self._zone = ZoneInfo(identity.timezone)
        spec = CATALOGUE[identity.device_class]
        self._sample_interval = timedelta(
            seconds=settings.sample_interval_s or spec.expected_interval_s
        )
        self._control_interval = timedelta(seconds=settings.control_interval_s)
        self._now: datetime | None = None
        self._next_sample: datetime | None = None
        self._next_control: datetime | None = None
        self._batch: list[Sample] = []
        self._last_reading: Reading = {}
        self._session = _Session()
        self._answered: OrderedDict[str, CommandAckPayload] = OrderedDict()
        self._stopped = False
        self.client = self._make_client(client_id or identity.device_id)

    # ----------------------------------------------------------------- MQTT session

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        apply_account(client, self.settings.account)
        client.max_inflight_messages_set(self.settings.max_inflight)
        client.max_queued_messages_set(0)
        client.will_set(
            self.identity.topic(Channel.STATE),
            self._state_payload(DeviceStatus.OFFLINE, "connection_lost"),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.connect_async(
            self.settings.broker_host, self.settings.broker_port, self.settings.keepalive_s
        )
        return client

    @property
    def connected(self) -> bool:
        return self._session.connected

    def maintain_connection(self, monotonic_now: float | None = None) -> None:
        """Connect or reconnect when due, backing off exponentially while the broker is away."""
        session = self._session
        if session.connected and session.replaying:
            session.replaying = False  # paho has re-sent what it had in flight by now
            self._drain()
        if session.connected or self._stopped:
            return
        wall = time.monotonic() if monotonic_now is None else monotonic_now
        if wall < session.next_attempt:
            return
        if self._now is not None:  # the will says since when this session lasted
            self.client.will_set(
                self.identity.topic(Channel.STATE),
                self._state_payload(DeviceStatus.OFFLINE, "connection_lost"),
                qos=1,
                retain=True,
            )
        session.backoff_s = min(
            self.settings.reconnect_max_s,
            max(self.settings.reconnect_min_s, session.backoff_s * 2),
        )
        session.next_attempt = wall + session.backoff_s
        try:
            self.client.reconnect()
        except OSError as error:
            log.debug("%s: broker unreachable: %s", self.identity.device_id, error)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("%s: broker refused the connection: %s", self.identity.device_id, reason)
            return
        session = self._session
        session.connected = True
        session.backlog = True
        session.disconnected_since = None
        session.backoff_s = 0.0
        self.counters.connections += 1
        client.subscribe(self.identity.topic(Channel.COMMAND), qos=1)
        client.publish(
            self.identity.topic(Channel.STATE),
            self._state_payload(DeviceStatus.ONLINE, None),
            qos=1,
            retain=True,
        )
        # paho re-sends the messages it had in flight only after this callback returns; the
        # spool waits for the next tick so that nothing newer overtakes them.
        session.replaying = True
        self.counters.messages_replayed += self.spool.requeue_acknowledged(
            self._now or datetime.now(UTC)
        )
        self._report_spool_losses()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        session = self._session
        if session.connected:
            log.info("%s: disconnected (%s)", self.identity.device_id, reason)
        session.connected = False
        if session.disconnected_since is None:
            session.disconnected_since = self._now
        # paho resends what it had in flight when it reconnects; a new process would not,
        # which is why those messages stay in the spool until acknowledged.

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        spool_id = self._session.in_flight.pop(mid, None)
        if spool_id is None:
            return
        self._session.spooled_in_flight.discard(spool_id)
        if reason.is_failure:
            log.warning("%s: broker refused message: %s", self.identity.device_id, reason)
            self.spool.remove([spool_id])
        else:
            self.spool.acknowledge([spool_id], datetime.now(UTC))
        self.counters.messages_acknowledged += 1
        self._drain()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        try:
            self._handle_command(bytes(message.payload))
        except Exception:  # one bad command must never stop the agent
            log.exception("%s: command handling failed", self.identity.device_id)

    def _state_payload(self, status: DeviceStatus, reason: str | None) -> bytes:
        return encode(
            StatePayload(
                v=PROTOCOL_VERSION,
                status=status,
                ts=self._now or datetime.now().astimezone(),
                reason=reason,
                boot_id=self.boot_id,
                firmware=FIRMWARE,
            )
        )

    # ----------------------------------------------------------------- sending

    def _spool(self, channel: Channel, payload: bytes) -> None:
        self.spool.append(self.identity.topic(channel), payload, 1, self._clock())
        self.counters.messages_spooled += 1
        self._session.backlog = True
        self._drain()

    def _drain(self) -> None:
        """Send the oldest spooled messages not yet in flight, up to the window."""
        session = self._session
        if not session.connected or not session.backlog or session.replaying:
            return
        room = self.settings.max_inflight - len(session.in_flight)
        if room <= 0:
            return
        waiting = self.spool.oldest(room + len(session.spooled_in_flight))
        session.backlog = len(waiting) == room + len(session.spooled_in_flight)
        for message in waiting:
            if message.id in session.spooled_in_flight:
                continue
            info = self.client.publish(message.topic, message.payload, qos=message.qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                session.backlog = True
                break
            session.in_flight[info.mid] = message.id
            session.spooled_in_flight.add(message.id)
            room -= 1
            if room == 0:
                break

    def _report_spool_losses(self) -> None:
        stats = self.spool.stats()
        dropped = stats.dropped_overflow + stats.dropped_expired
        if dropped > self._session.reported_overflow:
            self._event(
                "spool_overflow",
                Severity.WARNING,
                "the spool dropped telemetry while the platform was unreachable",
                {
                    "dropped_overflow": stats.dropped_overflow,
                    "dropped_expired": stats.dropped_expired,
                },
            )
            self._session.reported_overflow = dropped

    def _event(self, kind: str, severity: Severity, message: str, data: dict[str, Any]) -> None:
        payload = EventPayload(
            v=PROTOCOL_VERSION,
            seq=self.spool.next_sequence("event"),
            ts=self._clock(),
            kind=kind,
            severity=severity,
            message=message,
            data=data,
        )
        self._spool(Channel.EVENT, encode(payload))

    # ----------------------------------------------------------------- time passes

    def _clock(self) -> datetime:
        if self._now is None:
            raise RuntimeError("the agent has not been ticked yet")
        return self._now

    @property
    def autonomous(self) -> bool:
        since = self._session.disconnected_since
        return (
            since is not None
            and self._now is not None
            and (self._now - since).total_seconds() >= self.settings.autonomy_after_s
        )

    def tick(self, now: datetime) -> None:
        """Let the device's time advance to ``now``: control, sample, spool, send."""
        if self._now is None:
            self._next_sample = _align(now, self._sample_interval)
            self._next_control = now
            if not self._session.connected:
                self._session.disconnected_since = now
        self._now = now
        self._session.replaying = False
        if self.local.hold is not None and self.autonomous:
            self.local = replace(self.local, hold=None)  # on its own: the overrides are dropped
        if self._next_control is not None and now >= self._next_control:
            self._control(now)
            self._next_control = now + self._control_interval
        if self._next_sample is not None and now >= self._next_sample:
            due = self._next_sample
            if now - due >= self._sample_interval:  # a long pause: skip, invent nothing
                due = _align(now, self._sample_interval)
                due = due if due == now else due - self._sample_interval
            self._sample(due)
            self._next_sample = due + self._sample_interval
        self._drain()

    def _control(self, now: datetime) -> None:
        try:
            self.driver.actuate(self._outputs(now), now)
        except DriverError as error:
            log.warning("%s: cannot apply outputs: %s", self.identity.device_id, error)

    def _outputs(self, now: datetime) -> Outputs:
        device_class = self.identity.device_class
        if device_class is DeviceClass.STREETLIGHT:
            elevation = solar_elevation(now, self.identity.latitude, self.identity.longitude)
            level = control.lamp_level(self.local, now, elevation, self._zone, self.autonomous)
            return {"lamp_level": level}
        if device_class is DeviceClass.SIGNAGE:
            ambient = float(self._last_reading.get("ambient_light", 0.0))
            brightness = control.sign_brightness(self.local, now, ambient, self.autonomous)
            return {
                "brightness_level": brightness,
                "message_id": float(self.local.message.message_id),
                "lit_fraction": self.local.message.lit_fraction,
            }
        temperature = self._last_reading.get("air_temperature")
        if temperature is None:
            return {}
        outdoor = float(self._last_reading.get("outdoor_temperature", math.nan))
        self.local, zone = control.zone_outputs(
            self.local, now, float(temperature), self.autonomous, outdoor
        )
        outputs = {
            "heating": float(zone.heating),
            "cooling": float(zone.cooling),
            "valve_position": zone.valve_position,
            "vents_open": float(zone.vents_open),
            "blinds_down": float(zone.blinds_down),
        }
        if zone.supply_temperature is not None:
            outputs["supply_temperature"] = zone.supply_temperature
        return outputs

    def _read(self, now: datetime) -> Reading | None:
        try:
            reading = self.driver.read(now)
        except DriverError as error:
            self.counters.read_failures += 1
            log.warning("%s: cannot read the device: %s", self.identity.device_id, error)
            return None
        self._last_reading = reading
        return reading

    def _sample(self, at: datetime) -> None:
        reading = self._read(at)
        if not reading:
            return
        values = {name: _wire_value(value) for name, value in reading.items()}
        self._batch.append(Sample(ts=at, values=values))
        self.counters.samples += 1
        if len(self._batch) >= self.settings.samples_per_message:
            self.flush()

    def flush(self) -> None:
        """Spool the samples batched so far as one telemetry message."""
        if not self._batch:
            return
        payload = TelemetryPayload(
            v=PROTOCOL_VERSION, seq=self.spool.next_sequence("telemetry"), samples=self._batch
        )
        self._batch = []
        self._spool(Channel.TELEMETRY, encode(payload))

    def expire_spool(self) -> int:
        """Drop spooled messages older than the spool keeps; they are counted and reported."""
        return self.spool.expire(self._clock())

    # ----------------------------------------------------------------- commands

    def _handle_command(self, raw: bytes) -> None:
        now = self._clock()
        try:
            command = _command_decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError) as error:  # nested past msgspec's depth
            self.counters.commands_refused += 1
            self._event("command_refused", Severity.WARNING, f"undecodable command: {error}", {})
            return
        if command.v != PROTOCOL_VERSION:
            self.counters.commands_refused += 1
            self._acknowledge(
                command.id,
                CommandOutcome.REJECTED,
                f"unsupported protocol version {command.v}; this agent speaks {PROTOCOL_VERSION}",
            )
            return
        previous = self._answered.get(command.id)
        if previous is not None:  # a redelivery: answer again, apply nothing
            self._spool(Channel.COMMAND_ACK, encode(previous))
            return
        checked = check_command(self.identity.device_class, command, now)
        if isinstance(checked, Refusal):
            self.counters.commands_refused += 1
            outcome = CommandOutcome(checked.outcome)
            self._acknowledge(command.id, outcome, checked.reason)
            return
        before = self.local
        self.local = control.apply_command(self.local, checked.params, now)
        try:
            self.driver.actuate(self._outputs(now), now)
        except DriverError as error:
            self.local = before
            self._acknowledge(command.id, CommandOutcome.FAILED, str(error))
            return
        self.counters.commands_applied += 1
        self._acknowledge(command.id, CommandOutcome.APPLIED, "")

    def _acknowledge(self, command_id: str, outcome: CommandOutcome, reason: str) -> None:
        ack = CommandAckPayload(
            v=PROTOCOL_VERSION, id=command_id, ts=self._clock(), outcome=outcome, reason=reason
        )
        self._answered[command_id] = ack
        while len(self._answered) > REMEMBERED_COMMANDS:
            self._answered.popitem(last=False)
        self._spool(Channel.COMMAND_ACK, encode(ack))

    # ----------------------------------------------------------------- stopping

    def stop(self) -> None:
        """Say goodbye (retained offline, reason shutdown) and close the session."""
        self.flush()
        self._stopped = True
        if self._session.connected:
            self.client.publish(
                self.identity.topic(Channel.STATE),
                self._state_payload(DeviceStatus.OFFLINE, "shutdown"),
                qos=1,
                retain=True,
            )
            self.client.disconnect()

    def go_dark(self) -> None:
        """Lose the link without a goodbye, as a cut cable would: the broker sends the last will.

        MQTT 5's "disconnect with will message" makes the broker behave exactly as if the
        connection had dropped, without waiting out the keepalive.
        """
        self._stopped = True
        if self._session.connected:
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))

    def resume(self) -> None:
        """Allow reconnecting after :meth:`go_dark`."""
        self._stopped = False
        self._session.next_attempt = 0.0


def _align(now: datetime, interval: timedelta) -> datetime:
    """The first multiple of ``interval`` since the epoch at or after ``now``."""
    seconds = interval.total_seconds()
    epoch = now.timestamp()
    return now + timedelta(seconds=math.ceil(epoch / seconds) * seconds - epoch)


def _wire_value(value: float | int | bool) -> float | int | bool:
    if isinstance(value, float):
        return round(value, 3)
    return value
