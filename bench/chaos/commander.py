"""Commands during a chaos run, sent the way the control services send them."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bench.chaos.config import COMMAND_SOURCE, COMMANDER_ID
from bench.chaos.fleet import ChaosFleet
from control.commanding import Sent, action_of
from control.service import command_payload, insert_commands
from protocol.commands import HvacMode, SetBrightness, SetDimming, SetHvac
from protocol.payloads import CommandAckPayload
from protocol.sites import Device
from protocol.topics import Channel, DeviceClass, DeviceTopic, subscription


@dataclass(slots=True)
class _Command:
    sent: Sent
    topic: str
    phase: str
    publishes: int = 0
    last_published: float = 0.0
    recorded: bool = False


class Commander:
    """Sends commands as the control services do: recorded in ``commands``, then published
    QoS 1 on a persistent session (while the database is away, once it is back), sent again
    (same id) until answered. Each command is also published a second time at once, as a
    redelivery would bring it."""

    def __init__(
        self, port: int, database_url: str, fleet: ChaosFleet, resend_after_s: float
    ) -> None:
        self.database_url = database_url
        self.fleet = fleet
        self.resend_after_s = resend_after_s
        self.commands: dict[str, _Command] = {}
        self.answers: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._db: psycopg.Connection | None = None
        self._decoder = msgspec.json.Decoder(CommandAckPayload)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=COMMANDER_ID, protocol=mqtt.MQTTv5
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3_600
        self._client.connect_async(
            "127.0.0.1", port, keepalive=30, clean_start=False, properties=properties
        )
        self._client.loop_start()

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if not reason.is_failure:
            client.subscribe(subscription(Channel.COMMAND_ACK), qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: Any) -> None:
        try:
            ack = self._decoder.decode(message.payload)
        except msgspec.DecodeError:
            return
        with self._lock:
            self.answers[ack.id].append((ack.outcome.value, ack.ts))

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def send(self, devices: Sequence[Device], site: str, phase: str, rng: random.Random) -> int:
        now = self.fleet.now
        for device in devices:
            number = len(self.commands) + 1
            params: SetDimming | SetBrightness | SetHvac
            if device.device_class is DeviceClass.STREETLIGHT:
                params = SetDimming(level=float(rng.randint(10, 15)), hold_s=600)
            elif device.device_class is DeviceClass.SIGNAGE:
                params = SetBrightness(level=float(rng.randint(40, 60)), hold_s=600)
            else:
                params = SetHvac(
                    mode=HvacMode.AUTO, heating_setpoint=19.0, cooling_setpoint=27.0, hold_s=600
                )
            sent = Sent(
                f"chaos-{number:04d}",
                device.id,
                action_of(params),
                params,
                issued_at=now,
                expires_at=now + timedelta(hours=12),
                last_sent_at=now,
                why=f"chaos: {phase}",
            )
            topic = str(DeviceTopic(site, device.device_class, device.id, Channel.COMMAND))
            command = _Command(sent, topic, phase)
            self.commands[sent.id] = command
        self._record()
        self._send_recorded()
        return len(devices)

    def _send_recorded(self) -> None:
        """Publish the recorded commands not yet published: a command goes out only once it is
        in ``commands``, as the control services and the API send them (ingest refuses the
        acknowledgement of a command it does not find there)."""
        for command in self.commands.values():
            if command.recorded and command.publishes == 0:
                self._publish(command)
                self._publish(command)  # the same again: the agent must not apply it twice

    def _publish(self, command: _Command) -> None:
        self._client.publish(command.topic, command_payload(command.sent), qos=1)
        command.publishes += 1
        command.last_published = time.monotonic()

    def _record(self) -> None:
        """Record the commands not yet in ``commands`` (later, while the database is away)."""
        waiting = [c for c in self.commands.values() if not c.recorded]
        if not waiting:
            return
        try:
            if self._db is None or self._db.closed or self._db.broken:
                self._db = psycopg.connect(self.database_url, connect_timeout=2)
            insert_commands(self._db, [c.sent for c in waiting], COMMAND_SOURCE)
            self._db.commit()
        except psycopg.Error:
            if self._db is not None:
                self._db.close()
            self._db = None
            return
        for command in waiting:
            command.recorded = True

    def service(self) -> None:
        """Record what could not be recorded (the database away) and send it; send again
        what is unanswered."""
        self._record()
        self._send_recorded()
        wall = time.monotonic()
        with self._lock:
            answered = set(self.answers)
        for command in self.commands.values():
            due = wall - command.last_published >= self.resend_after_s
            sent_before = command.publishes > 0
            if sent_before and command.sent.id not in answered and due and self.connected:
                self._publish(command)

    def unanswered(self) -> list[str]:
        with self._lock:
            return [i for i in self.commands if i not in self.answers]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        if self._db is not None:
            self._db.close()
