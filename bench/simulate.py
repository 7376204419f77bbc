"""The simulated city's cost, against baselines measured in the same run.

(a) real time: the whole fleet (every device its own agent and MQTT client) runs at 1x
    through a private Mosquitto for a while; the simulator's CPU [core] and the messages it
    delivered per second. Baseline: the same clients connected and idle (sessions and
    keepalives only), so the ratio is what simulating and publishing add. Target <= 0.5 core.
(b) history: N days of the whole fleet at its native reporting intervals, generated and
    COPYed into a private PostgreSQL. Baseline: a raw binary COPY of the same number of
    random rows of the same shape (the database's own limit). Target: 90 days < 10 minutes.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg

from edge_agents.network import raise_open_file_limit
from protocol.catalogue import CATALOGUE
from protocol.sites import SiteInventory
from protocol.topics import DeviceClass
from simulators.city import SimulatedCity
from simulators.history import HistoryOptions, generate_history
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock
from smartcity.local_services import LocalMosquitto, LocalPostgres, free_port
from storage.bulk import copy_telemetry, encode_rows
from storage.migrate import migrate
from storage.registry import upsert_site

Progress = Callable[[str], None]


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
    copy_baseline_seconds: float
    """Baseline: raw binary COPY of as many rows of the same shape [s]."""

    @property
    def history_over_copy(self) -> float:
        return self.history_seconds / self.copy_baseline_seconds

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "history_over_copy": round(self.history_over_copy, 3)}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def _services(database_url: str | None, progress: Progress) -> Iterator[tuple[int, str, Path]]:
    workdir = Path(tempfile.mkdtemp(prefix="smartcity-bench-sim-", dir="/tmp"))
    workdir.chmod(0o755)
    broker = LocalMosquitto(workdir / "broker", free_port())
    postgres: LocalPostgres | None = None
    server_url = database_url
    scratch = f"smartcity_bench_{os.getpid()}"
    try:
        broker.start()
        if server_url is None:
            postgres = LocalPostgres(workdir / "postgres", free_port(), durable=True)
            progress(f"starting a private PostgreSQL (fsync on) in {postgres.data_dir}")
            postgres.start()
            server_url = postgres.url()
        # A scratch database of its own, dropped afterwards: the bench never touches yours.
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{scratch}"')
        yield broker.port, urlunsplit(urlsplit(server_url)._replace(path=f"/{scratch}")), workdir
    finally:
        broker.kill()
        if server_url is not None:
            with psycopg.connect(server_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        if postgres is not None:
            postgres.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


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


def measure_copy_baseline(database_url: str, rows_by_class: dict[DeviceClass, int]) -> float:
    """Seconds to COPY as many random rows of each class's shape, a day's worth at a time."""
    rng = np.random.default_rng(0)
    start = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
    with psycopg.connect(database_url) as connection:
        connection.execute("CREATE TEMP TABLE IF NOT EXISTS noop (x int)")
        elapsed = 0.0
        for device_class, rows in rows_by_class.items():
            metrics = len(CATALOGUE[device_class].metrics)
            devices = 1_000
            per_device = max(1, rows // devices)
            stamps = start + np.arange(per_device, dtype=np.int64) * 60
            ids = [f"baseline-{device_class}-{i:05d}" for i in range(devices)]
            values = rng.random((devices, per_device, metrics)).round(3)
            with connection.transaction():
                connection.execute(
                    "SELECT ensure_telemetry_partitions(%s, %s, %s)",
                    (
                        device_class.value,
                        datetime.fromtimestamp(int(stamps[0]), UTC),
                        datetime.fromtimestamp(int(stamps[-1]), UTC),
                    ),
                )
            body = encode_rows(ids, stamps, values)
            tick = time.perf_counter()
            with connection.transaction():
                copy_telemetry(connection, device_class, [body])
            elapsed += time.perf_counter() - tick
            with connection.transaction():
                connection.execute(
                    f"DELETE FROM telemetry_{device_class} WHERE device_id LIKE 'baseline-%%'"  # noqa: S608 - class names are ours
                )
    return elapsed


def run(
    inventory: SiteInventory,
    *,
    realtime_seconds: float,
    history_days: float,
    database_url: str | None,
    progress: Progress,
) -> SimulateBenchResult:
    with _services(database_url, progress) as (port, url, workdir):
        cores, idle, rate = measure_realtime(inventory, port, workdir, realtime_seconds, progress)
        progress(f"real time: {cores:.3f} core ({idle:.3f} idle), {rate:.1f} messages/s")
        migrate(url)
        with psycopg.connect(url) as connection:
            upsert_site(connection, inventory)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        progress(f"history: {history_days:g} days of {len(inventory.devices)} devices")
        history = generate_history(
            HistoryOptions(inventory, start, start + timedelta(days=history_days), seed=1),
            url,
            progress=lambda line: progress(f"  {line}"),
        )
        progress(f"history: {history.total_rows:,} rows in {history.seconds:.1f} s")
        copy_seconds = measure_copy_baseline(url, history.rows)
        progress(f"baseline: raw COPY of as many rows in {copy_seconds:.1f} s")
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
            f"  baseline raw COPY of as many rows: {result.copy_baseline_seconds:.1f} s; history"
            f" / COPY = {result.history_over_copy:.2f}",
        ]
    )
