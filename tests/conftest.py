"""Fixtures: a real PostgreSQL and a real Mosquitto for the integration tests.

PostgreSQL: ``SMARTCITY_TEST_DATABASE_URL`` (a server URL; each test gets its own database in
it) if set; else, where a Docker engine answers, a TimescaleDB container through
testcontainers; else a private cluster started here from the installed PostgreSQL binaries
(``--pg-bindir DIR`` chooses them; ``--timescaledb`` preloads TimescaleDB in it, so the whole
suite runs on that backend; docs/storage.md).
Mosquitto: always our own, started from broker_config/ on a free port.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from runtime.local_services import (
    LocalMosquitto,
    LocalPostgres,
    LocalServiceError,
    free_port,
    postgres_bindir,
)
from runtime.logs import CurrentStderrHandler
from storage.migrate import migrate

TEMPLATE_DATABASE = "smartcity_test_template" + (
    f"_{os.environ['PYTEST_XDIST_WORKER']}" if "PYTEST_XDIST_WORKER" in os.environ else ""
)
"""One per test process (pytest-xdist's workers): on a server they share
(``SMARTCITY_TEST_DATABASE_URL``), each drops and rebuilds only its own."""
TEST_CLUSTER_SETTINGS = {"max_worker_processes": "64"}
"""TimescaleDB starts a job scheduler per database that has the extension (docs/storage.md)."""


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """A command run in-process configures the root logger (``runtime.logs.configure``); the
    next test in the same process must not inherit its level and handler (its output would
    carry log lines: the order of tests differs from one process to another)."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in root.handlers[:]:
        if isinstance(handler, CurrentStderrHandler):
            root.removeHandler(handler)
    root.setLevel(level)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smartcity")
    group.addoption(
        "--pg-bindir",
        type=Path,
        default=None,
        help="PostgreSQL server binaries for the clusters the tests start "
        "(default: the newest under /usr/lib/postgresql)",
    )
    group.addoption(
        "--timescaledb",
        action="store_true",
        help="run the whole suite on a cluster with TimescaleDB preloaded (it must be installed)",
    )


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
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            connection.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            database = sql.Identifier(name)
            # A template cannot be dropped: it stops being one first.
            if connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s AND datistemplate", (name,)
            ).fetchone():
                connection.execute(
                    sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(database)
                )
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))

    def make_template(self, name: str) -> None:
        """Mark ``name`` a template that takes no connections, with no session in it: a copy
        needs its template to have no other session. TimescaleDB keeps a job scheduler
        connected to each database that has the extension; its scheduler is stopped here,
        and a database that takes no connections is never given one again (TimescaleDB
        restarts the scheduler of a copy's template on every CREATE DATABASE unless the
        template refuses connections: seen as ``source database ... is being accessed by
        other users``)."""
        with psycopg.connect(self.url(name), autocommit=True) as connection:
            if connection.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone():
                connection.execute("SELECT _timescaledb_functions.stop_background_workers()")
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)
                )
            )
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def _docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=20)
    return result.returncode == 0


def _private_cluster(
    config: pytest.Config, prefix: str, settings: dict[str, str] | None = None
) -> LocalPostgres:
    parent = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    parent.chmod(0o755)  # the server runs as the postgres user when the tests run as root
    data_dir = parent / "data"
    preload = (
        {"shared_preload_libraries": "timescaledb"} if config.getoption("--timescaledb") else {}
    )
    server = LocalPostgres(
        data_dir,
        free_port(),
        durable=False,
        settings=TEST_CLUSTER_SETTINGS | preload | (settings or {}),
        bindir=config.getoption("--pg-bindir"),
    )
    server.start()
    return server


@contextmanager
def _cluster_server(local: LocalPostgres) -> Iterator[PostgresServer]:
    """A private cluster as the tests' server; crashed and removed afterwards."""
    try:
        yield PostgresServer(local.url(), local)
    finally:
        local.stop("immediate")
        shutil.rmtree(local.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    external = os.environ.get("SMARTCITY_TEST_DATABASE_URL")
    if external:
        yield PostgresServer(external)
        return
    if pytestconfig.getoption("--timescaledb"):
        installed, why = timescaledb_installed(pytestconfig.getoption("--pg-bindir"))
        if not installed:
            raise pytest.UsageError(f"--timescaledb: {why}")
    elif _docker_engine_available():  # pragma: no cover - no Docker engine on CI machines
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("timescale/timescaledb:latest-pg16", driver=None) as container:
            yield PostgresServer(container.get_connection_url())
        return
    with _cluster_server(_private_cluster(pytestconfig, "smartcity-test-pg-")) as server:
        yield server


@pytest.fixture(scope="session")
def migrated_template(postgres_server: PostgresServer) -> str:
    """A migrated database that each test's database is copied from (fast)."""
    postgres_server.drop_database(TEMPLATE_DATABASE)
    url = postgres_server.create_database(TEMPLATE_DATABASE)
    migrate(url)
    postgres_server.make_template(TEMPLATE_DATABASE)
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


def timescaledb_installed(bindir: Path | None = None) -> tuple[bool, str]:
    try:
        pg_config = postgres_bindir(bindir) / "pg_config"
        sharedir = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError, LocalServiceError) as error:
        return False, f"cannot locate PostgreSQL's share directory: {error}"
    control = Path(sharedir) / "extension" / "timescaledb.control"
    if not control.exists():
        return False, (
            f"TimescaleDB is not installed in this PostgreSQL ({control} is missing); "
            "it is not in the package registries these machines reach"
        )
    return True, str(control)


@pytest.fixture(scope="session")
def timescale_server(
    pytestconfig: pytest.Config, postgres_server: PostgresServer
) -> Iterator[PostgresServer]:
    """A server with TimescaleDB: the suite's own when it runs on TimescaleDB, else one of its
    own (skipped, saying why, where the extension is not installed)."""
    if server_has_timescaledb(postgres_server):
        yield postgres_server
        return
    installed, why = timescaledb_installed(pytestconfig.getoption("--pg-bindir"))
    if not installed:
        pytest.skip(why)
    preload = {"shared_preload_libraries": "timescaledb"}
    with _cluster_server(_private_cluster(pytestconfig, "smartcity-test-tsdb-", preload)) as server:
        yield server


@pytest.fixture
def timescale_empty_database_url(timescale_server: PostgresServer) -> Iterator[str]:
    """An empty database of this test's own on a server with TimescaleDB."""
    name = f"ts_{uuid.uuid4().hex[:12]}"
    url = timescale_server.create_database(name)
    yield url
    timescale_server.drop_database(name)


def server_has_timescaledb(server: PostgresServer) -> bool:
    with psycopg.connect(server.server_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
            " AND strpos(current_setting('shared_preload_libraries'), 'timescaledb') > 0"
        ).fetchone()
    return bool(row and row[0])
