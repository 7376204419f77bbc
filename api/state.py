"""What the application shares between requests, built in its lifespan (``app.state.api``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg_pool import ConnectionPool

from api.config import ApiConfig
from api.throttle import LoginThrottle, RateLimit

if TYPE_CHECKING:
    from api.jobs import JobRunner
    from api.publisher import CommandPublisher


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
    reports: RateLimit = field(default_factory=RateLimit)
    """Citizens' reports by client address (Open311 ``POST requests``)."""
