"""Settings of one ingest service, handed to both of its processes (so: picklable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol.decoding import DEFAULT_WINDOW, AcceptanceWindow
from protocol.mqtt_account import MqttAccount
from protocol.payloads import MAX_PAYLOAD_BYTES

DEFAULT_MAX_HELD_BYTES: Final = 1024 * 1024 * 1024
"""Payload bytes ingest holds, received and not yet stored, by default: its memory bound."""


@dataclass(frozen=True, slots=True)
class IngestConfig:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_account: MqttAccount | None = None
    """The service's broker account (``svc.<name>``); anonymous if None."""
    client_id: str = "smartcity-ingest"
    share_group: str | None = None
    """Subscribe through ``$share/<group>/`` so several ingest processes split the stream."""
    batch_max_messages: int = 2_000
    batch_max_seconds: float = 0.5
    receive_maximum: int = 4_000
    """Messages the broker may have in flight to us unacknowledged (MQTT 5 Receive Maximum)."""
    max_held_bytes: int = DEFAULT_MAX_HELD_BYTES
    """Payload bytes received and not yet stored: the memory bound. The Receive Maximum asked
    of the broker is capped so that this many maximum-size payloads fit; past it (redeliveries
    after a reconnection) ingest stops reading until the storing process catches up."""

    @property
    def effective_receive_maximum(self) -> int:
        return max(1, min(self.receive_maximum, self.max_held_bytes // MAX_PAYLOAD_BYTES))

    registry_refresh_s: float = 30.0
    maintenance_interval_s: float = 60.0
    window: AcceptanceWindow = DEFAULT_WINDOW
    max_backoff_s: float = 15.0
    log_level: str | None = None
    """Set: the storing process logs at this level, like the service."""
    log_json: bool = True
    statement_timeout_s: float = 120.0
    """A database statement running longer is cancelled and the batch retried."""
    watchdog_s: float = 300.0
    """A storing process silent this long while batches wait is presumed hung and replaced
    (it reports every retry, so a database outage alone never trips this)."""
