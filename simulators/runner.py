"""The fleet runner: every simulated device as its own edge agent and MQTT client.

Each device gets a real :class:`edge_agents.agent.Agent` (its own client id, session, spool,
birth and last will) driving a :class:`simulators.city.SimulatedDriver`. One thread steps the
city on its grid, ticks the agents at every grid instant and serves all their sockets.

Clock modes:

- real time (``speed`` 1): the city follows the wall clock;
- accelerated (``speed`` N): simulated time runs N times faster, through the real MQTT path.
  The platform refuses samples from the future, so an accelerated run starts in the past
  and, having caught up with the present, carries on in real time.

Communication and power faults act here, on the agents: a link loss cuts the session
(the broker sends the last will) while the agent keeps sampling into its spool; a power loss
stops the agent altogether, and it boots afresh when power returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from edge_agents.agent import Agent, AgentIdentity, AgentSettings
from edge_agents.network import NetworkLoop
from edge_agents.spool import Spool
from protocol.faults import FaultType
from protocol.mqtt_account import MqttAccount
from simulators.city import SimulatedCity

log = logging.getLogger("smartcity.simulate")

CONNECTS_PER_POLL: Final = 100
"""New connections opened per network poll, so thousands of devices start without a storm."""
SPOOL_MAX_BYTES: Final = 8 * 1024 * 1024
SPOOL_MAX_AGE: Final = timedelta(days=7)


class SimulationClock:
    """Simulated time: ``start`` at creation, running ``speed`` times the wall clock.

    With a speed above 1 it never runs ahead of the present: once caught up it follows it.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._started = time.monotonic()

    def now(self) -> datetime:
        simulated = self.start + timedelta(seconds=(time.monotonic() - self._started) * self.speed)
        return min(simulated, datetime.now(UTC)) if self.speed > 1 else simulated


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    broker_host: str
    broker_port: int
    spool_dir: Path
    samples_per_message: int = 1
    keepalive_s: int = 60
    spool_max_bytes: int = SPOOL_MAX_BYTES
    spool_max_age: timedelta = SPOOL_MAX_AGE
    autonomy_after_s: int = 900
    accounts: Mapping[str, MqttAccount] = field(default_factory=dict)
    """Each device's broker account by device id; a device without one connects anonymously
    (only an open test broker lets it in)."""


@dataclass(slots=True)
class RunnerCounters:
    grid_steps: int = 0
    links_cut: int = 0
    power_cuts: int = 0
    reboots: int = 0
    started_at: float = field(default_factory=time.monotonic)


class FleetRunner:
    def __init__(
        self,
        city: SimulatedCity,
        settings: RunnerSettings,
        *,
        device_ids: Sequence[str] | None = None,
    ) -> None:
        self.city = city
        self.settings = settings
        self.network = NetworkLoop()
        self.counters = RunnerCounters()
        site = city.inventory.site
        devices = city.inventory.devices
        wanted = set(device_ids) if device_ids is not None else None
        self._devices = {d.id: d for d in devices if wanted is None or d.id in wanted}
        self._identities = {
            d.id: AgentIdentity(
                site.id,
                d.device_class,
                d.id,
                d.latitude if d.latitude is not None else site.latitude,
                d.longitude if d.longitude is not None else site.longitude,
                site.timezone,
            )
            for d in self._devices.values()
        }
        settings.spool_dir.mkdir(parents=True, exist_ok=True)
        self.agents: dict[str, Agent] = {}
        for device_id in self._devices:
            self.agents[device_id] = self._boot(device_id)
        self._powered_off: set[str] = set()
        self._link_down: set[str] = set()
        self._connect_queue = list(self.agents)

    def _boot(self, device_id: str) -> Agent:
        settings = self.settings
        agent = Agent(
            self._identities[device_id],
            AgentSettings(
                broker_host=settings.broker_host,
                broker_port=settings.broker_port,
                account=settings.accounts.get(device_id),
                keepalive_s=settings.keepalive_s,
                samples_per_message=settings.samples_per_message,
                autonomy_after_s=settings.autonomy_after_s,
            ),
            self.city.driver(device_id),
            Spool(
                settings.spool_dir / f"{device_id}.sqlite",
                settings.spool_max_bytes,
                settings.spool_max_age,
            ),
        )
        self.network.attach(agent.client)
        agent.tick(self.city.now)  # the device's clock is the city's from the start
        return agent

    # ----------------------------------------------------------------- faults on agents

    @property
    def _faulty(self) -> set[str]:
        """Devices with a fault that acts on their agent (power or link)."""
        return {
            e.device_id
            for e in self.city.faults
            if e.fault in (FaultType.POWER_LOSS, FaultType.COMMUNICATION_LOSS)
        }

    def _follow(self, device_id: str, power_lost: bool, link_lost: bool) -> None:
        agent = self.agents[device_id]
        if power_lost and device_id not in self._powered_off:
            agent.go_dark()
            self._powered_off.add(device_id)
            self.counters.power_cuts += 1
        elif not power_lost and device_id in self._powered_off:
            self._powered_off.discard(device_id)
            self.network.detach(agent.client)
            agent.spool.close()
            self.agents[device_id] = self._boot(device_id)
            self.counters.reboots += 1
            self._connect_queue.append(device_id)
        agent = self.agents[device_id]
        if link_lost and device_id not in self._link_down and device_id not in self._powered_off:
            agent.go_dark()
            self._link_down.add(device_id)
            self.counters.links_cut += 1
        elif not link_lost and device_id in self._link_down:
            self._link_down.discard(device_id)
            agent.resume()
            self._connect_queue.append(device_id)

    # ----------------------------------------------------------------- running

    def step_to(self, target: datetime) -> int:
        """Step the city and tick every powered agent at each grid instant up to ``target``."""
        steps = 0
        grid = timedelta(seconds=self.city.step_s)
        faulty = self._faulty
        while self.city.now + grid <= target:
            self.city.advance(self.city.now + grid)
            now = self.city.now
            for device_id in faulty:
                faults = self.city.faults_of(device_id, now)
                self._follow(
                    device_id,
                    FaultType.POWER_LOSS in faults,
                    FaultType.COMMUNICATION_LOSS in faults,
                )
            hourly = int(now.timestamp()) % 3_600 == 0
            for device_id, agent in self.agents.items():
                if device_id not in self._powered_off:
                    agent.tick(now)
                    if hourly:
                        agent.expire_spool()
            steps += 1
            self.counters.grid_steps += 1
            self.network.poll(0)
        return steps

    def connect_some(self) -> None:
        """Open up to :data:`CONNECTS_PER_POLL` pending connections; retry the lost ones."""
        if self._connect_queue:
            batch, self._connect_queue = (
                self._connect_queue[:CONNECTS_PER_POLL],
                self._connect_queue[CONNECTS_PER_POLL:],
            )
            for device_id in batch:
                self.agents[device_id].maintain_connection()
            return
        for device_id, agent in self.agents.items():
            if device_id not in self._powered_off and device_id not in self._link_down:
                agent.maintain_connection()

    def pump(self, seconds: float) -> None:
        """Serve the network for ``seconds`` of wall time without advancing the city."""
        deadline = time.monotonic() + seconds
        while True:
            self.connect_some()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.network.poll(min(0.05, remaining))

    def run(
        self,
        clock: SimulationClock,
        should_stop: Callable[[], bool],
        *,
        until: datetime | None = None,
        progress: Callable[[FleetRunner], None] | None = None,
        progress_every_s: float = 10.0,
    ) -> None:
        """Run until ``should_stop()`` or the simulated time reaches ``until``."""
        next_progress = time.monotonic() + progress_every_s
        while not should_stop():
            now = clock.now()
            if until is not None and now >= until:
                self.step_to(until)
                break
            self.step_to(now)
            self.connect_some()
            self.network.poll(0.05)
            if progress is not None and time.monotonic() >= next_progress:
                next_progress += progress_every_s
                progress(self)

    def online(self) -> int:
        return sum(agent.connected for agent in self.agents.values())

    def backlog(self) -> int:
        """Messages waiting in the agents' spools."""
        return sum(agent.spool.stats().messages for agent in self.agents.values())

    def stop(self, drain_s: float = 5.0) -> None:
        """Flush, say goodbye and close every agent, serving the network up to ``drain_s``."""
        deadline = time.monotonic() + drain_s
        for agent in self.agents.values():
            agent.flush()
        while time.monotonic() < deadline and any(
            a.connected and a.spool.stats().messages for a in self.agents.values()
        ):
            for agent in self.agents.values():
                agent.tick(self.city.now)
            self.network.poll(0.05)
        for agent in self.agents.values():
            agent.stop()
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            self.network.poll(0.05)
        for agent in self.agents.values():
            agent.spool.close()
        self.network.close()
