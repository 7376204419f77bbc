"""The MQTT session every platform service holds: one implementation for ingest, the rules
engine, the control services and the API.

MQTT 5 with a persistent session (``clean_start=False`` and a session expiry), so the broker
keeps the service's subscriptions and queues its messages while it restarts; paho's network
thread (``loop_start``) reconnects by itself. Received messages are acknowledged only when the
service says so (paho's manual acknowledgement): a service acknowledges a message once what it
made of it is committed, or once it set the message aside, so a crash between the two has the
broker deliver it again. A packet id is only valid on the connection it came by: an
acknowledgement meant for an earlier connection is dropped (the broker redelivers that message
on the new one, with a new id).

Acknowledgements are queued by whichever thread commits and sent by the network thread as it
handles the next message (it holds the interpreter lock anyway), or by the committing thread
after a short hand-over when the network thread is idle.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from threading import Event
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from protocol.mqtt_account import MqttAccount, apply_account

SESSION_EXPIRY_S: Final = 7 * 24 * 3600
"""By default the broker keeps a service's subscriptions and queued messages this long."""
PUBLISH_TIMEOUT_S: Final = 5.0
"""How long :meth:`MqttSession.publish_many` waits by default for the broker to accept."""


def utc_now() -> datetime:
    """The wall clock (a service's default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Where a service connects, as whom, and how much the broker may send it at once."""

    host: str
    port: int
    client_id: str
    """The persistent session's name: two processes must not share one."""
    account: MqttAccount | None = None
    """The service's broker account (``svc.<name>``); anonymous if None."""
    session_expiry_s: int = SESSION_EXPIRY_S
    receive_maximum: int | None = None
    """MQTT 5 Receive Maximum: messages the broker may have in flight to us unacknowledged;
    None leaves the broker's default."""
    max_inflight: int | None = None
    """Our QoS 1 publications awaiting the broker's PUBACK at once; None: paho's default."""
    keepalive_s: int = 30


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the session hands it to its service."""

    topic: str
    payload: bytes
    received_at: datetime
    mid: int
    """The packet id to acknowledge (0 for QoS 0: nothing to acknowledge)."""
    connection: int
    """Which connection of the session it came by (packet ids are only valid on it)."""


Subscription = tuple[str, SubscribeOptions]


class Inbox:
    """Messages received and not yet handled, for a service that handles them in its own
    thread: paho's network thread puts, the service takes; ``arrived`` wakes the service (and
    anything else that wants it to look again may set it)."""

    def __init__(self) -> None:
        self.messages: deque[Received] = deque()
        self.arrived = Event()

    def put(self, message: Received) -> None:
        self.messages.append(message)
        self.arrived.set()

    def take(self, limit: int) -> list[Received]:
        """Up to ``limit`` messages, oldest first."""
        messages = self.messages
        return [messages.popleft() for _ in range(min(limit, len(messages)))]


class MqttSession:
    """One service's MQTT session: subscribe, receive, acknowledge after commit, publish."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        logger: logging.Logger,
        subscriptions: Sequence[Subscription] = (),
        on_message: Callable[[Received], None] | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
        on_subscribed: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self._log = logger
        self._subscriptions = list(subscriptions)
        self._on_message_callback = on_message
        self._on_connection_change = on_connection_change
        self._on_subscribed = on_subscribed
        self._clock = clock
        self.connected = Event()
        self.subscribed = Event()
        """Set once the broker granted every subscription on the current connection."""
        self.connection_number = 0
        self._to_acknowledge: deque[tuple[int, int]] = deque()
        self._stopping = False
        self._started = False
        self.client = self._make_client()

    # ------------------------------------------------------------------------ lifecycle

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        apply_account(client, self.config.account)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        if self.config.max_inflight is not None:
            client.max_inflight_messages_set(self.config.max_inflight)
        return client

    def start(self) -> None:
        """Connect in the background: the service starts even while the broker is down, and
        the network thread keeps retrying."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.config.session_expiry_s
        if self.config.receive_maximum is not None:
            properties.ReceiveMaximum = self.config.receive_maximum
        self.client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self.client.loop_start()
        self._started = True

    def stop(self) -> None:
        """Disconnect (the broker keeps the session and queues for it)."""
        if not self._started:
            return
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        # Stopped while (re)connecting, paho keeps the half-open socket: close it, or the
        # collector finds it open later (a ResourceWarning in whatever runs then).
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        # Its loop's wake-up socket pair too: paho closes it only when the client is
        # collected, and a client in a reference cycle (its callbacks are ours) may be
        # collected after its sockets, which then warn.
        self.client._reset_sockets(sockpair_only=True)  # paho has no public way
        self._started = False
        self.connected.clear()

    # ------------------------------------------------------------------------ callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._log.error("broker refused the connection", extra={"reason": str(reason_code)})
            return
        self.connection_number += 1
        self.subscribed.clear()
        self._log.info(
            "connected to broker",
            extra={"session_present": flags.session_present, "host": self.config.host},
        )
        self.connected.set()
        if self._on_connection_change is not None:
            self._on_connection_change(True)
        if self._subscriptions:
            client.subscribe(self._subscriptions)
        else:
            self._subscribed_now()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            self._log.error("broker refused subscriptions", extra={"reasons": refused})
            return
        self._subscribed_now()

    def _subscribed_now(self) -> None:
        self.subscribed.set()
        if self._on_subscribed is not None:
            self._on_subscribed()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if self._on_connection_change is not None:
            self._on_connection_change(False)
        if self._stopping:
            self._log.info("disconnected from broker")
        else:
            self._log.warning("lost the broker; reconnecting", extra={"reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._on_message_callback is not None:
            received = Received(
                message._topic.decode("utf-8", errors="replace"),
                bytes(message.payload),
                self._clock(),
                message.mid if message.qos else 0,
                self.connection_number,
            )
            self._on_message_callback(received)
        if self._to_acknowledge:
            self.send_acknowledgements()

    # ------------------------------------------------------------------------ acknowledging

    def acknowledge(self, messages: Iterable[Received], hand_over_s: float = 0.0) -> None:
        """Acknowledge ``messages`` (committed, or set aside). The network thread sends them
        with its next message; after ``hand_over_s`` this thread sends what is left (when the
        broker waits for these very acknowledgements, nothing else comes)."""
        self._to_acknowledge.extend(
            (message.mid, message.connection) for message in messages if message.mid
        )
        if hand_over_s:
            time.sleep(hand_over_s)
        self.send_acknowledgements()

    def send_acknowledgements(self) -> None:
        """PUBACK every acknowledgement waiting; either thread may call it, each packet id is
        taken from the queue by exactly one of them."""
        queue = self._to_acknowledge
        current = self.connection_number
        while True:
            try:
                mid, connection = queue.popleft()
            except IndexError:
                return
            if connection == current:
                try:
                    self.client.ack(mid, 1)
                except OSError as error:
                    # paho queued the PUBACK, then could not wake its network thread (the
                    # wake-up socket pair was reset by a reconnection or a stop): the network
                    # thread sends it on its next turn, or the broker delivers the message
                    # again on the next connection, which is stored once all the same.
                    self._log.debug("acknowledgement %s not signalled: %s", mid, error)

    # ------------------------------------------------------------------------ publishing

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, expiry_s: int | None = None
    ) -> mqtt.MQTTMessageInfo:
        """Publish QoS 1 without waiting; queued by paho while disconnected (and sent again
        on reconnection, unless it expired: MQTT 5 message expiry)."""
        properties = None
        if expiry_s is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = expiry_s
        return self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)

    def publish_many(
        self, messages: Sequence[tuple[str, bytes, int]], timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> list[bool]:
        """Publish each (topic, payload, expiry [s]) QoS 1, then wait (``timeout_s`` in all)
        for the broker to accept them; for each, whether it did. While disconnected nothing is
        sent. A message not yet accepted may still go out later, but never after its expiry."""
        if not self.connected.is_set():
            return [False] * len(messages)
        sent = [
            self.publish(topic, payload, expiry_s=expiry) for topic, payload, expiry in messages
        ]
        deadline = time.monotonic() + timeout_s
        return [_accepted(info, deadline) for info in sent]


def _accepted(info: mqtt.MQTTMessageInfo, deadline: float) -> bool:
    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
        return False
    try:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    except (ValueError, RuntimeError):
        return False
    return info.is_published()
