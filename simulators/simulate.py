"""``smartcity simulate``: the simulated city on the broker, with its faults and their truth.

This is the I/O shell around :class:`simulators.city.SimulatedCity` and
:class:`simulators.runner.FleetRunner`: it reads the site and fault files, draws random
faults, writes the ground truth (CSV, and the database when one is given), and runs the fleet
until told to stop, printing progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np

from protocol.mqtt_account import MqttAccount
from protocol.sites import SiteInventory
from runtime.limits import raise_open_file_limit
from simulators.city import SimulatedCity, grid_time
from simulators.errors import SimulatorError
from simulators.faults import (
    FAR_FUTURE,
    FaultEvent,
    FaultPlan,
    load_fault_plan,
    random_faults,
    write_ground_truth,
)
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock

log = logging.getLogger("smartcity.simulate")

RANDOM_FAULT_HORIZON: Final = timedelta(days=30)
"""Random faults are drawn this far ahead of the start of a run."""
CATCH_UP_SPAN: Final = timedelta(hours=24)
"""An accelerated run starts this long before now, and catches up with the present."""


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    inventory: SiteInventory
    broker_host: str
    broker_port: int
    state_dir: Path
    seed: int = 1
    speed: float = 1.0
    start: datetime | None = None
    """Simulated start; default now (real time) or a day ago (accelerated)."""
    fault_file: Path | None = None
    random_faults_per_device_year: float | None = None
    """Overrides the fault file's random rate when given."""
    database_url: str | None = None
    run_name: str | None = None
    samples_per_message: int = 1
    device_accounts: Mapping[str, MqttAccount] = field(default_factory=dict)
    """Each device's broker account (a secured broker); none: anonymous."""

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise SimulatorError(f"speed must be positive, not {self.speed:g}")


def simulation_start(options: SimulationOptions, now: datetime) -> datetime:
    if options.start is not None:
        return options.start
    return now - CATCH_UP_SPAN if options.speed > 1 else now


def plan_faults(
    options: SimulationOptions, start: datetime, horizon: timedelta = RANDOM_FAULT_HORIZON
) -> list[FaultEvent]:
    """The faults of this run: the fault file's, then random ones drawn from the seed."""
    devices = options.inventory.devices
    plan = (
        load_fault_plan(options.fault_file, devices, start)
        if options.fault_file is not None
        else FaultPlan(())
    )
    rate = (
        options.random_faults_per_device_year
        if options.random_faults_per_device_year is not None
        else plan.random_per_device_year
    )
    events = list(plan.events)
    if rate > 0:
        seed = plan.random_seed if plan.random_seed is not None else options.seed
        rng = np.random.default_rng((seed, 0xFA017))
        events.extend(random_faults(devices, start, start + horizon, rate, rng))
    return sorted(events)


def record_ground_truth(options: SimulationOptions, run: str, events: list[FaultEvent]) -> Path:
    """Write the injected faults to ``<state>/simulate/<run>/ground_truth.csv`` and the database."""
    path = options.state_dir / "simulate" / run / "ground_truth.csv"
    write_ground_truth(path, events)
    if options.database_url is not None:
        import psycopg

        from storage.faults import record_faults

        with psycopg.connect(options.database_url) as connection:
            record_faults(
                connection,
                run,
                [
                    (e.device_id, str(e.fault), e.start, None if e.end == FAR_FUTURE else e.end)
                    for e in events
                ],
            )
    return path


def run_simulation(
    options: SimulationOptions,
    stop: threading.Event,
    say: Callable[[str], None] = print,
    *,
    progress_every_s: float = 30.0,
    until: datetime | None = None,
) -> FleetRunner:
    """Run the simulated city until ``stop`` is set (or the simulated time reaches ``until``)."""
    raise_open_file_limit()
    now = datetime.now(UTC)
    requested = simulation_start(options, now)
    start = grid_time(requested, 60)
    run = options.run_name or f"sim-{now:%Y%m%dT%H%M%SZ}-seed{options.seed}"
    events = plan_faults(options, start)
    truth = record_ground_truth(options, run, events)
    say(f"simulation {run}: {len(events)} faults planned; ground truth in {truth}")
    city = SimulatedCity(options.inventory, start=start, seed=options.seed, faults=events)
    runner = FleetRunner(
        city,
        RunnerSettings(
            options.broker_host,
            options.broker_port,
            options.state_dir / "simulate" / run / "spools",
            samples_per_message=options.samples_per_message,
            accounts=options.device_accounts,
        ),
    )
    clock = SimulationClock(requested, options.speed)
    say(
        f"{len(runner.agents)} devices connecting to {options.broker_host}:{options.broker_port};"
        f" simulated time starts {start:%Y-%m-%d %H:%M} UTC at {options.speed:g}x"
    )
    started = time.monotonic()

    def report(fleet: FleetRunner) -> None:
        sent = sum(a.counters.messages_acknowledged for a in fleet.agents.values())
        elapsed = time.monotonic() - started
        say(
            f"sim {fleet.city.now:%Y-%m-%d %H:%M} UTC: {fleet.online()}/{len(fleet.agents)}"
            f" online, {sent} messages delivered ({sent / max(elapsed, 1e-9):.0f}/s),"
            f" {fleet.backlog()} spooled"
        )

    try:
        runner.run(
            clock,
            stop.is_set,
            until=until,
            progress=report,
            progress_every_s=progress_every_s,
        )
    finally:
        runner.stop()
    return runner
