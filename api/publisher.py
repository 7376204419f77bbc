"""Commands to devices over MQTT, for the API.

One paho-mqtt client with its own network thread (``loop_start``), MQTT 5 with a persistent
session like the control services' (``clean_start=False`` and a session expiry; client id
``ApiConfig.mqtt_client_id`` with the host and process): a QoS 1 command in flight when the
link drops is sent again on reconnection, unless it has expired (each command's message
carries its expiry). It connects in the background and keeps retrying, so the API starts
while the broker is down; :meth:`CommandPublisher.publish` says whether the broker accepted a
message (its PUBACK came) and refuses at once, queueing nothing, while disconnected.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from api.config import ApiConfig
from protocol.mqtt_account import apply_account

SESSION_EXPIRY_S: Final = 3_600
"""How long the broker keeps the API's session (and its messages in flight) while away."""
PUBLISH_TIMEOUT_S: Final = 5.0
"""How long a request waits for the broker to accept its commands."""
MAX_INFLIGHT: Final = 200
_log: Final = logging.getLogger("smartcity.api.publisher")


class CommandPublisher:
    """The API's MQTT session: publishes commands, QoS 1."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._connected = threading.Event()
        self._stopping = False
        self._client: mqtt.Client | None = None

    def start(self) -> None:
        """Connect (in the background: the API starts even while the broker is down)."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # One id per process: two API processes on a broker must not take over each
            # other's session (each would disconnect the other).
            client_id=f"{self.config.mqtt_client_id}-{socket.gethostname()}-{os.getpid()}",
            protocol=mqtt.MQTTv5,
        )
        apply_account(client, self.config.mqtt_account)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(
            self.config.mqtt_host,
            self.config.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        client.loop_start()  # its thread retries the first connection too
        self._client = client

    def stop(self) -> None:
        """Disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        client.disconnect()
        client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Whether the session is up within ``timeout_s``."""
        return self._connected.wait(timeout_s)

    def publish(
        self, topic: str, payload: bytes, expiry_s: int, timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> bool:
        """Publish one message QoS 1; whether the broker accepted it within ``timeout_s``."""
        return self.publish_many([(topic, payload, expiry_s)], timeout_s)[0]

    def publish_many(
        self, messages: Sequence[tuple[str, bytes, int]], timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> list[bool]:
        """Publish each (topic, payload, expiry [s]) QoS 1, then wait (``timeout_s`` in all)
        for the broker to accept them; for each, whether it did. While disconnected nothing is
        sent. A message not yet accepted may still go out later, but never after its expiry
        (MQTT 5 message expiry: the broker drops it then)."""
        client = self._client
        if client is None or not self.connected:
            return [False] * len(messages)
        sent = [
            client.publish(topic, payload, qos=1, properties=_expiring(expiry_s))
            for topic, payload, expiry_s in messages
        ]
        deadline = time.monotonic() + timeout_s
        return [_accepted(info, deadline) for info in sent]

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            _log.error("broker refused the API's connection", extra={"reason": str(reason_code)})
            return
        _log.info("connected to the broker", extra={"session_present": flags.session_present})
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if self._stopping:
            _log.info("disconnected from the broker")
        else:
            _log.warning("lost the broker; reconnecting", extra={"reason": str(reason_code)})


def _expiring(seconds: int) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = seconds
    return properties


def _accepted(info: mqtt.MQTTMessageInfo, deadline: float) -> bool:
    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
        return False
    try:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    except (ValueError, RuntimeError):
        return False
    return info.is_published()
