"""The simulated city's cost, against baselines measured in the same run.

(a) real time: the whole fleet (every device its own agent and MQTT client) runs at 1x
    through a private Mosquitto for a while; the simulator's CPU [core] and the messages it
    delivered per second. Baseline: the same clients connected and idle (sessions and
    keepalives only), so the ratio is what simulating and publishing add. Target <= 0.5 core.
(b) history: N days of the whole fleet at its native reporting intervals, generated and
    COPYed into a private PostgreSQL. Baseline: random rows of the same shape COPYed through
    the same plumbing for up to 10 days (the database's own rate). Target: 90 days < 10 min.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from bench.services import bench_services, migrated_and_provisioned
from protocol.catalogue import CATALOGUE
from protocol.sites import SiteInventory
from protocol.topics import DeviceClass
from runtime.limits import raise_open_file_limit
from simulators.city import SimulatedCity
from simulators.history import HistoryOptions, generate_history
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock
from storage.bulk import ParallelCopy, encode_rows

Progress = Callable[[str], None]
BASELINE_DAYS = 10
"""Days of random rows the COPY baseline writes (rates are compared, not totals)."""


@dataclass(frozen=True, slots=True)
class SimulateBenchResult:
    devices: int
    realtime_seconds: float
    realtime_cpu_cores: float
    """Simulator CPU over wall time while the fleet ran at 1x [core]."""
    idle_cpu_cores: float
    """Baseline: the same clients connected and idle [core]."""
    messages_per_second: float
    history_days: float
    history_rows: int
    history_seconds: float
    history_seconds_for_90_days: float
    copy_baseline_rows: int
    copy_baseline_seconds: float
    """Baseline: raw binary COPY of random rows shaped like the fleet's, same plumbing [s]."""

    @property
    def history_rows_per_second(self) -> float:
        return self.history_rows / self.history_seconds

    @property
    def copy_rows_per_second(self) -> float:
        return self.copy_baseline_rows / self.copy_baseline_seconds

    @property
    def history_over_copy(self) -> float:
        """History's rate as a share of what the database alone takes [-]."""
        return self.history_rows_per_second / self.copy_rows_per_second

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "history_over_copy": round(self.history_over_copy, 3)}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_realtime(
    inventory: SiteInventory, port: int, workdir: Path, seconds: float, progress: Progress
) -> tuple[float, float, float]:
    """(simulator cores, idle-baseline cores, messages/s) of the fleet at 1x."""
    raise_open_file_limit()
    city = SimulatedCity(inventory, start=datetime.now(UTC), seed=1)
    runner = FleetRunner(city, RunnerSettings("127.0.0.1", port, workdir / "spools"))
    progress(f"connecting {len(runner.agents)} devices")
    deadline = time.monotonic() + 120
    while runner.online() < len(runner.agents) and time.monotonic() < deadline:
        runner.pump(0.5)
    idle_window = min(30.0, seconds / 4)
    progress(f"{runner.online()} online; idle baseline for {idle_window:.0f} s")
    cpu, wall = _cpu_seconds(), time.monotonic()
    runner.pump(idle_window)
    idle = (_cpu_seconds() - cpu) / (time.monotonic() - wall)
    progress(f"running the city at 1x for {seconds:.0f} s")
    delivered = sum(a.counters.messages_acknowledged for a in runner.agents.values())
    clock = SimulationClock(datetime.now(UTC), 1.0)
    city.advance(clock.now())
    cpu, wall = _cpu_seconds(), time.monotonic()
    end = wall + seconds

    def report(fleet: FleetRunner) -> None:
        sent = sum(a.counters.messages_acknowledged for a in fleet.agents.values()) - delivered
        progress(f"  {time.monotonic() - wall:.0f} s: {sent} messages delivered")

    runner.run(
        clock,
        lambda: time.monotonic() >= end,
        progress=report,
        progress_every_s=60,
    )
    elapsed = time.monotonic() - wall
    busy = (_cpu_seconds() - cpu) / elapsed
    sent = sum(a.counters.messages_acknowledged for a in runner.agents.values()) - delivered
    runner.stop()
    return busy, idle, sent / elapsed


def measure_copy_baseline(
    database_url: str, inventory: SiteInventory, days: float, connections: int
) -> tuple[int, float]:
    """(rows, seconds) of a raw COPY of ``days`` of random rows shaped like the fleet's.

    The same plumbing as the history (a day of a class per block, the same parallel
    connections), with the simulation taken out: what the database alone allows.
    """
    rng = np.random.default_rng(0)
    start = int(datetime(2001, 1, 1, tzinfo=UTC).timestamp())
    rows = 0
    encoding = 0.0
    copier = ParallelCopy(database_url, connections)
    tick = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as connection:
        for day in range(int(np.ceil(days))):
            first = start + day * 86_400
            for device_class in DeviceClass:
                devices = len(inventory.by_class(device_class))
                interval = CATALOGUE[device_class].expected_interval_s
                if not devices:
                    continue
                stamps = first + np.arange(0, 86_400, interval, dtype=np.int64)
                connection.execute(
                    "SELECT ensure_telemetry_partitions(%s, %s, %s)",
                    (
                        device_class.value,
                        datetime.fromtimestamp(int(stamps[0]), UTC),
                        datetime.fromtimestamp(int(stamps[-1]), UTC),
                    ),
                )
                ids = [f"baseline-{device_class}-{i:05d}" for i in range(devices)]
                metrics = len(CATALOGUE[device_class].metrics)
                encode_started = time.monotonic()
                values = rng.random((devices, len(stamps), metrics)).round(3)
                parts = np.array_split(np.arange(devices), connections)
                bodies = [encode_rows([ids[i] for i in p], stamps, values[p]) for p in parts]
                encoding += time.monotonic() - encode_started
                for body in bodies:
                    copier.put(device_class, body)
                rows += devices * len(stamps)
        copier.close()
        elapsed = time.monotonic() - tick - encoding
        for device_class in DeviceClass:
            connection.execute(
                f"DELETE FROM telemetry_{device_class} WHERE device_id LIKE 'baseline-%%'"  # noqa: S608 - class names are ours
            )
    return rows, elapsed


def run(
    inventory: SiteInventory,
    *,
    realtime_seconds: float,
    history_days: float,
    database_url: str | None,
    progress: Progress,
) -> SimulateBenchResult:
    with bench_services(database_url, progress, "sim") as services:
        port, url, workdir = services.mqtt_port, services.database_url, services.workdir
        cores, idle, rate = measure_realtime(inventory, port, workdir, realtime_seconds, progress)
        progress(f"real time: {cores:.3f} core ({idle:.3f} idle), {rate:.1f} messages/s")
        migrated_and_provisioned(url, inventory)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        progress(f"history: {history_days:g} days of {len(inventory.devices)} devices")
        history = generate_history(
            HistoryOptions(inventory, start, start + timedelta(days=history_days), seed=1),
            url,
            progress=lambda line: progress(f"  {line}"),
        )
        progress(f"history: {history.total_rows:,} rows in {history.seconds:.1f} s")
        baseline_days = min(history_days, BASELINE_DAYS)
        copy_rows, copy_seconds = measure_copy_baseline(url, inventory, baseline_days, 2)
        progress(
            f"baseline: raw COPY of {copy_rows:,} rows ({baseline_days:g} days)"
            f" in {copy_seconds:.1f} s"
        )
    return SimulateBenchResult(
        devices=len(inventory.devices),
        realtime_seconds=realtime_seconds,
        realtime_cpu_cores=round(cores, 4),
        idle_cpu_cores=round(idle, 4),
        messages_per_second=round(rate, 2),
        history_days=history_days,
        history_rows=history.total_rows,
        history_seconds=round(history.seconds, 2),
        history_seconds_for_90_days=round(history.seconds * 90 / history_days, 1),
        copy_baseline_rows=copy_rows,
        copy_baseline_seconds=round(copy_seconds, 2),
    )


def report(result: SimulateBenchResult) -> str:
    def verdict(ok: bool) -> str:
        return "meets the target" if ok else "MISSES the target"

    ninety = result.history_seconds_for_90_days
    return "\n".join(
        [
            f"simulated city: {result.devices} devices, each its own MQTT client",
            f"  real time ({result.realtime_seconds:.0f} s at 1x): "
            f"{result.realtime_cpu_cores:.3f} core, {result.messages_per_second:.1f} messages/s"
            f" -> {verdict(result.realtime_cpu_cores <= 0.5)} (<= 0.5 core)",
            f"  idle baseline (connected, no simulation): {result.idle_cpu_cores:.3f} core;"
            f" simulating adds {result.realtime_cpu_cores - result.idle_cpu_cores:.3f} core",
            f"  history: {result.history_days:g} days, {result.history_rows:,} rows in "
            f"{result.history_seconds:.1f} s ({result.history_rows / result.history_seconds:,.0f}"
            f" rows/s); 90 days -> {ninety / 60:.1f} min -> {verdict(ninety < 600)} (< 10 min)",
            f"  baseline raw COPY: {result.copy_baseline_rows:,} rows in "
            f"{result.copy_baseline_seconds:.1f} s ({result.copy_rows_per_second:,.0f} rows/s);"
            f" history runs at {result.history_over_copy:.2f} x the database's own rate",
        ]
    )
