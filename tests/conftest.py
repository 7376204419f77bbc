"""Fixtures: a real PostgreSQL and a real Mosquitto for the integration tests.

PostgreSQL: ``SMARTCITY_TEST_DATABASE_URL`` (a server URL; each test gets its own database in
it) if set; else, where a Docker engine answers, a TimescaleDB container through
testcontainers; else a private cluster started here from the installed PostgreSQL binaries.
Mosquitto: always our own, started from broker_config/ on a free port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from smartcity.local_services import LocalMosquitto, LocalPostgres, free_port, postgres_bindir
from storage.migrate import migrate

TEMPLATE_DATABASE = "smartcity_test_template"


@dataclass
class PostgresServer:
    """A server the tests may create databases in; ``local`` when the tests control it."""

    server_url: str
    local: LocalPostgres | None = None

    def url(self, database: str) -> str:
        base, _, _ = self.server_url.rpartition("/")
        return f"{base}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            clause = f' TEMPLATE "{template}"' if template else ""
            connection.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=20)
    return result.returncode == 0


def _private_cluster(prefix: str, settings: dict[str, str] | None = None) -> LocalPostgres:
    parent = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    parent.chmod(0o755)  # the server runs as the postgres user when the tests run as root
    data_dir = parent / "data"
    server = LocalPostgres(data_dir, free_port(), durable=False, settings=settings or {})
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("SMARTCITY_TEST_DATABASE_URL")
    if external:
        yield PostgresServer(external)
        return
    if _docker_engine_available():  # pragma: no cover - no Docker engine on CI machines
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("timescale/timescaledb:latest-pg16", driver=None) as container:
            yield PostgresServer(container.get_connection_url())
        return
    local = _private_cluster("smartcity-test-pg-")
    try:
        yield PostgresServer(local.url(), local)
    finally:
        local.stop("immediate")
        shutil.rmtree(local.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated_template(postgres_server: PostgresServer) -> str:
    """A migrated database that each test's database is copied from (fast)."""
    postgres_server.drop_database(TEMPLATE_DATABASE)
    url = postgres_server.create_database(TEMPLATE_DATABASE)
    migrate(url)
    return TEMPLATE_DATABASE


@pytest.fixture
def database_url(postgres_server: PostgresServer, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name, template=migrated_template)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def empty_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"e_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    mosquitto = LocalMosquitto(tmp_path / "broker", free_port())
    mosquitto.start()
    yield mosquitto
    mosquitto.kill()


def timescaledb_installed() -> tuple[bool, str]:
    try:
        pg_config = postgres_bindir() / "pg_config"
        sharedir = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        return False, f"cannot locate PostgreSQL's share directory: {error}"
    control = Path(sharedir) / "extension" / "timescaledb.control"
    if not control.exists():
        return False, (
            f"TimescaleDB is not installed in this PostgreSQL ({control} is missing); "
            "it is not in the package registries these machines reach"
        )
    return True, str(control)


@pytest.fixture(scope="session")
def timescale_server() -> Iterator[PostgresServer]:
    installed, why = timescaledb_installed()
    if not installed:
        pytest.skip(why)
    local = _private_cluster("smartcity-test-tsdb-", {"shared_preload_libraries": "timescaledb"})
    try:
        yield PostgresServer(local.url(), local)
    finally:
        local.stop("immediate")
        shutil.rmtree(local.data_dir.parent, ignore_errors=True)
