"""The session's acknowledgements: a wake-up the MQTT library cannot signal does not kill the
thread that acknowledges."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from runtime.mqtt_session import MqttSession, Received, SessionConfig


class WakeUpReset:
    """A paho client whose wake-up socket pair was reset under it: ``ack`` queues the PUBACK,
    then raises, as paho 2's ``_packet_queue`` does (its ``send`` on the socket pair)."""

    def __init__(self) -> None:
        self.acknowledged: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acknowledged.append(mid)
        if len(self.acknowledged) == 1:
            raise ConnectionResetError(104, "Connection reset by peer")


def test_an_acknowledgement_whose_wake_up_fails_leaves_the_others_going_out() -> None:
    session = MqttSession(
        SessionConfig("127.0.0.1", 1, "test-acks"), logger=logging.getLogger("test")
    )
    client = WakeUpReset()
    session.client = client  # type: ignore[assignment]
    now = datetime(2027, 1, 12, tzinfo=UTC)
    messages = [Received("sc/x", b"", now, mid, session.connection_number) for mid in (7, 8, 9)]
    session.acknowledge(messages)  # no exception reaches the caller's thread
    assert client.acknowledged == [7, 8, 9]
