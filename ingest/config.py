"""Settings of one ingest service, handed to both of its processes (so: picklable)."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.decoding import DEFAULT_WINDOW, AcceptanceWindow


@dataclass(frozen=True, slots=True)
class IngestConfig:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    client_id: str = "smartcity-ingest"
    share_group: str | None = None
    """Subscribe through ``$share/<group>/`` so several ingest processes split the stream."""
    batch_max_messages: int = 2_000
    batch_max_seconds: float = 0.5
    receive_maximum: int = 10_000
    """Messages the broker may have in flight to us unacknowledged (MQTT 5 Receive Maximum)."""
    max_held_bytes: int = 256 * 1024 * 1024
    """Payload bytes received and not yet stored beyond which we stop reading from the broker
    (TCP backpressure) until the storing process catches up: the memory bound for messages
    of any size."""
    registry_refresh_s: float = 30.0
    maintenance_interval_s: float = 60.0
    window: AcceptanceWindow = DEFAULT_WINDOW
    max_backoff_s: float = 15.0
    log_level: str | None = None
    """Set: the storing process logs JSON lines at this level, like the service."""
