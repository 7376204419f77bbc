"""What every benchmark runs against: a private broker and a scratch database of its own."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from protocol.sites import SiteInventory
from runtime.local_services import LocalMosquitto, free_port, scratch_database
from storage.migrate import migrate
from storage.registry import upsert_site
from storage.rollups import uses_timescaledb

Progress = Callable[[str], None]


def scraped_metrics(port: int, prefix: str = "smartcity_") -> dict[str, float]:
    """Each metric named ``prefix...`` served on ``port``'s /metrics, its samples summed over
    their labels; empty while nothing answers there."""
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name_part, _, value = line.rpartition(" ")
            name = name_part.split("{", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


@dataclass(frozen=True, slots=True)
class BenchServices:
    mqtt_port: int
    database_url: str
    """A scratch database, dropped afterwards: a benchmark never touches yours."""
    workdir: Path


@contextmanager
def bench_services(
    server_url: str | None, progress: Progress, prefix: str = "bench", timescaledb: bool = False
) -> Iterator[BenchServices]:
    """A private Mosquitto and a scratch database on ``server_url`` (or on a private
    PostgreSQL, fsync on, when None, with TimescaleDB preloaded if ``timescaledb``); both gone
    afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"smartcity-{prefix}-", dir="/tmp"))
    workdir.chmod(0o755)
    broker = LocalMosquitto(workdir / "broker", free_port())
    preload = {"shared_preload_libraries": "timescaledb"} if timescaledb else {}
    try:
        broker.start()
        with scratch_database(
            server_url, workdir, f"smartcity_{prefix}_{os.getpid()}", progress, preload
        ) as url:
            yield BenchServices(broker.port, url, workdir)
    finally:
        broker.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def migrated_and_provisioned(
    database_url: str, *inventories: SiteInventory, progress: Progress | None = None
) -> str:
    """Bring the scratch database to the newest schema and provision every device of
    ``inventories``; the storage backend it runs on ("timescaledb" or "postgresql")."""
    if progress is not None:
        progress("migrating and provisioning")
    migrate(database_url)
    with psycopg.connect(database_url) as connection:
        for inventory in inventories:
            upsert_site(connection, inventory)
        return "timescaledb" if uses_timescaledb(connection) else "postgresql"
