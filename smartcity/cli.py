"""The ``smartcity`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from ingest.service import IngestService
    from protocol.mqtt_account import MqttAccount
    from protocol.sites import SiteInventory
    from runtime.local_services import LocalMosquitto
    from smartcity.broker_security import (
        BundleTarget,
        SecurityFolder,
    )
    from smartcity.settings import Settings
import typer

from smartcity.alerts_cli import alerts_app
from smartcity.api_cli import api as api_command
from smartcity.api_cli import users_app
from smartcity.cli_support import (
    DEFAULT_SITE,
    SiteOption,
    fail,
    load_settings,
    parse_moment,
    progress_to_stderr,
    read_site,
    require_current_schema,
    require_database_url,
    service_account,
    site_path,
)
from smartcity.dashboards_cli import dashboards_app
from smartcity.energy_cli import energy_app
from smartcity.rules_cli import rules_app

app = typer.Typer(
    help="Telemetry and control platform for a city's connected infrastructure.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema and housekeeping.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(energy_app, name="energy")
app.add_typer(users_app, name="users")
app.add_typer(dashboards_app, name="dashboards")
app.command("api")(api_command)

log = logging.getLogger("smartcity")
UP_MQTT_PORT = 18830
UP_MQTT_DEVICE_PORT = 18831
UP_MQTT_TLS_PORT = 18883
UP_POSTGRES_PORT = 54329


def on_termination(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM set ``stop``; a second one exits at once, with code 130, after
    killing the broker and crashing the database this process started (an exception would
    leave the service threads, and the process, running)."""

    from runtime.local_services import stop_everything_started

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            typer.echo("\nforced: stopping the broker and database at once", err=True)
            stop_everything_started()
            os._exit(130)
        typer.echo("\nstopping (Ctrl-C again to force)...", err=True)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def stop_when_set(stop: threading.Event, action: Callable[[], None]) -> None:
    def wait_then_act() -> None:
        stop.wait()
        action()

    threading.Thread(target=wait_then_act, daemon=True, name="stopper").start()


@db_app.command("migrate")
def db_migrate() -> None:
    """Bring the schema up to date (TimescaleDB is used when installed).

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity smartcity db migrate
    """
    import psycopg

    from storage.errors import MigrationError
    from storage.migrate import current_revision, migrate

    url = require_database_url(load_settings())
    try:
        migrate(url, progress=progress_to_stderr)
        revision = current_revision(url)
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT timescaledb FROM storage_backend").fetchone()
    except (MigrationError, psycopg.Error) as error:
        raise fail(str(error)) from error
    backend = "TimescaleDB" if row and row[0] else "plain PostgreSQL"
    typer.echo(f"schema at revision {revision} ({backend})")


@db_app.command("maintain")
def db_maintain() -> None:
    """Refresh the rollups of recent samples (the last 91 days), and on plain PostgreSQL also
    create partitions ahead and drop expired ones (TimescaleDB's own jobs do that there).
    Ingest runs it every minute.

    Example: smartcity db maintain
    """
    import psycopg

    from storage.rollups import maintain

    url = require_database_url(load_settings())
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            report = maintain(connection)
    except psycopg.Error as error:
        raise fail(f"{error}".strip() + " (has `smartcity db migrate` run?)") from error
    typer.echo(json.dumps(report))


@db_app.command("check-rollups")
def db_check_rollups(
    start: Annotated[
        str | None, typer.Option("--from", help="First instant (ISO; UTC if no zone).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End, excluded (ISO; UTC if no zone).")
    ] = None,
) -> None:
    """Compare every hourly and daily rollup with the same aggregates computed from the raw
    samples; exit 1 when any (device, bucket) differs. Run `smartcity db maintain` first:
    rollups of late samples trail by up to a maintenance interval.

    Example: smartcity db check-rollups --from 2026-11-01 --to 2026-11-08
    """
    import psycopg

    from protocol.topics import DeviceClass
    from storage.rollups import GRAINS, rollup_differences

    url = require_database_url(load_settings())
    first = parse_moment(start, "--from") if start else None
    last = parse_moment(end, "--to") if end else None
    total = 0
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            for device_class in DeviceClass:
                for grain, _ in GRAINS:
                    found = rollup_differences(connection, device_class, grain, first, last)
                    typer.echo(f"{device_class.value:<12} {grain:<7} {found} rows differ")
                    total += found
    except psycopg.Error as error:
        raise fail(f"{error}".strip() + " (has `smartcity db migrate` run?)") from error
    typer.echo(f"{total} differences in all")
    if total:
        raise typer.Exit(code=1)


@app.command()
def provision(  # noqa: PLR0917 - each option is a CLI flag
    site_file: Annotated[Path, typer.Argument(help="Site inventory file.")],
    credentials: Annotated[
        Path | None,
        typer.Option(
            help="Also give devices broker credentials, one bundle per device in this folder "
            "(password, certificate and key from the platform's CA, broker.yaml)."
        ),
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option(
            help="With --credentials: new credentials for every device, not only new ones."
        ),
    ] = False,
    device: Annotated[
        list[str] | None,
        typer.Option(
            help="With --credentials: new credentials for this device only, even if it has some "
            "(repeatable; any device in the registry)."
        ),
    ] = None,
    broker_host: Annotated[
        str | None,
        typer.Option(help="Broker name devices connect to (default: SMARTCITY_MQTT_HOST)."),
    ] = None,
    broker_port: Annotated[
        int, typer.Option(help="The broker's TLS port for devices.")
    ] = UP_MQTT_TLS_PORT,
) -> None:
    """Load a site's devices into the registry (creates or updates; idempotent), and with
    --credentials give each device its broker account and certificate (docs/security.md).

    \b
    Example:
      smartcity provision sites/sefrou.yaml
      smartcity provision sites/sefrou.yaml --credentials ./bundles --broker-host broker.sefrou.ma
      smartcity provision sites/sefrou.yaml --credentials ./bundles --device sl-menzel-n-001
    """
    import psycopg

    from protocol.sites import SiteFileError
    from smartcity.broker_security import BundleTarget, devices_without_credentials
    from storage.registry import load_registry, upsert_site

    if (rotate or device) and credentials is None:
        raise typer.BadParameter("--rotate and --device go with --credentials")
    settings = load_settings()
    url = require_database_url(settings)
    try:
        inventory = read_site(site_file)
        with psycopg.connect(url) as connection:
            count = upsert_site(connection, inventory)
            registered = set(load_registry(connection))
    except SiteFileError as error:
        raise fail(str(error)) from error
    except psycopg.Error as error:
        raise fail(f"{error}".strip() + " (has `smartcity db migrate` run?)") from error
    typer.echo(f"site {inventory.site.id}: {count} devices provisioned")
    if credentials is None:
        return
    unknown = sorted(set(device or ()) - registered)
    if unknown:
        raise fail(f"not in the registry (or decommissioned): {', '.join(unknown)}")
    site_devices = [d.id for d in inventory.devices]
    if device:
        chosen = list(dict.fromkeys(device))
    elif rotate:
        chosen = site_devices
    else:
        chosen = devices_without_credentials(url, site_devices)
    target = BundleTarget(broker_host or settings.mqtt_host, broker_port)
    _issue_credentials(settings, url, chosen, credentials, target)
    kept = len(site_devices) - len(set(chosen) & set(site_devices))
    typer.echo(
        f"credentials: {len(chosen)} devices in {credentials} (the passwords are nowhere else);"
        f" {kept} of the site kept theirs"
        + ("" if rotate or device else " (--rotate or --device replace them)")
    )
    typer.echo("a running `smartcity broker` with DATABASE_URL lets them in within 10 s")


def _issue_credentials(
    settings: Settings, url: str, device_ids: list[str], out_dir: Path, target: BundleTarget
) -> None:
    """Write each device's bundle, then store the passwords' hashes: a failure on the way
    leaves the credentials in force untouched and removes the bundles written."""
    import psycopg

    from broker_config.accounts import new_device_password
    from broker_config.pki import PkiError
    from smartcity.broker_security import (
        SecurityFolder,
        store_device_passwords,
        write_device_bundle,
    )

    written: list[Path] = []
    serials: list[tuple[int, str]] = []
    passwords = {device_id: new_device_password() for device_id in device_ids}
    try:
        authority = SecurityFolder(
            settings.state_dir.resolve() / "security"
        ).certificate_authority()
        for done, (device_id, password) in enumerate(passwords.items(), start=1):
            bundle, serial = write_device_bundle(authority, out_dir, device_id, password, target)
            written.append(bundle)
            serials.append((serial, device_id))
            if done % 200 == 0:
                typer.echo(f"  {done}/{len(passwords)} bundles written")
        store_device_passwords(url, passwords, "provision", datetime.now(UTC))
    except (PkiError, OSError, psycopg.Error) as error:
        for bundle in written:
            shutil.rmtree(bundle, ignore_errors=True)
        raise fail(f"{error} (no credentials changed)") from error
    try:
        authority.record_issued(serials)  # the certificates before are revoked at the next sync
    except OSError as error:
        raise fail(
            f"the certificates were not recorded in {authority.index_file}: {error}; they"
            f" stay pending ({authority.pending_file}), revoked at the broker's next sync:"
            " run provision again for these devices"
        ) from error


@app.command()
def ingest(
    share_group: Annotated[
        str | None, typer.Option(help="Split the stream with other workers ($share/GROUP/).")
    ] = None,
    worker: Annotated[
        str,
        typer.Option(
            help="This worker's name in its share group: stable across restarts, so a "
            "restarted worker takes back its own session and the messages it held."
        ),
    ] = "1",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
) -> None:
    """Run the MQTT-to-database ingest service until Ctrl-C or SIGTERM.

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity SMARTCITY_MQTT_PORT=1883
    smartcity ingest
    """
    from ingest.metrics import serve_metrics
    from runtime import logs

    logs.configure(log_level)
    settings = load_settings()
    url = require_database_url(settings)
    require_current_schema(url)
    service = make_ingest_service(settings, url, share_group, worker)
    stop = threading.Event()
    on_termination(stop)
    stop_when_set(stop, service.stop)
    server = serve_metrics(service.metrics, settings.ingest_metrics_port)
    try:
        service.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def make_ingest_service(
    settings: Settings, url: str, share_group: str | None = None, worker: str = "1"
) -> IngestService:
    from broker_config.accounts import Service
    from ingest.service import IngestConfig, IngestService

    client_id = settings.ingest_client_id
    if share_group:
        client_id = f"{client_id}-{share_group}-{worker}"
    return IngestService(
        IngestConfig(
            database_url=url,
            mqtt_host=settings.mqtt_host,
            mqtt_port=settings.mqtt_port,
            mqtt_account=service_account(settings, Service.INGEST),
            client_id=client_id,
            share_group=share_group,
            batch_max_messages=settings.ingest_batch_max_messages,
            batch_max_seconds=settings.ingest_batch_max_seconds,
            receive_maximum=settings.ingest_receive_maximum,
            max_held_bytes=settings.ingest_max_held_bytes,
            log_level=logging.getLevelName(logging.getLogger().level),
            registry_refresh_s=settings.ingest_registry_refresh_s,
            maintenance_interval_s=settings.maintenance_interval_s,
        )
    )


@app.command()
def broker(
    port: Annotated[
        int, typer.Option(help="Port of the services' listener (loopback).")
    ] = UP_MQTT_PORT,
    device_port: Annotated[
        int,
        typer.Option(
            help="Port of a loopback listener for simulated devices (passwords); 0: none."
        ),
    ] = UP_MQTT_DEVICE_PORT,
    tls_port: Annotated[
        int, typer.Option(help="Port of the devices' TLS listener; 0: none.")
    ] = UP_MQTT_TLS_PORT,
    tls_bind: Annotated[
        str, typer.Option(help="Address of the devices' TLS listener.")
    ] = "0.0.0.0",  # noqa: S104 - devices reach it over the city network
    host: Annotated[
        list[str] | None,
        typer.Option(help="Name or address devices use to reach the broker (repeatable)."),
    ] = None,
) -> None:
    """Run the platform's own Mosquitto, secured, until Ctrl-C (docs/security.md).

    Anonymous access is off. Services log in on the loopback listener with their accounts
    (made once under SMARTCITY_STATE_DIR/security/accounts; point SMARTCITY_MQTT_ACCOUNTS_DIR
    there). Devices connect over TLS with the certificate `smartcity provision --credentials`
    gave them; simulated devices (`simulate --device-passwords`) on the loopback device
    listener with their passwords. With DATABASE_URL set, devices provisioned, rotated or
    decommissioned later are let in or put out within 10 s.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity \\
        smartcity broker --host broker.sefrou.ma --tls-port 8883
    """
    import psycopg

    from broker_config import BrokerSecurity
    from broker_config.accounts import AccountError
    from broker_config.pki import PkiError
    from runtime.local_services import LocalMosquitto, LocalServiceError
    from smartcity.broker_security import AccessSync, BrokerAccess, SecurityFolder, sync_access

    settings = load_settings()
    state_dir = settings.state_dir.resolve()
    security = SecurityFolder(state_dir / "security")
    stop = threading.Event()
    on_termination(stop)  # from here on, SIGTERM and Ctrl-C stop the broker cleanly
    try:
        listener = security.device_listener(tls_port, host or [], tls_bind) if tls_port else None
        mosquitto = LocalMosquitto(
            state_dir / "broker", port, security=BrokerSecurity(listener, device_port or None)
        )
        authority = security.certificate_authority() if listener is not None else None
        access = BrokerAccess(
            mosquitto.layout, security.service_logins(), settings.database_url, authority
        )
        report = sync_access(access)
    except (AccountError, PkiError, OSError, psycopg.Error) as error:
        raise fail(str(error)) from error
    sync = AccessSync(access, mosquitto.reload)
    try:
        mosquitto.start()
        sync.start()
        _describe_broker(mosquitto, security, report.devices)
        if report.database_error is not None:
            typer.echo(
                f"warning: the database cannot be read ({report.database_error}); devices'"
                " passwords are those last synced, and the next syncs will try again",
                err=True,
            )
        if listener is not None and not host and tls_bind not in {"127.0.0.1", "localhost"}:
            typer.echo(
                "warning: the server certificate names only localhost and 127.0.0.1; give "
                "--host with the name devices use, or they will refuse the broker",
                err=True,
            )
        while not stop.wait(1):
            if not mosquitto.running:
                raise fail(f"mosquitto exited; see {mosquitto.layout.log_file}")
    except LocalServiceError as error:
        raise fail(str(error)) from error
    finally:
        mosquitto.stop()  # first: a second Ctrl-C must not leave the broker behind
        sync.stop()


def _describe_broker(broker: LocalMosquitto, security: SecurityFolder, devices: int) -> None:
    from broker_config.accounts import Service

    layout = broker.layout
    typer.echo(f"mosquitto: services on 127.0.0.1:{layout.port}, config {layout.config_file}")
    options = layout.security
    if options is not None and options.local_device_port is not None:
        typer.echo(f"simulated devices (passwords) on 127.0.0.1:{options.local_device_port}")
    if options is not None and options.device_listener is not None:
        listener = options.device_listener
        typer.echo(
            f"devices: TLS on {listener.bind_address}:{listener.port}, CA {listener.ca_file}"
        )
    typer.echo(
        f"accounts: {len(Service)} services (passwords in {security.accounts_dir}), "
        f"{devices} devices with a password"
    )


@app.command()
def simulate(  # noqa: PLR0917 - each option is a CLI flag
    site: SiteOption = DEFAULT_SITE,
    speed: Annotated[
        float,
        typer.Option(
            help="Simulated seconds per wall-clock second; above 1 the run "
            "starts a day ago and catches up with the present."
        ),
    ] = 1.0,
    faults: Annotated[
        Path | None, typer.Option(help="Fault file (see docs/simulators.md).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weather, devices and random faults.")] = 1,
    random_faults: Annotated[
        float | None,
        typer.Option(help="Random faults per device per year (overrides the fault file's)."),
    ] = None,
    run_name: Annotated[
        str | None,
        typer.Option(help="Name of the run in the ground truth (default: time and seed)."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="Simulated start (ISO; default now, or a day ago when accelerated)."),
    ] = None,
    device_passwords: Annotated[
        bool,
        typer.Option(
            help="Give every simulated device a fresh broker password, stored hashed in "
            "DATABASE_URL, for a secured broker (`smartcity broker`) that reads it."
        ),
    ] = False,
) -> None:
    """Run every device of a site as its own edge agent and MQTT client, until Ctrl-C.

    The ground truth of the injected faults goes to .smartcity/simulate/<run>/ground_truth.csv
    and, when DATABASE_URL is set, to the fault_ground_truth table. Against the platform's
    secured broker, --device-passwords gives the devices their accounts.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity SMARTCITY_MQTT_PORT=18830 \\
        smartcity simulate --speed 60 --faults faults.yaml --seed 7 --device-passwords
    """
    import psycopg

    from protocol.sites import SiteFileError
    from runtime import logs
    from simulators.errors import SimulatorError
    from simulators.simulate import SimulationOptions, run_simulation

    logs.configure("WARNING", json_lines=False)
    settings = load_settings()
    try:
        inventory = read_site(site)
        options = SimulationOptions(
            inventory,
            settings.mqtt_host,
            settings.mqtt_port,
            settings.state_dir,
            seed=seed,
            speed=speed,
            fault_file=faults,
            random_faults_per_device_year=random_faults,
            database_url=settings.database_url,
            run_name=run_name,
            start=None if start is None else parse_moment(start, "--start"),
            device_accounts=_simulated_accounts(settings, inventory) if device_passwords else {},
        )
        stop = threading.Event()
        on_termination(stop)
        runner = run_simulation(options, stop, typer.echo)
    except (SiteFileError, SimulatorError, ValueError, psycopg.Error) as error:
        raise fail(str(error)) from error
    delivered = sum(a.counters.messages_acknowledged for a in runner.agents.values())
    typer.echo(f"stopped: {delivered} messages delivered")


def _simulated_accounts(settings: Settings, inventory: SiteInventory) -> dict[str, MqttAccount]:
    """Fresh passwords for the site's devices, their hashes in the database; then a wait for
    the broker's next look at them."""
    from protocol.mqtt_account import MqttAccount
    from smartcity.broker_security import SYNC_INTERVAL_S, issue_device_passwords

    url = require_database_url(settings)
    passwords = issue_device_passwords(
        url, [device.id for device in inventory.devices], "simulate", datetime.now(UTC)
    )
    typer.echo(
        f"{len(passwords)} device passwords stored; waiting {SYNC_INTERVAL_S:g} s for the broker"
        " to take them up"
    )
    time.sleep(SYNC_INTERVAL_S + 1)
    return {device_id: MqttAccount(device_id, secret) for device_id, secret in passwords.items()}


@app.command()
def history(  # noqa: PLR0917 - each option is a CLI flag
    start: Annotated[str, typer.Option("--from", help="First instant (ISO; UTC if no zone).")],
    end: Annotated[str, typer.Option("--to", help="End, excluded (ISO; UTC if no zone).")],
    site: SiteOption = DEFAULT_SITE,
    seed: Annotated[int, typer.Option(help="Seed of the weather, devices and random faults.")] = 1,
    faults: Annotated[
        Path | None, typer.Option(help="Fault file (see docs/simulators.md).")
    ] = None,
    random_faults: Annotated[
        float | None, typer.Option(help="Random faults per device per year.")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option(help="Name of the run in fault_ground_truth.")
    ] = None,
) -> None:
    """Write the simulated city's telemetry for a past period straight into the database.

    Migrates the schema and provisions the site first; the ground truth of the faults goes
    to fault_ground_truth and .smartcity/simulate/<run>/ground_truth.csv.

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1:54329/smartcity \
      smartcity history --from 2026-08-01 --to 2026-11-01 --random-faults 6 --seed 3
    """
    import psycopg

    from protocol.sites import SiteFileError
    from simulators.errors import SimulatorError
    from simulators.history import HistoryOptions, generate_history
    from simulators.simulate import SimulationOptions, plan_faults
    from storage.errors import MigrationError
    from storage.migrate import migrate
    from storage.registry import upsert_site
    from storage.rollups import refresh_period

    settings = load_settings()
    database_url = require_database_url(settings)
    first, last = parse_moment(start, "--from"), parse_moment(end, "--to")
    if last <= first:
        raise fail("--to must be after --from")
    name = run_name or f"history-{first:%Y%m%d}-{last:%Y%m%d}-seed{seed}"
    try:
        inventory = read_site(site)
        options = SimulationOptions(
            inventory,
            "",
            0,
            settings.state_dir,
            seed=seed,
            fault_file=faults,
            random_faults_per_device_year=random_faults,
        )
        events = plan_faults(options, first, horizon=last - first)
        migrate(database_url, progress=progress_to_stderr)
        with psycopg.connect(database_url) as connection:
            upsert_site(connection, inventory)
        typer.echo(f"{name}: {len(inventory.devices)} devices, {len(events)} faults")
        report = generate_history(
            HistoryOptions(
                inventory,
                first,
                last,
                seed=seed,
                faults=tuple(events),
                run_name=name,
                ground_truth_path=settings.state_dir / "simulate" / name / "ground_truth.csv",
            ),
            database_url,
            progress=typer.echo,
        )
        rolled_up = time.monotonic()
        with psycopg.connect(database_url, autocommit=True) as connection:
            refresh_period(connection, first, last, progress=progress_to_stderr)
    except (SiteFileError, SimulatorError, MigrationError, psycopg.Error) as error:
        raise fail(str(error)) from error
    typer.echo(
        f"{report.total_rows:,} rows in {report.seconds:.1f} s "
        f"({report.total_rows / max(report.seconds, 1e-9):,.0f} rows/s); "
        f"rollups refreshed in {time.monotonic() - rolled_up:.1f} s"
    )


@app.command()
def agent(
    config: Annotated[Path, typer.Option("--config", help="Agent configuration file.")],
) -> None:
    """Run one edge agent: read its device, publish, obey commands, keep a local program.

    Example: smartcity agent --config /etc/smartcity/agent.yaml   (format: docs/agent.md)
    """
    from edge_agents.config import SimulatedDriverSection, build_agent, load_agent_config, run_agent
    from edge_agents.drivers import Driver
    from edge_agents.errors import EdgeAgentError
    from edge_agents.modbus import EpeverModbusDriver
    from protocol.sites import SiteFileError, load_site
    from runtime import logs

    logs.configure("INFO", json_lines=False)
    try:
        agent_config = load_agent_config(config)
        before_tick: Callable[[datetime], object] | None = None
        driver: Driver
        if isinstance(agent_config.driver, SimulatedDriverSection):
            from simulators.city import SimulatedCity

            inventory = load_site(agent_config.driver.site_file).only(agent_config.device_id)
            city = SimulatedCity(inventory, start=datetime.now(UTC), seed=agent_config.driver.seed)
            driver = city.driver(agent_config.device_id)
            before_tick = city.advance
        else:
            section = agent_config.driver
            driver = EpeverModbusDriver(
                section.host, section.port, device_id=section.unit, timeout_s=section.timeout_s
            )
        device_agent = build_agent(agent_config, driver)
    except (EdgeAgentError, SiteFileError, KeyError) as error:
        raise fail(str(error)) from error
    stop = threading.Event()
    on_termination(stop)
    typer.echo(
        f"agent {agent_config.device_id}: broker {agent_config.broker.host}:"
        f"{agent_config.broker.port}, spool {agent_config.spool.path}"
    )
    run_agent(device_agent, stop, before_tick=before_tick)


@app.command()
def up(  # noqa: PLR0917 - each option is a CLI flag
    site: SiteOption = DEFAULT_SITE,
    mqtt_port: Annotated[
        int, typer.Option(help="Port of the broker's listener for the services.")
    ] = UP_MQTT_PORT,
    mqtt_device_port: Annotated[
        int, typer.Option(help="Port of the broker's listener for the simulated devices.")
    ] = UP_MQTT_DEVICE_PORT,
    mqtt_tls_port: Annotated[
        int, typer.Option(help="Port of the broker's TLS listener for devices (loopback); 0: none.")
    ] = UP_MQTT_TLS_PORT,
    postgres_port: Annotated[
        int, typer.Option(help="Port of the local PostgreSQL (unused with DATABASE_URL).")
    ] = UP_POSTGRES_PORT,
    speed: Annotated[float, typer.Option(help="Simulation speed (see `simulate --help`).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated city.")] = 1,
    random_faults: Annotated[
        float, typer.Option(help="Random faults per device per year in the simulated city.")
    ] = 4.0,
    rules: Annotated[
        Path | None, typer.Option(help="Rule file (default: rules/default_rules.yaml).")
    ] = None,
    notifications: Annotated[
        Path | None,
        typer.Option(help="Notification routes (docs/alerts.md); none: alerts only."),
    ] = None,
) -> None:
    """Run the whole platform on the simulated city until Ctrl-C: broker, database, ingest,
    the rules engine and every simulated device.

    Example: smartcity up            (or, with your own database:
    DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity smartcity up)
    """
    import psycopg

    from alerts.notify import NotificationConfigError, load_notification_config
    from broker_config.accounts import AccountError
    from broker_config.pki import PkiError
    from protocol.sites import SiteFileError
    from rules import PACKAGED_RULES
    from rules.model import RuleFileError, load_rules
    from runtime import logs
    from runtime.local_services import LocalServiceError
    from smartcity.up import UpOptions, run_platform
    from storage.errors import MigrationError

    logs.configure("WARNING", json_lines=False)
    settings = load_settings()
    stop = threading.Event()
    on_termination(stop)
    options = UpOptions(
        site_path(site),
        settings.state_dir,
        mqtt_port,
        postgres_port,
        settings.database_url,
        settings.ingest_metrics_port,
        speed=speed,
        seed=seed,
        random_faults_per_device_year=random_faults,
        rules_file=rules or PACKAGED_RULES,
        api_host=settings.api_host,
        api_port=settings.api_port,
        mqtt_device_port=mqtt_device_port,
        mqtt_tls_port=mqtt_tls_port or None,
    )
    try:
        load_rules(options.rules_file)  # a bad file stops here, before anything starts
        if notifications is not None:
            options = replace(options, notifications=load_notification_config(notifications))
        run_platform(options, stop)
    except (
        LocalServiceError,
        SiteFileError,
        MigrationError,
        RuleFileError,
        NotificationConfigError,
        AccountError,
        PkiError,
        psycopg.Error,
    ) as error:
        raise fail(str(error)) from error


def main() -> None:
    app()


@bench_app.command("decode")
def bench_decode(
    count: Annotated[int, typer.Option(help="Messages decoded per library and round.")] = 20_000,
    samples: Annotated[int, typer.Option(help="Samples per message.")] = 1,
) -> None:
    """Compare JSON/validation libraries on the same telemetry messages.

    Example: smartcity bench decode --count 20000 --samples 10
    """
    from bench import decode

    typer.echo(decode.report(decode.run(count, samples), samples))


@bench_app.command("ingest")
def bench_ingest(  # noqa: PLR0917 - each option is a CLI flag
    messages: Annotated[int, typer.Option(help="Messages, one 13-value sample each.")] = 20_000,
    devices: Annotated[int, typer.Option(help="Distinct streetlights sending them.")] = 200,
    batch: Annotated[int, typer.Option(help="Ingest batch size, in messages.")] = 2_000,
    receive_maximum: Annotated[int, typer.Option(help="MQTT 5 Receive Maximum.")] = 4_000,
    repeats: Annotated[int, typer.Option(help="Rounds; the medians are reported.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
    timescaledb: Annotated[
        bool,
        typer.Option(
            "--timescaledb",
            help="The private PostgreSQL preloads TimescaleDB (it must be installed there).",
        ),
    ] = False,
) -> None:
    """Broker-only vs full ingest vs raw COPY, measured in one run on this machine.

    Uses a scratch database on the server of DATABASE_URL if set, else a private PostgreSQL
    (with TimescaleDB if --timescaledb).
    Example: smartcity bench ingest --messages 50000 --json
    """
    import psycopg

    from bench import ingest as ingest_bench
    from runtime import logs

    logs.configure("WARNING")
    database_url = load_settings().database_url

    try:
        result = ingest_bench.run(
            messages,
            devices=devices,
            batch_messages=batch,
            receive_maximum=receive_maximum,
            repeats=repeats,
            database_url=database_url,
            progress=progress_to_stderr,
            timescaledb=timescaledb,
        )
    except (RuntimeError, psycopg.Error) as error:
        raise fail(str(error)) from error
    typer.echo(ingest_bench.report(result))
    if as_json:
        typer.echo(json.dumps(result.as_dict()))


@bench_app.command("overload")
def bench_overload(  # noqa: PLR0917 - each option is a CLI flag
    minutes: Annotated[
        float, typer.Option(min=0.1, help="Duration of the overload, in minutes.")
    ] = 10.0,
    ratio: Annotated[
        float, typer.Option(min=1.0, help="Offered load as a multiple of ingest's rate.")
    ] = 3.0,
    devices: Annotated[int, typer.Option(min=1, help="Distinct streetlights publishing.")] = 2_000,
    workers: Annotated[
        int, typer.Option(min=1, help="Ingest processes (a share group when more than 1).")
    ] = 1,
    calibration_messages: Annotated[
        int, typer.Option(min=1_000, help="Messages ingest drains alone to measure its rate.")
    ] = 60_000,
    window: Annotated[
        int, typer.Option(min=1, max=65_535, help="Publisher's unacknowledged messages at most.")
    ] = 1_000,
    drain_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the backlog to drain, at most.")
    ] = 3_600,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
) -> None:
    """Ingest offered 3 times what it can store: memory, backlog, drain, nothing lost.

    Calibrates ingest's sustainable rate R (a backlog drained alone), then publishes at
    RATIO x R with QoS 1 for MINUTES while sampling ingest's memory and the broker's backlog,
    then waits for the backlog to drain and counts the rows: sent, stored, lost, doubled.
    Uses a private Mosquitto (broker_config/) and a scratch database on DATABASE_URL's server
    (or a private PostgreSQL, fsync on). Exits 1 if anything was lost or doubled.

    Example: smartcity bench overload --minutes 2 --json
    """
    import psycopg

    from bench import overload
    from runtime import logs

    logs.configure("WARNING")
    database_url = load_settings().database_url

    try:
        result = overload.run(
            minutes=minutes,
            ratio=ratio,
            devices=devices,
            workers=workers,
            calibration_messages=calibration_messages,
            window=window,
            stall_s=30.0,
            drain_timeout_s=drain_timeout,
            database_url=database_url,
            progress=progress_to_stderr,
        )
    except (RuntimeError, OSError, psycopg.Error) as error:
        raise fail(str(error)) from error
    typer.echo(overload.report(result))
    if as_json:
        typer.echo(overload.to_json(result))
    if result.lost or result.doubled:
        raise typer.Exit(code=1)


@bench_app.command("simulate")
def bench_simulate(
    seconds: Annotated[float, typer.Option(help="Wall seconds of the real-time run.")] = 360,
    days: Annotated[float, typer.Option(help="Days of history to generate.")] = 90,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """The simulated city's cost: real-time CPU and messages/s, and history generation time.

    Uses a private Mosquitto and a private PostgreSQL (or DATABASE_URL's server).

    Example: smartcity bench simulate --seconds 360 --days 90 --json
    """
    from bench.simulate import report, run
    from protocol.sites import SiteFileError

    settings = load_settings()
    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    result = run(
        inventory,
        realtime_seconds=seconds,
        history_days=days,
        database_url=settings.database_url,
        progress=lambda line: typer.echo(line, err=True),
    )
    typer.echo(report(result))
    if as_json:
        typer.echo(json.dumps(result.as_dict()))


@bench_app.command("alerts")
def bench_alerts(
    faults: Annotated[int, typer.Option(min=1, help="Faults reported at each load.")] = 100,
    loads: Annotated[
        list[float] | None, typer.Option("--load", help="Multiple of the city's rate (repeat).")
    ] = None,
    days: Annotated[
        float, typer.Option(min=0, help="Days of whole-fleet history to backtest (0: none).")
    ] = 30,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """Fault-to-alert latency at the city's load and at 10x; backtest speed and time.

    Uses a private Mosquitto and a scratch database on DATABASE_URL's server (or on a
    private PostgreSQL). Targets: p99 <= 1 s at 1x, <= 2 s at 10x; >= 1 M rows/s.

    Example: smartcity bench alerts --faults 100 --days 30 --json
    """
    from bench.alerts import report, run, to_json
    from protocol.sites import SiteFileError

    settings = load_settings()
    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    latency, backtest = run(
        inventory,
        loads=loads or [1.0, 10.0],
        faults=faults,
        days=days,
        database_url=settings.database_url,
        progress=lambda line: typer.echo(line, err=True),
    )
    typer.echo(report(latency, backtest))
    if as_json:
        typer.echo(to_json(latency, backtest))


@bench_app.command("api")
def bench_api(
    days: Annotated[
        float, typer.Option(min=1, help="Days of whole-fleet history to generate.")
    ] = 90,
    history_url: Annotated[
        str | None,
        typer.Option(help="An existing database with history (`smartcity history`) to use."),
    ] = None,
    samples: Annotated[int, typer.Option(min=5, help="Requests timed per case.")] = 40,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """API latency (alert lists, 30-day telemetry ranges of a device and a street group) and
    every dashboard panel's query over 90 days, from the aggregates and from raw rows.

    Without --history-url it generates the history in a scratch database on DATABASE_URL's
    server (or a private PostgreSQL): about 10 minutes for 90 days of Sefrou. Target: every
    panel's p95 <= 200 ms.

    Example: smartcity bench api --history-url postgresql://postgres@127.0.0.1/history --json
    """
    from bench.api import report, run, to_json
    from protocol.sites import SiteFileError

    settings = load_settings()
    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    result = run(
        inventory,
        days=days,
        history_url=history_url,
        server_url=settings.database_url,
        samples=samples,
        progress=lambda line: typer.echo(line, err=True),
    )
    typer.echo(report(result))
    if as_json:
        typer.echo(to_json(result))


@bench_app.command("whatif")
def bench_whatif(
    start: Annotated[str, typer.Option("--from", help="Start (UTC unless zoned).")] = "2026-12-01",
    end: Annotated[str, typer.Option("--to", help="End, exclusive.")] = "2027-03-01",
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """A whole winter of every building through the what-if replay (target: under a minute).

    Example: smartcity bench whatif --from 2026-12-01 --to 2027-03-01 --json
    """
    from bench.whatif import report, run
    from protocol.sites import SiteFileError

    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    result = run(
        inventory,
        parse_moment(start, "--from"),
        parse_moment(end, "--to"),
        progress=lambda line: typer.echo(line, err=True),
    )
    typer.echo(report(result))
    if as_json:
        typer.echo(json.dumps(result.as_dict()))


@bench_app.command("chaos")
def bench_chaos(  # noqa: PLR0917 - each option is a CLI flag
    streetlights: Annotated[int, typer.Option(min=2, help="Streetlights of the site run.")] = 60,
    signs: Annotated[int, typer.Option(min=0, help="Signs of the site run.")] = 6,
    zones: Annotated[int, typer.Option(min=0, help="Building zones of the site run.")] = 6,
    speed: Annotated[float, typer.Option(min=1, help="Device seconds per wall second.")] = 600,
    lead: Annotated[float, typer.Option(min=0, help="Steady traffic before each fault [s].")] = 10,
    outage: Annotated[
        float, typer.Option(min=0, help="Broker, database, ingest, rules down for [s].")
    ] = 10,
    blackhole: Annotated[float, typer.Option(min=0, help="Links blackholed for [s].")] = 15,
    blackhole_reset: Annotated[
        bool,
        typer.Option(
            help="End a blackhole with a reset; --no-blackhole-reset: wait until ingest "
            "gives the dead link up by itself (broker: about a minute; database: 5 min)."
        ),
    ] = True,
    faults: Annotated[
        list[str] | None, typer.Option("--fault", help="Only this fault (repeat); default all.")
    ] = None,
    commands: Annotated[int, typer.Option(min=0, help="Commands sent during each fault.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the simulated city.")] = 1,
    site: SiteOption = DEFAULT_SITE,
    keep_workdir: Annotated[
        bool, typer.Option("--keep-workdir", help="Keep the logs and spools.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """Faults one after the other on the running platform; nothing may be lost or doubled.

    Starts a private Mosquitto and PostgreSQL (fsync on), ingest and the rules engine as
    processes of their own, and part of the site as real edge agents at --speed. Then, each
    after --lead seconds of steady traffic: the broker SIGKILLed and restarted, the database
    crashed (pg_ctl stop -m immediate) and started, ingest and the rules engine SIGKILLed and
    restarted, the broker crashing while ingest is down, a streetlight cut off for an hour of
    device time, and ingest's links to the broker and to the database blackholed; commands are
    sent during every fault. Prints, per fault, the samples sent, stored, duplicated and lost,
    then the alert and command checks (docs/chaos.md). Exit code 1 when anything was lost or
    doubled, an alert raised twice or a command applied twice. Names for --fault: broker-kill,
    database-restart, ingest-kill, broker-kill-ingest-away, rules-kill, agent-offline,
    broker-link-blackhole, database-link-blackhole.

    Example: smartcity bench chaos --streetlights 60 --speed 600 --json
    """
    import psycopg

    from bench.chaos import FAULTS, ChaosConfig, report, run, to_json
    from protocol.sites import SiteFileError

    try:
        config = ChaosConfig(
            read_site(site),
            streetlights=streetlights,
            signs=signs,
            zones=zones,
            speed=speed,
            lead_s=lead,
            outage_s=outage,
            blackhole_s=blackhole,
            blackhole_reset=blackhole_reset,
            commands_per_fault=commands,
            faults=tuple(faults) if faults else FAULTS,
            seed=seed,
            keep_workdir=keep_workdir,
        )
    except (SiteFileError, ValueError) as error:
        raise fail(str(error)) from error
    try:
        result = run(config, progress=progress_to_stderr)
    except (RuntimeError, OSError, psycopg.Error) as error:
        raise fail(str(error)) from error
    typer.echo(report(result))
    if as_json:
        typer.echo(to_json(result))
    if not result.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    main()
