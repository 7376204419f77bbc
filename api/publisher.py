"""Commands to devices over MQTT, for the API: the platform's MQTT session
(:class:`runtime.mqtt_session.MqttSession`) with no subscription.

A persistent session like the control services' (client id ``ApiConfig.mqtt_client_id`` with
the host and process): a QoS 1 command in flight when the link drops is sent again on
reconnection, unless it has expired (each command's message carries its expiry). It connects
in the background and keeps retrying, so the API starts while the broker is down;
:meth:`CommandPublisher.publish_many` says whether the broker accepted each message (its
PUBACK came) and refuses at once, queueing nothing, while disconnected.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Final

from api.config import ApiConfig
from runtime.mqtt_session import PUBLISH_TIMEOUT_S, MqttSession, SessionConfig

SESSION_EXPIRY_S: Final = 3_600
"""How long the broker keeps the API's session (and its messages in flight) while away."""
MAX_INFLIGHT: Final = 200
_log: Final = logging.getLogger("smartcity.api.publisher")


class CommandPublisher:
    """The API's MQTT session: publishes commands, QoS 1."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._session = MqttSession(
            SessionConfig(
                config.mqtt_host,
                config.mqtt_port,
                # One id per process: two API processes on a broker must not take over each
                # other's session (each would disconnect the other).
                f"{config.mqtt_client_id}-{socket.gethostname()}-{os.getpid()}",
                config.mqtt_account,
                session_expiry_s=SESSION_EXPIRY_S,
                max_inflight=MAX_INFLIGHT,
            ),
            logger=_log,
        )

    def start(self) -> None:
        """Connect (in the background: the API starts even while the broker is down)."""
        self._session.start()

    def stop(self) -> None:
        self._session.stop()

    @property
    def connected(self) -> bool:
        return self._session.connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Whether the session is up within ``timeout_s``."""
        return self._session.connected.wait(timeout_s)

    def publish_many(
        self, messages: Sequence[tuple[str, bytes, int]], timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> list[bool]:
        """Publish each (topic, payload, expiry [s]) QoS 1; for each, whether the broker
        accepted it within ``timeout_s`` (see :meth:`MqttSession.publish_many`)."""
        return self._session.publish_many(messages, timeout_s)
