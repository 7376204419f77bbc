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

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
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
from edge_agents.spool import Spool
from protocol.sites import TimeZoneName
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65_535)
    username: str | None = None
    password_file: Path | None = None
    """A file holding the password, so the configuration itself holds no secret."""
    keepalive_s: int = Field(default=60, ge=5, le=3_600)


class SpoolSection(_Strict):
    path: Path
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=4_096)
    max_age_days: float = Field(default=7, gt=0, le=90)


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
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AgentConfigError(f"{path}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise AgentConfigError(f"{path}: not valid YAML: {error}") from error
    try:
        return AgentConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem['loc']) or '(top)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise AgentConfigError(f"{path}: {problems}") from None


def build_agent(config: AgentConfig, driver: Driver) -> Agent:
    password = None
    if config.broker.password_file is not None:
        try:
            password = config.broker.password_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise AgentConfigError(
                f"cannot read the broker password file {config.broker.password_file}: "
                f"{error.strerror}"
            ) from error
    settings = AgentSettings(
        broker_host=config.broker.host,
        broker_port=config.broker.port,
        username=config.broker.username,
        password=password,
        keepalive_s=config.broker.keepalive_s,
        sample_interval_s=config.sampling.interval_s,
        samples_per_message=config.sampling.samples_per_message,
    )
    spool = Spool(
        config.spool.path, config.spool.max_bytes, timedelta(days=config.spool.max_age_days)
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
