"""How to build the API application: given by ``smartcity api``, ``up`` or a test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from protocol.mqtt_account import MqttAccount


@dataclass(frozen=True, slots=True)
class DeviceBroker:
    """Where devices reach the broker: what the API answers with a device's credentials."""

    host: str = "127.0.0.1"
    password_port: int | None = 18831
    """The listener taking a device's password (``smartcity broker --device-port``); None:
    none is configured."""
    tls_port: int | None = 18883
    """The TLS listener taking a device's certificate (``--tls-port``); None: none."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """How to build the application: given by ``smartcity api``, ``up`` or a test."""

    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_account: MqttAccount | None = None
    """The service's broker account (``svc.<name>``); anonymous if None."""
    device_broker: DeviceBroker = field(default_factory=DeviceBroker)
    """Where devices connect: never the services' listener above, which refuses them."""
    pool_size: int = 8
    session_lifetime: timedelta = timedelta(hours=12)
    rules_file: Path | None = None
    """The rule file the engine runs when no rule set is active in the database."""
    clock: Callable[[], datetime] | None = None
    """The time for tests; None: the wall clock."""
    mqtt_client_id: str = "smartcity-api"
    cors_origins: tuple[str, ...] = ()
    """Web origins allowed to call the API from a browser; none (the default): only pages the
    API serves itself, such as the console."""
