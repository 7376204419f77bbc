"""An agent's configuration file, and running one agent on the wall clock.

Example (``agent.yaml``)::

    site: sefrou
    device_id: sl-menzel-n-001
    device_class: streetlight
    latitude: 33.8269
    longitude: -4.8237
    timezone: Africa/Casablanca
    broker: {host: 10.0.0.2, port: 1883, username: sl-menzel-n-001, password_file: /etc/sc/pw}
    spool: {path: /var/lib/smartcity-agent/spool.sqlite, max_bytes: 16777216, max_age_days: 7}
    sampling: {samples_per_message: 1}
    driver: {kind: modbus, host: 192.168.1.50, port: 502, unit: 1}

``driver.kind`` is ``modbus`` (an EPEVER-style charge controller, see docs/modbus.md) or
``simulated`` (the device simulated from a site file: ``site_file`` and ``seed``).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from edge_agents.agent import Agent, AgentIdentity, AgentSettings
from edge_agents.drivers import Driver
from edge_agents.errors import AgentConfigError
from edge_agents.network import NetworkLoop
from edge_agents.spool import DEFAULT_REPLAY_WINDOW, Spool
from protocol.mqtt_account import MqttAccount, TlsFiles
from protocol.sites import TimeZoneName
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass
from protocol.yamlfile import read_yaml

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65_535)
    username: str | None = None
    password_file: Path | None = None
    """A file holding the password, so the configuration itself holds no secret."""
    ca_file: Path | None = None
    """Set: connect over TLS, trusting the broker's certificate only if this CA signed it."""
    certificate_file: Path | None = None
    """The device's own certificate (the devices' listener requires one) ..."""
    key_file: Path | None = None
    """... and its private key."""
    keepalive_s: int = Field(default=60, ge=5, le=3_600)

    @model_validator(mode="after")
    def _complete(self) -> BrokerSection:
        if (self.password_file is None) != (self.username is None):
            raise ValueError("give both username and password_file, or neither")
        if (self.certificate_file is None) != (self.key_file is None):
            raise ValueError("give both certificate_file and key_file, or neither")
        if self.certificate_file is not None and self.ca_file is None:
            raise ValueError("a client certificate needs ca_file (TLS) as well")
        return self


class SpoolSection(_Strict):
    path: Path
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=4_096)
    max_age_days: float = Field(default=7, gt=0, le=90)
    replay_window_s: float = Field(default=DEFAULT_REPLAY_WINDOW.total_seconds(), ge=0, le=3_600)
    """What the broker acknowledged this long before a disconnection is sent again after it;
    at least the time between the starts of two broker saves (``autosave_interval`` + 1 s with
    Mosquitto 2.0; docs/agent.md)."""


class SamplingSection(_Strict):
    interval_s: int | None = Field(default=None, ge=1, le=86_400)
    samples_per_message: int = Field(default=1, ge=1, le=1_000)


class ModbusDriverSection(_Strict):
    kind: Literal["modbus"]
    host: str
    port: int = Field(default=502, ge=1, le=65_535)
    unit: int = Field(default=1, ge=1, le=247)
    timeout_s: float = Field(default=2.0, gt=0, le=60)


class SimulatedDriverSection(_Strict):
    kind: Literal["simulated"]
    site_file: Path
    seed: int = 1


class AgentConfig(_Strict):
    site: Identifier
    device_id: Identifier
    device_class: DeviceClass
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    timezone: TimeZoneName
    broker: BrokerSection = BrokerSection()
    spool: SpoolSection
    sampling: SamplingSection = SamplingSection()
    driver: ModbusDriverSection | SimulatedDriverSection = Field(discriminator="kind")

    @model_validator(mode="after")
    def _driver_fits_the_class(self) -> AgentConfig:
        if isinstance(self.driver, ModbusDriverSection) and (
            self.device_class is not DeviceClass.STREETLIGHT
        ):
            raise ValueError("the modbus driver reads a solar charge controller: streetlights only")
        if self.broker.username is not None and self.broker.username != self.device_id:
            raise ValueError(
                f"broker.username {self.broker.username!r} must be the device id "
                f"{self.device_id!r}: the broker lets an account publish only as its own device"
            )
        return self

    @property
    def identity(self) -> AgentIdentity:
        return AgentIdentity(
            self.site,
            self.device_class,
            self.device_id,
            self.latitude,
            self.longitude,
            self.timezone,
        )


def load_agent_config(path: Path) -> AgentConfig:
    """Read an agent configuration; raise :class:`AgentConfigError` naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AgentConfigError(f"{path}: cannot read: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise AgentConfigError(f"{path}: cannot read: not UTF-8 text ({error.reason})") from error
    # read_yaml, not yaml.safe_load: PyYAML's Python parser recurses (a RecursionError on a
    # deeply nested file) and its constructor raises ValueError (!!int "", a bad date).
    _, document = read_yaml(text, str(path), AgentConfigError)
    try:
        return AgentConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem['loc']) or '(top)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise AgentConfigError(f"{path}: {problems}") from None


def _account(broker: BrokerSection, device_id: str) -> MqttAccount | None:
    """The device's broker account: its password (password listeners) and its TLS files
    (the devices' TLS listener takes the certificate's name as the account). Every file is
    read here, so a bad one is a configuration error, not a failure at the first connection."""
    password = _password(broker.password_file) if broker.password_file is not None else None
    if broker.ca_file is None:
        return None if password is None else MqttAccount(device_id, password)
    tls = TlsFiles(broker.ca_file, broker.certificate_file, broker.key_file)
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(broker.ca_file))
        if broker.certificate_file is not None and broker.key_file is not None:
            context.load_cert_chain(str(broker.certificate_file), str(broker.key_file))
    except (OSError, ValueError, ssl.SSLError) as error:
        files = ", ".join(
            str(path) for path in (tls.ca_file, tls.certificate_file, tls.key_file) if path
        )
        raise AgentConfigError(f"broker TLS files ({files}) cannot be used: {error}") from error
    return MqttAccount(device_id, password, tls)


def _password(path: Path) -> str:
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise AgentConfigError(
            f"cannot read the broker password file {path}: {error.strerror}"
        ) from error
    except ValueError as error:  # a NUL in the path, or a file that is not UTF-8 text
        raise AgentConfigError(f"cannot read the broker password file {path}: {error}") from error
    if not password:
        raise AgentConfigError(f"the broker password file {path} is empty")
    return password


def build_agent(config: AgentConfig, driver: Driver) -> Agent:
    settings = AgentSettings(
        broker_host=config.broker.host,
        broker_port=config.broker.port,
        account=_account(config.broker, config.device_id),
        keepalive_s=config.broker.keepalive_s,
        sample_interval_s=config.sampling.interval_s,
        samples_per_message=config.sampling.samples_per_message,
    )
    spool = Spool(
        config.spool.path,
        config.spool.max_bytes,
        timedelta(days=config.spool.max_age_days),
        timedelta(seconds=config.spool.replay_window_s),
    )
    return Agent(config.identity, settings, driver, spool)


def run_agent(
    agent: Agent,
    stop: threading.Event,
    *,
    before_tick: Callable[[datetime], object] | None = None,
    tick_s: float = 1.0,
) -> None:
    """Run one agent on the wall clock until ``stop`` is set; say goodbye when stopping.

    before_tick: called with the time before each tick (a simulated device advances to it).
    """
    network = NetworkLoop()
    network.attach(agent.client)
    next_tick = time.monotonic()
    next_expiry = time.monotonic()
    try:
        while not stop.is_set():
            agent.maintain_connection()
            network.poll(max(0.0, min(0.2, next_tick - time.monotonic())))
            if time.monotonic() >= next_tick:
                now = datetime.now(UTC)
                if before_tick is not None:
                    before_tick(now)
                agent.tick(now)
                next_tick += tick_s
            if time.monotonic() >= next_expiry:
                agent.expire_spool()
                next_expiry += 3_600
    finally:
        agent.stop()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and agent.client.socket() is not None:
            network.poll(0.05)
        agent.spool.close()
        network.close()
