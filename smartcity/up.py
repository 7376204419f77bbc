"""``smartcity up``: the whole platform on one machine, on the simulated city.

Starts a database (a private local PostgreSQL, or DATABASE_URL), migrates, provisions the
site and gives every device its broker account, starts the secured broker (passwords and ACL
for everyone; a TLS listener for devices), runs ingest, the rules engine, the controls, the
API and the simulated city (every device its own edge agent with its own account), reports
progress, and stops all of it cleanly when asked.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Final, TypeVar
from wsgiref.simple_server import WSGIServer

import psycopg
import typer

from alerts.routing import NotificationConfig
from api.accounts import create_user, list_users
from api.config import ApiConfig, DeviceBroker
from api.roles import Role
from api.secrets import new_password
from api.server import ApiServerError, BackgroundApiServer
from broker_config import DEFAULT_AUTOSAVE, Autosave, BrokerSecurity
from broker_config.accounts import Service
from broker_config.files import write_private
from control.hvac_service import ControlConfig, HvacControlService
from control.lighting_service import LightingConfig, LightingControlService
from control.sign_service import SignConfig, SignControlService
from control.strategy import Strategy
from control.strategy_store import strategy_in_force
from ingest.metrics import serve_metrics
from ingest.service import IngestConfig, IngestService
from protocol.mqtt_account import MqttAccount
from protocol.sites import SiteInventory, load_site
from protocol.topics import DeviceClass
from rules import PACKAGED_RULES
from rules.service import RulesConfig, RulesService
from runtime.local_services import LocalMosquitto, LocalPostgres
from simulators.simulate import CATCH_UP_SPAN, SimulationOptions, run_simulation
from smartcity.broker_security import (
    AccessSync,
    BrokerAccess,
    SecurityFolder,
    issue_device_passwords,
    sync_access,
)
from storage.migrate import migrate
from storage.registry import upsert_site

log = logging.getLogger("smartcity.up")
DATABASE_NAME = "smartcity"


@dataclass(frozen=True, slots=True)
class UpOptions:
    site_file: Path
    state_dir: Path
    mqtt_port: int
    postgres_port: int
    database_url: str | None
    metrics_port: int
    speed: float = 1.0
    seed: int = 1
    random_faults_per_device_year: float = 4.0
    rules_file: Path = PACKAGED_RULES
    notifications: NotificationConfig | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    mqtt_device_port: int = 18831
    """The simulated devices' listener (loopback, their passwords)."""
    mqtt_tls_port: int | None = None
    """The devices' TLS listener (on loopback here); None: none."""
    broker_autosave: Autosave = DEFAULT_AUTOSAVE
    """When the broker saves its persistence file (SMARTCITY_BROKER_AUTOSAVE)."""


def local_postgres_dir(state_dir: Path) -> Path:
    # The postgres user (root cannot run the server) may not be able to reach a folder
    # under a home directory; the standard place for service data is always reachable.
    return Path("/var/lib/smartcity/postgres") if os.geteuid() == 0 else state_dir / "postgres"


def ensure_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if exists.fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')


def prepare_database(database_url: str, inventory: SiteInventory) -> int:
    """Provision the site; return its device count.

    An accelerated city starts a day back: its days get their partitions now rather than from
    ingest under the feet of readers (partition DDL can deadlock a reader of the views).
    """
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as connection:
        count = upsert_site(connection, inventory)
        for device_class in DeviceClass:
            connection.execute(
                "SELECT ensure_telemetry_partitions(%s, %s, %s)",
                (
                    device_class.value,
                    now - CATCH_UP_SPAN - timedelta(days=1),
                    now + timedelta(days=1),
                ),
            )
    return count


def run_platform(options: UpOptions, stop: threading.Event) -> None:
    say = typer.echo
    inventory = load_site(options.site_file)
    state_dir = options.state_dir.resolve()
    security = SecurityFolder(state_dir / "security")
    broker = _secured_broker(security, state_dir, options)
    sync: AccessSync | None = None
    postgres: LocalPostgres | None = None
    threads: list[threading.Thread] = []
    services: list[Running] = []
    """Stopped in this order once the devices have said goodbye."""
    simulation_stop = threading.Event()
    metrics_server: WSGIServer | None = None
    api_server: BackgroundApiServer | None = None
    try:
        database_url = options.database_url
        if database_url is None:
            postgres = LocalPostgres(local_postgres_dir(state_dir), options.postgres_port)
            database_url = _start_postgres(postgres, options.postgres_port)
        else:
            say("[1/5] database: DATABASE_URL")
        device_accounts = _schema_registry_and_accounts(database_url, inventory, security)
        say(f"[4/5] broker: {_broker_line(broker, options)}")
        sync = _start_broker(broker, security, database_url)
        running = _services(database_url, inventory, options, services, security)
        city = _city(inventory, database_url, options, state_dir, device_accounts)
        _reload_on_sighup(running.engine)
        threads = _start(
            ("ingest", running.ingest.run),
            ("rules", running.engine.run),
            *((type(control).__name__, control.run) for control in running.controls),
        )
        _wait_until_subscribed(services, stop)
        threads += _start(
            (
                "simulated-city",
                lambda: run_simulation(city, simulation_stop, _indented, progress_every_s=60.0),
            )
        )
        metrics_server = serve_metrics(running.ingest.metrics, options.metrics_port)
        api_server = _start_api(database_url, options, security.service_account(Service.API))
        say(
            f"[5/5] ingest, the rules engine ({len(running.engine.rules.rules)} rules), HVAC, sign "
            f"and lighting control ({running.strategy}) and the simulated city running "
            f"({len(inventory.devices)} devices, each its own MQTT client, at "
            f"{options.speed:g}x real time)"
        )
        _explain(database_url, options, api_server.url, state_dir, security)
        _report_progress(database_url, stop)
    finally:
        simulation_stop.set()
        for thread in threads:
            if thread.name == "simulated-city":
                thread.join(timeout=60)  # the devices say goodbye before ingest stops
        for service in services:
            service.stop()
        for thread in threads:
            thread.join(timeout=30)
        _stop_servers(api_server, metrics_server)
        if sync is not None:
            sync.stop()
        broker.stop()
        if postgres is not None:
            postgres.stop()
        say("stopped.")


Control = HvacControlService | LightingControlService | SignControlService
Running = IngestService | RulesService | Control


def _secured_broker(
    security: SecurityFolder, state_dir: Path, options: UpOptions
) -> LocalMosquitto:
    listener = (
        security.device_listener(options.mqtt_tls_port, ["localhost"], "127.0.0.1")
        if options.mqtt_tls_port
        else None
    )
    return LocalMosquitto(
        state_dir / "broker",
        options.mqtt_port,
        security=BrokerSecurity(listener, options.mqtt_device_port),
        autosave=options.broker_autosave,
    )


def _start_broker(
    broker: LocalMosquitto, security: SecurityFolder, database_url: str
) -> AccessSync:
    """Start the broker with every account of the moment, then keep its password files and
    revocation list in step with the database (devices provisioned or decommissioned through
    the API)."""
    with_tls = broker.security is not None and broker.security.device_listener is not None
    authority = security.certificate_authority() if with_tls else None
    access = BrokerAccess(broker.layout, security.service_logins(), database_url, authority)
    sync_access(access)
    broker.start()
    sync = AccessSync(access, broker.reload)
    sync.start()
    return sync


def _broker_line(broker: LocalMosquitto, options: UpOptions) -> str:
    line = (
        f"mosquitto, accounts and ACL on: services on 127.0.0.1:{options.mqtt_port}, the"
        f" simulated devices on 127.0.0.1:{options.mqtt_device_port}"
    )
    if options.mqtt_tls_port:
        line += f", devices' TLS listener on 127.0.0.1:{options.mqtt_tls_port}"
    return f"{line} ({broker.data_dir})"


def _schema_registry_and_accounts(
    database_url: str, inventory: SiteInventory, security: SecurityFolder
) -> dict[str, MqttAccount]:
    typer.echo("[2/5] schema: migrating")
    migrate(database_url)
    count = prepare_database(database_url, inventory)
    accounts = _fleet_accounts(database_url, inventory, security)
    typer.echo(
        f"[3/5] registry: {count} devices of site {inventory.site.id}, each with its own"
        " broker account"
    )
    return accounts


def _fleet_accounts(
    database_url: str, inventory: SiteInventory, security: SecurityFolder
) -> dict[str, MqttAccount]:
    """Fresh passwords for the simulated devices; their hashes replace any stored before. They
    are also written to ``security/simulated-fleet-passwords`` (mode 600), so a technician can
    publish as a simulated device (docs/protocol.md); real devices' passwords are kept nowhere."""
    passwords = issue_device_passwords(
        database_url, [device.id for device in inventory.devices], "up", datetime.now(UTC)
    )
    lines = "".join(f"{device_id}:{secret}\n" for device_id, secret in passwords.items())
    write_private(security.simulated_fleet_passwords, lines.encode())
    return {device_id: MqttAccount(device_id, secret) for device_id, secret in passwords.items()}


@dataclass(frozen=True, slots=True)
class _Services:
    ingest: IngestService
    engine: RulesService
    controls: list[Control]
    strategy: str
    """Which strategy the controls run, in words."""


def _services(
    database_url: str,
    inventory: SiteInventory,
    options: UpOptions,
    made: list[Running],
    security: SecurityFolder,
) -> _Services:
    """Ingest, the rules engine, and the controls of the site's building zones, signs and
    streetlights on the strategy in force, each added to ``made`` as soon as it
    exists, so a failure further on still stops them. The controls take up a strategy
    activated later by themselves."""
    ingest = _ingest_service(database_url, options, security.service_account(Service.INGEST))
    made.append(ingest)
    engine = _rules_engine(database_url, options, security.service_account(Service.RULES))
    made.append(engine)
    strategy, label = _strategy_in_force(database_url)
    control_account = security.service_account(Service.CONTROL)

    def settings(kind: type[ControlSettings]) -> ControlSettings:
        return _control_config(
            kind, database_url, inventory.site.id, strategy, options, account=control_account
        )

    # Each runs even without devices of its class yet: it takes up those added later.
    makers: tuple[Callable[[], Control], ...] = (
        lambda: HvacControlService(settings(ControlConfig)),
        lambda: SignControlService(settings(SignConfig)),
        lambda: LightingControlService(settings(LightingConfig)),
    )
    controls: list[Control] = []
    for make in makers:
        controls.append(make())
        made.append(controls[-1])
    return _Services(ingest, engine, controls, label)


def _ingest_service(database_url: str, options: UpOptions, account: MqttAccount) -> IngestService:
    return IngestService(
        IngestConfig(
            database_url,
            "127.0.0.1",
            options.mqtt_port,
            mqtt_account=account,
            maintenance_interval_s=30,
            log_level="WARNING",
            log_json=False,
        )
    )


def _city(
    inventory: SiteInventory,
    database_url: str,
    options: UpOptions,
    state_dir: Path,
    accounts: dict[str, MqttAccount],
) -> SimulationOptions:
    return SimulationOptions(
        inventory,
        "127.0.0.1",
        options.mqtt_device_port,
        state_dir,
        seed=options.seed,
        speed=options.speed,
        random_faults_per_device_year=options.random_faults_per_device_year,
        database_url=database_url,
        device_accounts=accounts,
    )


SUBSCRIBE_TIMEOUT_S = 120.0


def _wait_until_subscribed(services: list[Running], stop: threading.Event) -> None:
    """Every service connected and subscribed before the city's 2,162 clients connect: paho's
    network loop uses select(), which cannot watch a socket numbered above 1023, and the
    devices' connections take those numbers first."""
    deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
    for service in services:
        while not service.ready.wait(0.2):
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{type(service).__name__} did not connect to the broker and subscribe "
                    f"within {SUBSCRIBE_TIMEOUT_S:g} s; is the broker running?"
                )


def _indented(line: str) -> None:
    typer.echo(f"      {line}")


def _start(*services: tuple[str, Callable[[], object]]) -> list[threading.Thread]:
    """A thread for each (name, run) in order, started."""
    threads = [threading.Thread(target=run, name=name) for name, run in services]
    for thread in threads:
        thread.start()
    return threads


def _start_postgres(postgres: LocalPostgres, port: int) -> str:
    typer.echo(f"[1/5] database: local PostgreSQL on 127.0.0.1:{port} ({postgres.data_dir})")
    postgres.start()
    ensure_database(postgres.url(), DATABASE_NAME)
    return postgres.url(DATABASE_NAME)


def _rules_engine(database_url: str, options: UpOptions, account: MqttAccount) -> RulesService:
    """The rules engine on the default rules; an accelerated city runs on its devices' time."""
    return RulesService(
        RulesConfig(
            database_url,
            options.rules_file,
            mqtt_port=options.mqtt_port,
            mqtt_account=account,
            notifications=options.notifications,
            event_time=options.speed != 1.0,
        )
    )


ControlSettings = TypeVar("ControlSettings", ControlConfig, LightingConfig, SignConfig)


def _control_config(
    kind: type[ControlSettings],
    database_url: str,
    site: str,
    strategy: Strategy,
    options: UpOptions,
    *,
    account: MqttAccount,
) -> ControlSettings:
    """A control service's settings: the strategy in force, and those activated later; an
    accelerated city runs on its devices' time."""
    return kind(
        database_url,
        site,
        strategy,
        mqtt_port=options.mqtt_port,
        mqtt_account=account,
        event_time=options.speed != 1.0,
        follow_active_strategy=True,
    )


def _strategy_in_force(database_url: str) -> tuple[Strategy, str]:
    with psycopg.connect(database_url) as connection:
        return strategy_in_force(connection)


def _reload_on_sighup(engine: RulesService) -> None:
    """SIGHUP reloads the rule file (a file with errors is refused; the rules stay), or the rule
    set activated in the database while one is in force."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (tests run `up` in a thread)

    def reload(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=engine.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGHUP, reload)


def _stop_servers(api: BackgroundApiServer | None, metrics: WSGIServer | None) -> None:
    if api is not None:
        api.stop()
    if metrics is not None:
        metrics.shutdown()
        metrics.server_close()


def _start_api(database_url: str, options: UpOptions, account: MqttAccount) -> BackgroundApiServer:
    config = ApiConfig(
        database_url=database_url,
        mqtt_port=options.mqtt_port,
        mqtt_account=account,
        device_broker=DeviceBroker("127.0.0.1", options.mqtt_device_port, options.mqtt_tls_port),
        rules_file=options.rules_file,
    )
    server = BackgroundApiServer(config, options.api_host, options.api_port)
    try:
        server.start()
    except ApiServerError:
        server.stop()  # a server that did start late must not outlive `up`
        raise
    return server


# The demo's people: one of each role; the crew works on every street and building of the site.
_DEMO_PEOPLE: Final = (
    ("admin", Role.ADMIN),
    ("technician", Role.TECHNICIAN),
    ("energy", Role.ENERGY_MANAGER),
    ("crew", Role.CREW),
)


def _welcome(database_url: str, api_url: str, state_dir: Path) -> None:
    """Give the demo its people on first start (random passwords, kept in a file only root
    reads) and say where to log in."""
    logins = state_dir / "demo-logins.txt"
    with psycopg.connect(database_url) as connection:
        if not list_users(connection):
            groups, buildings = _all_places(connection)
            lines = []
            for username, role in _DEMO_PEOPLE:
                password = new_password()
                mine = role is Role.CREW
                create_user(
                    connection, username, role, password=password, language="fr",
                    street_groups=groups if mine else (), buildings=buildings if mine else (),
                )  # fmt: skip
                lines.append(f"{username:<12} {role.value:<15} {password}")
            descriptor = os.open(logins, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write("\n".join(lines) + "\n")
    typer.echo(
        f"Crew console: {api_url}/console/   API: {api_url}/api/v1/docs\n"
        f"  demo logins (user, role, password) in {logins}"
    )


def _all_places(connection: psycopg.Connection) -> tuple[list[str], list[str]]:
    groups = connection.execute(
        "SELECT DISTINCT street_group FROM devices WHERE street_group IS NOT NULL ORDER BY 1"
    ).fetchall()
    buildings = connection.execute(
        "SELECT DISTINCT building FROM devices WHERE building IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [row[0] for row in groups], [row[0] for row in buildings]


def _explain(
    database_url: str, options: UpOptions, api_url: str, state_dir: Path, security: SecurityFolder
) -> None:
    port = options.mqtt_device_port  # the observer logs in beside the devices (docs/security.md)
    observer = f'-u svc.observer -P "$(cat {security.accounts_dir / "observer"})"'
    lines = [
        "",
        "Where to look:",
        f"  psql '{database_url}'",
        "    SELECT * FROM telemetry ORDER BY ts DESC LIMIT 20;",
        "    SELECT device_class, count(*) FROM telemetry GROUP BY 1;",
        "    SELECT * FROM telemetry_hourly WHERE device_id = 'sl-menzel-n-001';",
        "    SELECT received_at, reason, detail FROM dead_letters ORDER BY id DESC LIMIT 10;",
        "    SELECT issued_at, device_id, reason, outcome FROM commands ORDER BY issued_at DESC"
        " LIMIT 10;",
        f"  mosquitto_sub -p {port} {observer} -t 'sc/#' -t 'alerts/#' -v",
        f"  DATABASE_URL='{database_url}' smartcity alerts list",
        "  anonymous clients are refused: the broker has accounts and an ACL (docs/security.md)",
    ]
    if options.metrics_port:
        lines.append(
            f"  curl -s http://127.0.0.1:{options.metrics_port}/metrics | grep smartcity_ingest"
        )
    typer.echo("\n".join(lines))
    _welcome(database_url, api_url, state_dir)
    typer.echo("Press Ctrl-C to stop everything.\n")


_PROGRESS_QUERY = """
    SELECT (SELECT count(*) FROM telemetry_streetlight)
         + (SELECT count(*) FROM telemetry_signage)
         + (SELECT count(*) FROM telemetry_building),
           (SELECT count(*) FROM dead_letters),
           (SELECT count(*) FROM alerts WHERE status IN ('firing', 'acknowledged')),
           (WITH latest AS (
                SELECT greatest(
                    (SELECT max(ts) FROM telemetry_streetlight),
                    (SELECT max(ts) FROM telemetry_signage),
                    (SELECT max(ts) FROM telemetry_building)
                ) - INTERVAL '6 minutes' AS since
            )
            SELECT count(DISTINCT device_id) FROM (
                SELECT device_id FROM telemetry_streetlight, latest WHERE ts > since
                UNION ALL
                SELECT device_id FROM telemetry_signage, latest WHERE ts > since
                UNION ALL
                SELECT device_id FROM telemetry_building, latest WHERE ts > since
           ) AS recent),
           (SELECT count(*) FROM commands),
           (SELECT count(*) FROM commands WHERE outcome = 'applied')
"""


def _report_progress(database_url: str, stop: threading.Event) -> None:
    previous: tuple[float, int] | None = None
    with psycopg.connect(database_url, autocommit=True) as connection:
        while not stop.wait(5):
            row = connection.execute(_PROGRESS_QUERY).fetchone()
            if row is None:
                continue
            samples, dead, open_alerts, devices, commands, applied = row
            now = time.monotonic()
            rate = (
                ""
                if previous is None
                else f" ({(samples - previous[1]) / (now - previous[0]):.0f}/s)"
            )
            previous = (now, samples)
            typer.echo(
                f"samples stored: {samples}{rate}; devices heard in the city's last 6 minutes:"
                f" {devices};"
                f" dead letters: {dead}; open alerts: {open_alerts};"
                f" commands: {commands} ({applied} applied)"
            )
