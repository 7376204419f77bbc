"""What the application shares between requests, built in its lifespan (``app.state.api``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg_pool import ConnectionPool

from api.throttle import LoginThrottle
from protocol.mqtt_account import MqttAccount

if TYPE_CHECKING:
    from api.jobs import JobRunner
    from api.publisher import CommandPublisher


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """How to build the application: given by ``smartcity api``, ``up`` or a test."""

    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_account: MqttAccount | None = None
    """The service's broker account (``svc.<name>``); anonymous if None."""
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


@dataclass(slots=True)
class ApiState:
    config: ApiConfig
    pool: ConnectionPool[Any]
    clock: Callable[[], datetime] | None = None
    publisher: CommandPublisher | None = None
    """Sends commands to devices over MQTT (started in the lifespan)."""
    jobs: JobRunner | None = None
    """Runs backtests and what-ifs in the background (started in the lifespan)."""
    logins: LoginThrottle = field(default_factory=LoginThrottle)
    """Failed log-ins by user name and address (:mod:`api.throttle`)."""
