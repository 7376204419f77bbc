"""One typed settings model for every service, built once in ``main()`` and passed down.

Values come from environment variables prefixed ``SMARTCITY_`` (``DATABASE_URL`` also works
unprefixed, as most tools expect) and from an optional ``.env`` file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, PositiveFloat, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker_config import Autosave, BrokerConfigError
from broker_config.accounts import Service, read_password, service_password_file
from ingest.config import DEFAULT_MAX_HELD_BYTES
from protocol.mqtt_account import MqttAccount


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SMARTCITY_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SMARTCITY_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL connection string; unset: `up` starts a local server",
    )

    @field_validator("database_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    mqtt_host: str = "127.0.0.1"
    mqtt_port: PositiveInt = 1883
    mqtt_accounts_dir: Path | None = None
    """The folder of the services' broker passwords, one file per service (``ingest``,
    ``rules``, ``control``, ``api``), as ``smartcity broker`` and ``up`` write them; unset:
    services connect anonymously (only an open test broker lets them)."""
    device_broker_host: str | None = None
    """The name or address devices use to reach the broker (the first ``--host`` of
    ``smartcity broker``); unset: ``mqtt_host``. The API gives it with a device's
    credentials."""
    device_broker_port: int = Field(default=18831, ge=0, le=65535)
    """The broker's listener for devices with passwords (``smartcity broker --device-port``,
    loopback); 0: none."""
    device_broker_tls_port: int = Field(default=18883, ge=0, le=65535)
    """The broker's TLS listener for devices with certificates (``smartcity broker
    --tls-port``); 0: none."""
    state_dir: Path = Path(".smartcity")
    """Where `up` and `broker` keep the broker's and the local database's files."""
    broker_autosave: str = "interval=2"
    """When the broker `up` and `broker` start saves its persistence file: ``interval=N``
    (every N + 1 s) or ``changes=N`` (after N changes). A broker crash loses what it
    acknowledged since its last save while ingest is away or behind (docs/chaos.md)."""

    @field_validator("broker_autosave")
    @classmethod
    def _autosave_parses(cls, value: str) -> str:
        try:
            return Autosave.parse(value).label
        except BrokerConfigError as error:
            raise ValueError(str(error)) from error

    @property
    def autosave(self) -> Autosave:
        return Autosave.parse(self.broker_autosave)

    ingest_client_id: str = "smartcity-ingest"
    ingest_batch_max_messages: PositiveInt = 2_000
    ingest_batch_max_seconds: PositiveFloat = 0.5
    ingest_receive_maximum: PositiveInt = 4_000
    """Messages the broker may have in flight to ingest, unacknowledged."""
    ingest_max_held_bytes: PositiveInt = DEFAULT_MAX_HELD_BYTES
    """Payload bytes ingest holds before it stops reading from the broker: its memory bound."""
    ingest_metrics_port: int = Field(default=9108, ge=0, le=65535)
    """Prometheus /metrics port; 0 turns the endpoint off."""
    ingest_registry_refresh_s: PositiveFloat = 30.0
    maintenance_interval_s: PositiveFloat = 60.0

    api_host: str = "127.0.0.1"
    """Where `smartcity api` listens; 0.0.0.0 to serve the crews' phones on the city network."""
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_session_hours: PositiveFloat = 12.0
    """How long a console log-in lasts: one working shift."""
    api_pool_size: PositiveInt = 8
    """Database connections the API keeps open."""
    api_cors_origins: tuple[str, ...] = ()
    """Web origins whose pages may call the API, as JSON (``'["https://grafana.sefrou.ma"]'``);
    none by default: the console, served by the API itself, needs none."""

    def mqtt_account(self, service: Service) -> MqttAccount | None:
        """``service``'s broker account, read from its password file; None if no folder is set.

        Raises :class:`broker_config.accounts.AccountError` when the file cannot be read."""
        if self.mqtt_accounts_dir is None:
            return None
        password = read_password(service_password_file(self.mqtt_accounts_dir, service))
        return MqttAccount(service.user_name, password)
